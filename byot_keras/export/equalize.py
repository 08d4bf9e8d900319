"""Rescale channels before full-integer quantization, without changing the float function.

A depthwise convolution followed directly by a 1x1 convolution (the separable convolutions
of the exit heads) is linear in each channel: multiplying depthwise channel c by s_c and
the 1x1 kernel's input channel c by 1 / s_c computes exactly the same function. TFLite's
int8 files quantize the depthwise output with one scale for the whole tensor, so channels
with a small range there lose most of their resolution. Choosing
`s_c = sqrt(w_c / a_c)` (a_c: channel c's largest absolute depthwise output on calibration
images, w_c: the largest absolute 1x1 weight it feeds) gives every channel the same
product of activation range and weight range, the cross-layer equalization of Nagel et
al., "Data-Free Quantization Through Weight Equalization and Bias Correction", ICCV 2019
(arXiv 1906.04721), here with measured activation ranges.
"""

from __future__ import annotations

import keras
import numpy as np


def _producer(layer):
    """The layer whose output is `layer`'s only input, or None."""
    if len(layer._inbound_nodes) != 1:
        return None  # a layer used twice: its inputs are not one tensor
    inputs = layer._inbound_nodes[0].input_tensors
    if len(inputs) != 1:
        return None
    return inputs[0]._keras_history.operation


def depthwise_pointwise_pairs(network: keras.Model) -> list[tuple]:
    """(DepthwiseConv2D, Conv2D 1x1) pairs with nothing in between: the depthwise layer is
    linear (no activation, one output per channel) and feeds only the 1x1 convolution."""
    pairs = []
    for layer in network.layers:
        if (type(layer) is not keras.layers.Conv2D or tuple(layer.kernel_size) != (1, 1)
                or layer.groups != 1):
            continue
        depthwise = _producer(layer)
        if (isinstance(depthwise, keras.layers.DepthwiseConv2D)
                and depthwise.depth_multiplier == 1
                and depthwise.activation is keras.activations.linear
                and len(depthwise._outbound_nodes) == 1
                and len(depthwise._inbound_nodes) == 1):
            pairs.append((depthwise, layer))
    return pairs


def equalization_scales(activation_range: np.ndarray, weight_range: np.ndarray) -> np.ndarray:
    """`sqrt(weight_range / activation_range)` per channel; 1 where either is zero (a dead
    channel stays as it is)."""
    activation_range = np.asarray(activation_range, np.float64)
    weight_range = np.asarray(weight_range, np.float64)
    alive = (activation_range > 0) & (weight_range > 0)
    scales = np.ones_like(activation_range)
    scales[alive] = np.sqrt(weight_range[alive] / activation_range[alive])
    return scales


def equalize_for_quantization(network: keras.Model, images: np.ndarray,
                              batch_size: int = 64) -> tuple[keras.Model, int]:
    """A copy of `network` (same layer names, same float function) whose depthwise -> 1x1
    pairs are rescaled for int8; returns `(copy, number of pairs rescaled)`. `images`
    are calibration inputs (normalised like training data). `network` is not changed.

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> model = zoo.alexnet_byot(num_classes=10, width_multiplier=0.125)
        >>> images = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
        >>> copy, pairs = equalize_for_quantization(model.network, images)
        >>> pairs  # the separable convolutions of the heads of exit_1 and exit_2
        10
    """
    copy = keras.models.clone_model(network)
    copy.set_weights(network.get_weights())
    pairs = depthwise_pointwise_pairs(copy)
    if not pairs:
        return copy, 0
    probe = keras.Model(copy.inputs, [depthwise.output for depthwise, _ in pairs])
    outputs = probe.predict(np.asarray(images, np.float32), batch_size=batch_size, verbose=0)
    if len(pairs) == 1:
        outputs = [outputs]
    for (depthwise, pointwise), output in zip(pairs, outputs):
        kernel = pointwise.kernel.numpy()  # (1, 1, channels in, channels out)
        scales = equalization_scales(np.abs(output).max(axis=(0, 1, 2)),
                                     np.abs(kernel[0, 0]).max(axis=1))
        depthwise.kernel.assign(
            (depthwise.kernel.numpy() * scales[None, None, :, None]).astype(np.float32))
        if depthwise.use_bias:
            depthwise.bias.assign((depthwise.bias.numpy() * scales).astype(np.float32))
        pointwise.kernel.assign((kernel / scales[None, None, :, None]).astype(np.float32))
    return copy, len(pairs)
