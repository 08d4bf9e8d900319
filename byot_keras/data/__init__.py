"""Data sets and input pipelines."""

from byot_keras.data.cifar import (
    CIFAR_MEAN,
    CIFAR_NORMALIZATION,
    CIFAR_STD,
    cifar_class_names,
    load_cifar,
    normalize_cifar,
)
from byot_keras.data.digits import DIGITS_CLASSES, DIGITS_NORMALIZATION, load_digits
from byot_keras.data.pipeline import (
    AUGMENTATIONS,
    DATASETS,
    IMAGENET_NORMALIZATION,
    DataSource,
    evaluation_dataset,
    load_source,
    training_dataset,
)

__all__ = [
    "AUGMENTATIONS",
    "CIFAR_MEAN",
    "CIFAR_NORMALIZATION",
    "CIFAR_STD",
    "DATASETS",
    "DIGITS_CLASSES",
    "DIGITS_NORMALIZATION",
    "DataSource",
    "IMAGENET_NORMALIZATION",
    "cifar_class_names",
    "evaluation_dataset",
    "load_cifar",
    "load_digits",
    "load_source",
    "normalize_cifar",
    "training_dataset",
]
