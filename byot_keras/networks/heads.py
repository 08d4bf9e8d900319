"""Exit heads: the classifiers' feature extractors attached to shallow sections.

Four kinds (see ../shared/docs/methods.md, sections 1-3):
- `sepconv`: the official BYOT code's heads: one SepConv(stride 2) per later section, so
  the head reaches the deepest section's resolution and width, optionally behind a
  learned attention mask.
- `bottleneck`: the BYOT ICCV text's "bottleneck" reading: 1x1 reduce, one kxk stride-k
  conv that jumps straight to the deepest resolution, 1x1 expand.
- `conv`: EED's public code: one plain 3x3 stride-2 conv -> BN -> ReLU per later section.
- `blocks`: MSD's "sampling-based branch augmentation": one backbone block of each later
  section's type (its downsampling and channel growth), supplied by the family, so the
  exit's feature has the deepest feature's shape.
All end in global average pooling; the pooled vector is the exit's feature `f_i`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from byot_keras.networks.common import batch_norm, conv2d, conv_initializer
from byot_keras.networks.namespace import layers


def _depthwise(x, stride: int, name: str):
    return layers.DepthwiseConv2D(
        3, strides=stride, padding="same", use_bias=False,
        depthwise_initializer=conv_initializer(), name=name,
    )(x)


def sep_conv(x, in_channels: int, out_channels: int, stride: int, *, prefix: str,
             sync_batchnorm: bool = False):
    """Depthwise 3x3 (stride) -> 1x1 -> BN -> ReLU -> depthwise 3x3 -> 1x1 -> BN -> ReLU."""
    x = _depthwise(x, stride, f"{prefix}_dw1")
    x = conv2d(x, in_channels, 1, name=f"{prefix}_pw1")
    x = batch_norm(x, name=f"{prefix}_bn1", sync=sync_batchnorm)
    x = layers.ReLU(name=f"{prefix}_relu1")(x)
    x = _depthwise(x, 1, f"{prefix}_dw2")
    x = conv2d(x, out_channels, 1, name=f"{prefix}_pw2")
    x = batch_norm(x, name=f"{prefix}_bn2", sync=sync_batchnorm)
    return layers.ReLU(name=f"{prefix}_relu2")(x)


def attention_mask(x, channels: int, *, prefix: str, sync_batchnorm: bool = False):
    """x * sigmoid(upsample(ReLU(BN(SepConv_s2(x))))): the head's input, not the trunk's."""
    height, width = x.shape[1], x.shape[2]
    mask = sep_conv(x, channels, channels, 2, prefix=f"{prefix}_sep",
                    sync_batchnorm=sync_batchnorm)
    mask = batch_norm(mask, name=f"{prefix}_bn", sync=sync_batchnorm)
    mask = layers.ReLU(name=f"{prefix}_relu")(mask)
    # Not keras.layers.Resizing: its call() defaults to training=True, which leaks into
    # the call context and puts later BatchNorms of `model(x)` into training mode.
    mask = layers.UpSampling2D(2, interpolation="bilinear", name=f"{prefix}_up")(mask)
    if mask.shape[1] != height or mask.shape[2] != width:  # odd sizes, e.g. 7 -> 4 -> 8
        mask = layers.Cropping2D(((0, mask.shape[1] - height), (0, mask.shape[2] - width)),
                                 name=f"{prefix}_crop")(mask)
    mask = layers.Activation("sigmoid", name=f"{prefix}_sigmoid")(mask)
    return layers.Multiply(name=f"{prefix}_apply")([x, mask])


def bottleneck_head(x, out_channels: int, downsampling: int, *, prefix: str,
                    sync_batchnorm: bool = False):
    """1x1 to out/4 -> BN-ReLU -> kxk stride k -> BN-ReLU -> 1x1 to out -> BN-ReLU."""
    mid = max(1, out_channels // 4)
    x = conv2d(x, mid, 1, name=f"{prefix}_reduce")
    x = batch_norm(x, name=f"{prefix}_reduce_bn", sync=sync_batchnorm)
    x = layers.ReLU(name=f"{prefix}_reduce_relu")(x)
    x = conv2d(x, mid, downsampling, stride=downsampling, name=f"{prefix}_down")
    x = batch_norm(x, name=f"{prefix}_down_bn", sync=sync_batchnorm)
    x = layers.ReLU(name=f"{prefix}_down_relu")(x)
    x = conv2d(x, out_channels, 1, name=f"{prefix}_expand")
    x = batch_norm(x, name=f"{prefix}_expand_bn", sync=sync_batchnorm)
    return layers.ReLU(name=f"{prefix}_expand_relu")(x)


def conv_head(x, later_channels: Sequence[int], *, prefix: str, sync_batchnorm: bool = False):
    """One 3x3 stride-2 conv -> BN -> ReLU per later section, to that section's width."""
    for step, out_channels in enumerate(later_channels, start=1):
        x = conv2d(x, out_channels, 3, 2, name=f"{prefix}_conv{step}")
        x = batch_norm(x, name=f"{prefix}_bn{step}", sync=sync_batchnorm)
        x = layers.ReLU(name=f"{prefix}_relu{step}")(x)
    return x


def exit_head(x, in_channels: int, later_channels: Sequence[int], *, kind: str,
              attention: bool, prefix: str, feature_name: str, sync_batchnorm: bool = False,
              later_blocks: Sequence[Callable] = ()):
    """The feature vector of one shallow exit.

    `later_channels` are the output widths of the sections after this one (the last
    entry is the head's feature width); each later section halves the resolution, so the
    head downsamples 2**len(later_channels) times to meet the deepest section.
    `later_blocks` (for kind "blocks"): one `block(x, in_channels, name)` per later
    section, building that section's type of block.
    """
    if attention:
        x = attention_mask(x, in_channels, prefix=f"{prefix}_attention",
                           sync_batchnorm=sync_batchnorm)
    if kind == "sepconv":
        channels = in_channels
        for step, out_channels in enumerate(later_channels, start=1):
            x = sep_conv(x, channels, out_channels, 2, prefix=f"{prefix}_sep{step}",
                         sync_batchnorm=sync_batchnorm)
            channels = out_channels
    elif kind == "bottleneck":
        x = bottleneck_head(x, later_channels[-1], 2 ** len(later_channels),
                            prefix=f"{prefix}_bottleneck", sync_batchnorm=sync_batchnorm)
    elif kind == "conv":
        x = conv_head(x, later_channels, prefix=prefix, sync_batchnorm=sync_batchnorm)
    else:  # "blocks"
        channels = in_channels
        for step, (block, out_channels) in enumerate(zip(later_blocks, later_channels),
                                                     start=1):
            x = block(x, channels, f"{prefix}_block{step}")
            channels = out_channels
    return layers.GlobalAveragePooling2D(name=feature_name)(x)
