"""CIFAR through tensorflow-datasets, as NumPy arrays normalised like the BYOT recipes."""

from __future__ import annotations

import numpy as np

# Per-channel mean and std of CIFAR training images, as used by the BYOT code.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
CIFAR_NORMALIZATION = {"scale": 1 / 255, "mean": list(CIFAR_MEAN), "std": list(CIFAR_STD)}


def normalize_cifar(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32, (x / 255 - mean) / std per channel."""
    images = np.asarray(images, dtype=np.float32) / 255.0
    return ((images - np.array(CIFAR_MEAN, "float32")) / np.array(CIFAR_STD, "float32")
            ).astype("float32")


def cifar_class_names(name: str = "cifar10", data_dir: str | None = None) -> list[str]:
    """The class names of a tfds CIFAR data set, in label order, from its stored
    dataset info (nothing is downloaded).

    Example:
        >>> cifar_class_names("cifar10", "../shared/data/tfds")[:3]  # doctest: +SKIP
        ['airplane', 'automobile', 'bird']
    """
    import tensorflow_datasets as tfds

    if name not in ("cifar10", "cifar100"):
        raise ValueError(f"Unknown CIFAR data set '{name}'. Valid: cifar10, cifar100.")
    return list(tfds.builder(name, data_dir=data_dir).info.features["label"].names)


def load_cifar(name: str = "cifar10", split: str = "train", data_dir: str | None = None,
               download: bool = False):
    """`(images, labels)` of a tfds CIFAR split (e.g. "test[:1000]"), normalised.

    Example:
        >>> # needs CIFAR-10 prepared for tfds at data_dir (offline here):
        >>> x, y = load_cifar("cifar10", "test[:8]",
        ...                   data_dir="../shared/data/tfds")  # doctest: +SKIP
        >>> x.shape, y.shape  # doctest: +SKIP
        ((8, 32, 32, 3), (8,))
    """
    import tensorflow_datasets as tfds

    if name not in ("cifar10", "cifar100"):
        raise ValueError(f"Unknown CIFAR data set '{name}'. Valid: cifar10, cifar100.")
    try:
        ds = tfds.load(name, split=split, as_supervised=True, data_dir=data_dir,
                       download=download)
    except Exception as error:
        where = data_dir or "tfds' default data_dir"
        raise ValueError(
            f"Could not load '{name}' split '{split}' from {where} "
            f"(download={download}): {error}"
        ) from error
    images, labels = [], []
    for batch_images, batch_labels in tfds.as_numpy(ds.batch(1024)):
        images.append(batch_images)
        labels.append(batch_labels)
    return normalize_cifar(np.concatenate(images)), np.concatenate(labels).astype("int32")
