"""Arithmetic cost of a Keras model: multiply-accumulates of its convolutions and
dense layers for one image (the convention behind "ResNet-50: 4.1 GFLOPs", which counts
multiply-adds); batch norm, activations, pooling and additions are not counted."""

from __future__ import annotations

import math

import keras


def layer_macs(layer: keras.layers.Layer) -> int:
    """Multiply-accumulates of one call of `layer` on a single example."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel_h, kernel_w = layer.kernel_size
        return math.prod(layer.output.shape[1:]) * kernel_h * kernel_w
    if isinstance(layer, keras.layers.Conv2D):
        kernel_h, kernel_w = layer.kernel_size
        in_channels = layer.input.shape[-1] // layer.groups
        return math.prod(layer.output.shape[1:]) * kernel_h * kernel_w * in_channels
    if isinstance(layer, keras.layers.Dense):
        return math.prod(layer.output.shape[1:]) * layer.input.shape[-1]
    return 0


def count_macs(model: keras.Model) -> int:
    """Total multiply-accumulates of a functional `model` for one image."""
    return int(sum(layer_macs(layer) for layer in model.layers))
