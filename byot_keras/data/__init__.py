"""Data sets and input pipelines."""

from byot_keras.data.digits import DIGITS_CLASSES, load_digits

__all__ = ["DIGITS_CLASSES", "load_digits"]
