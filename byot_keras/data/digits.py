"""The embedded offline default: scikit-learn's handwritten digits as small RGB images.

1,797 images of 8x8 pixels (10 classes) ship inside scikit-learn, so the quickstart and
the tests run with no download. They are upsampled (nearest neighbour) to the zoo's
CIFAR input size and repeated over three channels.
"""

from __future__ import annotations

import numpy as np

DIGITS_CLASSES = [str(d) for d in range(10)]
# sklearn's digit pixels run 0..16; the model sees them divided by 16.
DIGITS_NORMALIZATION = {"scale": 1 / 16, "mean": 0.0, "std": 1.0}


def load_digits(image_size: int = 32, test_fraction: float = 0.2, seed: int = 0):
    """Returns `(x_train, y_train), (x_test, y_test)`: float32 images in [0, 1] of shape
    (n, image_size, image_size, 3) and int32 labels; a stratified split fixed by `seed`.

    Example:
        >>> (x_train, y_train), (x_test, y_test) = load_digits()
        >>> x_train.shape, x_test.shape
        ((1437, 32, 32, 3), (360, 32, 32, 3))
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    if image_size < 8 or image_size % 8:
        raise ValueError(f"image_size must be a multiple of 8 (>= 8), got {image_size}.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    digits = sklearn_digits()
    images = (digits.images / 16.0).astype("float32")  # pixel values are 0..16
    scale = image_size // 8
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    images = np.repeat(images[..., None], 3, axis=-1)
    labels = digits.target.astype("int32")
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return (x_train, y_train), (x_test, y_test)
