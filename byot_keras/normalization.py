"""A model's input normalisation: what the training pipeline did to pixel values, kept
with the model so that an export can do the same inside its files.

A normalisation is a dict `{"scale": s, "mean": m, "std": d}`: the data set's pixel values
times `scale` lie in [0, 1] (1/255 for 8-bit images, 1/16 for the embedded digits), and
the network saw `(pixel * scale - mean) / std`, per RGB channel (`mean` / `std` one number
or one per channel). An 8-bit RGB picture (0..255) is therefore prepared for the network
as `(pixel / 255 - mean) / std`: what the exported TFLite files compute in their graph.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

PIXEL_MAX = 255.0  # 8-bit RGB: the exported files take pixel values 0..255
KEYS = ("scale", "mean", "std")


def check_normalization(value, channels: int = 3, where: str = "normalization"
                        ) -> dict | None:
    """`value` as a clean, JSON-ready normalisation dict (None stays None); a ValueError
    naming the problem otherwise.

    Example:
        >>> check_normalization({"scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": 0.25})
        {'scale': 0.00392156862745098, 'mean': [0.5, 0.5, 0.5], 'std': 0.25}
    """
    if value is None:
        return None
    valid = ("give a dict {'scale': s, 'mean': m, 'std': d}: the data's pixel values "
             "times s lie in [0, 1], the network saw (pixel * s - m) / d, m and d one "
             f"number or {channels} (one per channel)")
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: got {value!r}; {valid}.")
    unknown = sorted(set(value) - set(KEYS))
    missing = [key for key in KEYS if key not in value]
    if unknown or missing:
        raise ValueError(f"{where}: {'unknown keys ' + str(unknown) if unknown else ''}"
                         f"{'; ' if unknown and missing else ''}"
                         f"{'missing ' + str(missing) if missing else ''}; {valid}.")
    clean = {}
    for key in KEYS:
        numbers = _numbers(value[key], key, channels, where, valid)
        if key in ("scale", "std") and min(numbers) <= 0:
            raise ValueError(f"{where}: '{key}' must be positive, got {value[key]!r}.")
        if key == "scale" and len(numbers) != 1:
            raise ValueError(f"{where}: 'scale' is one number, got {value[key]!r}.")
        clean[key] = numbers[0] if len(numbers) == 1 and not isinstance(
            value[key], (list, tuple, np.ndarray)) else numbers
    return clean


def _numbers(item, key: str, channels: int, where: str, valid: str) -> list[float]:
    values = np.asarray(item, dtype=object).reshape(-1).tolist()
    try:
        numbers = [float(v) for v in values if not isinstance(v, (bool, str))]
    except (TypeError, ValueError):
        numbers = []
    if not values or len(numbers) != len(values) or not all(map(math.isfinite, numbers)):
        raise ValueError(f"{where}: '{key}' is {item!r}, not a finite number or list of "
                         f"numbers; {valid}.")
    if len(numbers) not in (1, channels):
        raise ValueError(f"{where}: '{key}' has {len(numbers)} values; {valid}.")
    return numbers


def pixel_affine(normalization: Mapping | None, channels: int = 3
                 ) -> tuple[np.ndarray, np.ndarray]:
    """`(a, b)`, per channel (float32), with `pixel * a + b == (pixel / 255 - mean) / std`:
    the in-graph form of the normalisation for 0..255 pixels. None: the identity.

    Example:
        >>> a, b = pixel_affine({"scale": 1 / 255, "mean": 0.5, "std": 0.5})
        >>> float(255 * a[0] + b[0]), float(b[0])
        (1.0, -1.0)
    """
    if normalization is None:
        return np.ones(channels, np.float32), np.zeros(channels, np.float32)
    mean = np.broadcast_to(np.asarray(normalization["mean"], np.float64), (channels,))
    std = np.broadcast_to(np.asarray(normalization["std"], np.float64), (channels,))
    return (1.0 / (PIXEL_MAX * std)).astype(np.float32), (-mean / std).astype(np.float32)


def to_pixels(images, normalization: Mapping | None) -> np.ndarray:
    """Normalised images (what the network takes) back to 0..255 pixel values, float32;
    the identity for None.

    Example:
        >>> import numpy as np
        >>> to_pixels(np.zeros((1, 1, 3)), {"scale": 1 / 255, "mean": 0.5, "std": 0.5})
        array([[[127.5, 127.5, 127.5]]], dtype=float32)
    """
    images = np.asarray(images, np.float32)
    if normalization is None:
        return images
    channels = images.shape[-1]
    mean = np.broadcast_to(np.asarray(normalization["mean"], np.float32), (channels,))
    std = np.broadcast_to(np.asarray(normalization["std"], np.float32), (channels,))
    return ((images * std + mean) * np.float32(PIXEL_MAX)).astype(np.float32)


def from_pixels(pixels, normalization: Mapping | None) -> np.ndarray:
    """0..255 pixel values to what the network takes, `(pixel / 255 - mean) / std`,
    float32; the identity for None.

    Example:
        >>> import numpy as np
        >>> from_pixels(np.full((1, 1, 3), 255), {"scale": 1 / 255, "mean": 0.5, "std": 0.5})
        array([[[1., 1., 1.]]], dtype=float32)
    """
    pixels = np.asarray(pixels, np.float32)
    if normalization is None:
        return pixels
    channels = pixels.shape[-1]
    mean = np.broadcast_to(np.asarray(normalization["mean"], np.float32), (channels,))
    std = np.broadcast_to(np.asarray(normalization["std"], np.float32), (channels,))
    return ((pixels / np.float32(PIXEL_MAX) - mean) / std).astype(np.float32)
