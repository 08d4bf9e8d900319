"""Data sets and input pipelines."""

from byot_keras.data.cifar import (
    CIFAR_MEAN,
    CIFAR_NORMALIZATION,
    CIFAR_STD,
    load_cifar,
    normalize_cifar,
)
from byot_keras.data.digits import DIGITS_CLASSES, DIGITS_NORMALIZATION, load_digits

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_NORMALIZATION",
    "CIFAR_STD",
    "DIGITS_CLASSES",
    "DIGITS_NORMALIZATION",
    "load_cifar",
    "load_digits",
    "normalize_cifar",
]
