"""CIFAR WideResNet-d-k (Zagoruyko & Komodakis, BMVC 2016) with BYOT exits after the
first two of its three groups.

A 3x3 stem conv (16 channels) feeds three groups of (depth - 4) / 6 pre-activation
blocks each, 16k, 32k and 64k channels wide at strides 1, 2, 2; a final BN-ReLU, global
average pooling and a Dense close the network. A block is BN-ReLU-conv3x3(stride)-
BN-ReLU-(dropout)-conv3x3 plus a shortcut: identity, or a 1x1 conv (no BN) of the
pre-activated input when the width or the stride changes. No conv has a bias.
WRN-28-10 with 100 classes has 36,536,884 trainable parameters. `wrn44_8_byot` is the
BYOT paper's "WideResNet44-8", whose depth is not 6n + 4 (see its docstring).

Sections: the outputs of groups 1 and 2 (raw residual sums, as the next block gets
them), and group 3 after the final BN-ReLU (the map that is pooled for the classifier).
"""

from __future__ import annotations

from collections.abc import Sequence

from byot_keras.networks import namespace
from byot_keras.networks.common import (
    batch_norm,
    build_multi_exit_model,
    check_num_classes,
    conv2d,
    resolve_input,
    scaled,
)
from byot_keras.networks.namespace import layers
from byot_keras.networks.registry import register_network, register_plain_variant, register_variant
from byot_keras.networks.structure import MultiExitNetwork

STEM_CHANNELS = 16
NUM_GROUPS = 3


def wide_block(x, in_channels: int, filters: int, stride: int, *, name: str,
               dropout_rate: float = 0.0, sync_batchnorm: bool = False):
    """Pre-activation wide block; output has `filters` channels and is not activated."""
    preact = batch_norm(x, name=f"{name}_bn1", sync=sync_batchnorm)
    preact = layers.ReLU(name=f"{name}_relu1")(preact)
    y = conv2d(preact, filters, 3, stride, name=f"{name}_conv1")
    y = batch_norm(y, name=f"{name}_bn2", sync=sync_batchnorm)
    y = layers.ReLU(name=f"{name}_relu2")(y)
    if dropout_rate > 0:
        y = layers.Dropout(dropout_rate, name=f"{name}_dropout")(y)
    y = conv2d(y, filters, 3, name=f"{name}_conv2")
    shortcut = x
    if stride != 1 or in_channels != filters:
        shortcut = conv2d(preact, filters, 1, stride, name=f"{name}_shortcut")
    return layers.Add(name=f"{name}_add")([y, shortcut])


def blocks_per_group(depth) -> int:
    """Blocks per group of a WRN of total depth `depth` = 6n + 4: n (two 3x3 convs each)."""
    valid = isinstance(depth, int) and not isinstance(depth, bool)
    if not valid or depth < 10 or (depth - 4) % 6 != 0:
        hint = " For the BYOT paper's WideResNet44-8 use wrn44_8_byot." if depth == 44 else ""
        raise ValueError(
            f"depth must be 6n + 4 with n >= 1 blocks per group (10, 16, 22, 28, 34, 40, "
            f"..., e.g. 16, 28 or 40 in the WRN paper); got {depth!r}.{hint}"
        )
    return (depth - 4) // 6


def build_wide_resnet(
    num_blocks: int,
    width: int,
    *,
    name: str,
    num_classes: int = 100,
    input_shape: tuple | None = None,
    exits: Sequence[int] | None = None,
    head: str | None = None,
    attention: bool | None = None,
    width_multiplier: float = 1.0,
    dropout_rate: float = 0.0,
    sync_batchnorm: bool = False,
    default_head: str | None = None,
) -> MultiExitNetwork:
    """Builds a CIFAR WRN with `num_blocks` blocks per group and an exit after every
    chosen group."""
    for label, value in (("blocks_per_group", num_blocks), ("width (the widening factor k)",
                                                             width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be an integer >= 1; got {value!r}.")
    if not 0 <= dropout_rate < 1:
        raise ValueError(f"dropout_rate must be in [0, 1); got {dropout_rate}.")
    check_num_classes(num_classes)
    input_shape, _ = resolve_input(input_shape, "cifar", name, 2 ** (NUM_GROUPS - 1))
    inputs = namespace.Input(shape=input_shape, name="image")
    in_channels = scaled(STEM_CHANNELS, width_multiplier)
    x = conv2d(inputs, in_channels, 3, name="stem_conv")
    sections, section_channels = [], []
    for group in range(1, NUM_GROUPS + 1):
        filters = scaled(STEM_CHANNELS * width * 2 ** (group - 1), width_multiplier)
        for index in range(1, num_blocks + 1):
            stride = 2 if group > 1 and index == 1 else 1
            x = wide_block(x, in_channels, filters, stride, name=f"group{group}_block{index}",
                           dropout_rate=dropout_rate, sync_batchnorm=sync_batchnorm)
            in_channels = filters
        if group == NUM_GROUPS:
            x = batch_norm(x, name="final_bn", sync=sync_batchnorm)
            x = layers.ReLU(name="final_relu")(x)
        x = layers.Identity(name=f"section_{group}")(x)
        sections.append(x)
        section_channels.append(filters)
    feature = layers.GlobalAveragePooling2D(name="avg_pool")(x)

    def branch_block(y, in_channels: int, section: int, block_name: str):
        filters = section_channels[section - 1]
        y = wide_block(y, in_channels, filters, 2, name=block_name, dropout_rate=dropout_rate,
                       sync_batchnorm=sync_batchnorm)
        if section == NUM_GROUPS:  # the trunk's last group ends in BN-ReLU too
            y = batch_norm(y, name=f"{block_name}_final_bn", sync=sync_batchnorm)
            y = layers.ReLU(name=f"{block_name}_final_relu")(y)
        return y

    return build_multi_exit_model(
        inputs, sections, section_channels, feature, num_classes, name=name, exits=exits,
        head=head, attention=attention, sync_batchnorm=sync_batchnorm, default_head=default_head,
        branch_block=branch_block,
    )


_ARGS = """num_classes: number of classes (>= 2); every exit outputs logits.
        input_shape: (height, width, channels); default (32, 32, 3).
        weights: None, a checkpoint name (`zoo.list_pretrained()`) or a .npz / .keras /
            .weights.h5 file; with `reset_classifiers=True`, weights of another
            num_classes load with fresh classifiers.
        name: model name; default {default_name}.
        exits: groups (1-2) that get a shallow exit; default all.
        head: "sepconv" (official BYOT heads), "bottleneck" (the BYOT paper's reading),
            "conv" (EED's) or "blocks" (MSD's branch augmentation); default: the
            method's own head, else "sepconv".
        attention: attention mask before each head; default True for "sepconv".
        width_multiplier: scales every channel count (1.0 = the standard network).
        dropout_rate: dropout between the two convs of each block (0.3 in the WRN
            paper's dropout runs; 0.0 = none).
        sync_batchnorm: synchronise batch statistics across replicas under tf.distribute.
        method: the training method, one of `byot_keras.losses.list_methods()`
            (default "byot"); its options may be given as further keywords.
        objective: a preset name of the method (byot: "official", "paper"), a dict
            of its options, or a loss object from `byot_keras.losses`.

    Returns:
        A `byot_keras.training.SelfDistillationModel`: compile it and call `fit`."""


@register_network
def wide_resnet_byot(
    depth: int,
    width: int,
    *,
    num_classes: int = 100,
    input_shape: tuple | None = None,
    name: str | None = None,
    exits: Sequence[int] | None = None,
    head: str | None = None,
    attention: bool | None = None,
    width_multiplier: float = 1.0,
    dropout_rate: float = 0.0,
    sync_batchnorm: bool = False,
    default_head: str | None = None,
) -> MultiExitNetwork:
    return build_wide_resnet(
        blocks_per_group(depth), width, name=name or f"wrn{depth}_{width}_byot",
        num_classes=num_classes, input_shape=input_shape, exits=exits,
        head=head, attention=attention, width_multiplier=width_multiplier,
        dropout_rate=dropout_rate, sync_batchnorm=sync_batchnorm, default_head=default_head,
    )


wide_resnet_byot.__doc__ = f"""Builds the CIFAR WideResNet-`depth`-`width` with BYOT exits after
    groups 1 and 2 (3 exits by default).

    Args:
        depth: total depth, 6n + 4 (n blocks per group), e.g. 16, 28, 40.
        width: widening factor k (groups of 16k, 32k, 64k channels), an integer >= 1.
        {_ARGS.format(default_name='"wrn{depth}_{width}_byot"')}

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> model = zoo.create_model("wide_resnet_byot", depth=10, width=2, num_classes=10)
        >>> sorted(model(np.zeros((1, 32, 32, 3))))  # logits per exit
        ['exit_1', 'exit_2', 'exit_3']
"""


_DOC = """Builds {title} (CIFAR WideResNet, depth {depth}, widening factor {width}) with
    BYOT exits after groups 1 and 2 (3 exits by default); `wide_resnet_byot({depth}, {width})`.

    Args:
        {args}

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> model = zoo.{fn}(num_classes=10, width_multiplier=0.125)
        >>> sorted(model(np.zeros((1, 32, 32, 3))))  # logits per exit
        ['exit_1', 'exit_2', 'exit_3']
"""


def _register(fn_name: str, title: str, depth: int, width: int):
    doc = _DOC.format(title=title, depth=depth, width=width, fn=fn_name,
                      args=_ARGS.format(default_name=f'"{fn_name}"'))
    return register_variant(fn_name, wide_resnet_byot, doc, depth, width)


wrn16_4_byot = _register("wrn16_4_byot", "WRN-16-4", 16, 4)
wrn28_10_byot = _register("wrn28_10_byot", "WRN-28-10", 28, 10)


@register_network
def wrn44_8_byot(
    *,
    num_classes: int = 100,
    input_shape: tuple | None = None,
    name: str = "wrn44_8_byot",
    blocks_per_group: int = 6,
    exits: Sequence[int] | None = None,
    head: str | None = None,
    attention: bool | None = None,
    width_multiplier: float = 1.0,
    dropout_rate: float = 0.0,
    sync_batchnorm: bool = False,
    default_head: str | None = None,
) -> MultiExitNetwork:
    return build_wide_resnet(
        blocks_per_group, 8, name=name, num_classes=num_classes, input_shape=input_shape,
        exits=exits, head=head, attention=attention,
        width_multiplier=width_multiplier, dropout_rate=dropout_rate,
        sync_batchnorm=sync_batchnorm, default_head=default_head,
    )


wrn44_8_byot.__doc__ = f"""Builds the BYOT paper's "WideResNet44-8" (CIFAR, widening factor 8)
    with BYOT exits after groups 1 and 2 (3 exits by default).

    44 is not a WRN depth (6n + 4) and the BYOT paper does not define the network, so the
    blocks per group are an option. The default, 6, is what the common
    PyTorch WRN code (n = int((depth - 4) / 6), truncated) builds for depth 44: the
    structure of WRN-40-8, 35,794,484 trainable parameters with 100 classes. 7 reads 44
    as 6n + 2 (the CIFAR ResNet-44 count), the structure of WRN-46-8.

    Args:
        blocks_per_group: wide blocks in each of the three groups (default 6, see above).
        {_ARGS.format(default_name='"wrn44_8_byot"')}

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> model = zoo.wrn44_8_byot(num_classes=10, width_multiplier=0.125)
        >>> sorted(model(np.zeros((1, 32, 32, 3))))  # logits per exit
        ['exit_1', 'exit_2', 'exit_3']
"""

wrn16_4, wrn28_10, wrn44_8 = (register_plain_variant(builder) for builder in
                              (wrn16_4_byot, wrn28_10_byot, wrn44_8_byot))
