"""ResNeXt (Xie et al., CVPR 2017) with BYOT exits after each stage but the last.

- ResNeXt-29 (8x64d, 16x64d), the paper's CIFAR networks: a 3x3 stem conv (64) with BN
  and ReLU, then three stages of three bottleneck blocks with outputs of 256, 512 and
  1024 channels at strides 1, 2, 2, global average pooling and a Dense. A block is
  1x1 conv -> grouped 3x3 conv (carries the stride) -> 1x1 conv, each with BN, where the
  grouped width is cardinality * base_width * (out / 256); the shortcut is a 1x1 conv +
  BN when the width or the stride changes. 3 exits. With 100 classes: 34,518,948
  trainable parameters (8x64d) and 68,247,460 (16x64d).
- ResNeXt-50 (32x4d) is torchvision's resnext50_32x4d: the ResNet-50 of `resnet.py`
  with a 32-group, 4-channels-per-group bottleneck. 4 exits. ImageNet stem, 224x224 and
  1000 classes: 25,028,904 trainable parameters.

Both reuse `resnet.py`'s bottleneck block (its width rule int(filters * base_width / 64)
* groups is the ResNeXt rule, with filters = out / 4) and its stem.
"""

from __future__ import annotations

from collections.abc import Sequence

from byot_keras.networks import namespace
from byot_keras.networks.common import (
    build_multi_exit_model,
    check_num_classes,
    resolve_input,
    scaled,
)
from byot_keras.networks.namespace import layers
from byot_keras.networks.registry import register_network, register_plain_variant, register_variant
from byot_keras.networks.resnet import bottleneck_block, build_resnet, stem
from byot_keras.networks.structure import MultiExitNetwork

CIFAR_BLOCKS_PER_STAGE = (3, 3, 3)
STEM_CHANNELS = 64


def check_group_width(base: int, cardinality: int, base_width: int, model_name: str) -> None:
    """The narrowest grouped conv (stage 1: int(base * base_width / 64) per group) must
    have at least one channel per group; a small width_multiplier can make it zero."""
    if cardinality < 1 or base_width < 1:
        raise ValueError(
            f"cardinality and base_width must be >= 1; got {cardinality} and {base_width}."
        )
    if base * base_width < 64:
        raise ValueError(
            f"width_multiplier is too small for {model_name}: the first stage's grouped "
            f"conv would have int({base} * {base_width} / 64) = 0 channels per group. Use "
            f"a width_multiplier that keeps the stem at >= {-(-64 // base_width)} channels "
            f"(it has {base})."
        )


def build_resnext29(
    cardinality: int,
    base_width: int,
    *,
    name: str,
    num_classes: int = 100,
    input_shape: tuple | None = None,
    exits: Sequence[int] | None = None,
    head: str | None = None,
    attention: bool | None = None,
    width_multiplier: float = 1.0,
    sync_batchnorm: bool = False,
    default_head: str | None = None,
) -> MultiExitNetwork:
    """Builds the CIFAR ResNeXt-29 (`cardinality` x `base_width`d) with an exit after
    every chosen stage."""
    check_num_classes(num_classes)
    num_stages = len(CIFAR_BLOCKS_PER_STAGE)
    input_shape, _ = resolve_input(input_shape, "cifar", name, 2 ** (num_stages - 1))
    base = scaled(STEM_CHANNELS, width_multiplier)
    check_group_width(base, cardinality, base_width, name)
    inputs = namespace.Input(shape=input_shape, name="image")
    x = stem(inputs, base, "cifar", sync_batchnorm)
    in_channels = base
    sections, section_channels = [], []
    for stage, num_blocks in enumerate(CIFAR_BLOCKS_PER_STAGE, start=1):
        filters = base * 2 ** (stage - 1)
        for index in range(1, num_blocks + 1):
            stride = 2 if stage > 1 and index == 1 else 1
            x = bottleneck_block(x, in_channels, filters, stride,
                                 name=f"stage{stage}_block{index}", groups=cardinality,
                                 width_per_group=base_width, sync_batchnorm=sync_batchnorm)
            in_channels = filters * bottleneck_block.expansion
        x = layers.Identity(name=f"section_{stage}")(x)
        sections.append(x)
        section_channels.append(in_channels)
    feature = layers.GlobalAveragePooling2D(name="avg_pool")(x)

    def branch_block(y, in_channels: int, section: int, block_name: str):
        return bottleneck_block(y, in_channels, base * 2 ** (section - 1), 2, name=block_name,
                                groups=cardinality, width_per_group=base_width,
                                sync_batchnorm=sync_batchnorm)

    return build_multi_exit_model(
        inputs, sections, section_channels, feature, num_classes, name=name, exits=exits,
        head=head, attention=attention, sync_batchnorm=sync_batchnorm, default_head=default_head,
        branch_block=branch_block,
    )


_DOC29 = """Builds the CIFAR {title} (cardinality {cardinality}, {base_width} channels per group
    in the first stage) with BYOT exits after stages 1 and 2 (3 exits by default).

    Args:
        num_classes: number of classes (>= 2); every exit outputs logits.
        input_shape: (height, width, channels); default (32, 32, 3).
        weights: None, a checkpoint name (`zoo.list_pretrained()`) or a .npz / .keras /
            .weights.h5 file; with `reset_classifiers=True`, weights of another
            num_classes load with fresh classifiers.
        name: model name.
        exits: stages (1-2) that get a shallow exit; default all.
        head: "sepconv" (official BYOT heads), "bottleneck" (the BYOT paper's reading),
            "conv" (EED's) or "blocks" (MSD's branch augmentation); default: the
            method's own head, else "sepconv".
        attention: attention mask before each head; default True for "sepconv".
        width_multiplier: scales every channel count, the grouped convs' widths included
            (1.0 = the standard network); the cardinality stays.
        sync_batchnorm: synchronise batch statistics across replicas under tf.distribute.
        method: the training method, one of `byot_keras.losses.list_methods()`
            (default "byot"); its options may be given as further keywords.
        objective: a preset name of the method (byot: "official", "paper"), a dict
            of its options, or a loss object from `byot_keras.losses`.

    Returns:
        A `byot_keras.training.SelfDistillationModel`: compile it and call `fit`.

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> model = zoo.{fn}(num_classes=10, width_multiplier=0.0625)
        >>> sorted(model(np.zeros((1, 32, 32, 3))))  # logits per exit
        ['exit_1', 'exit_2', 'exit_3']
"""


def _register29(fn_name: str, title: str, cardinality: int, base_width: int):
    doc = _DOC29.format(title=title, cardinality=cardinality, base_width=base_width,
                        fn=fn_name)
    return register_variant(fn_name, build_resnext29, doc, cardinality, base_width)


resnext29_8x64d_byot = _register29("resnext29_8x64d_byot", "ResNeXt-29 (8x64d)", 8, 64)
resnext29_16x64d_byot = _register29("resnext29_16x64d_byot", "ResNeXt-29 (16x64d)", 16, 64)


@register_network
def resnext50_32x4d_byot(
    *,
    num_classes: int = 100,
    input_shape: tuple | None = None,
    name: str = "resnext50_32x4d_byot",
    stem_type: str = "auto",
    exits: Sequence[int] | None = None,
    head: str | None = None,
    attention: bool | None = None,
    width_multiplier: float = 1.0,
    sync_batchnorm: bool = False,
    default_head: str | None = None,
    branches: int | None = None,
) -> MultiExitNetwork:
    """Builds ResNeXt-50 (32x4d, torchvision's resnext50_32x4d) with BYOT exits after each
    stage (4 exits by default).

    Args:
        num_classes: number of classes (>= 2); every exit outputs logits.
        input_shape: (height, width, channels); default (32, 32, 3).
        weights: None, a checkpoint name (`zoo.list_pretrained()`) or a .npz / .keras /
            .weights.h5 file; with `reset_classifiers=True`, weights of another
            num_classes load with fresh classifiers.
        name: model name.
        stem_type: "auto" (CIFAR stem up to 64 px, ImageNet stem above), "cifar" or
            "imagenet".
        exits: stages (1-3) that get a shallow exit; default all.
        head: "sepconv" (official BYOT heads), "bottleneck" (the BYOT paper's reading),
            "conv" (EED's) or "blocks" (MSD's branch augmentation); default: the
            method's own head, else "sepconv".
        attention: attention mask before each head; default True for "sepconv".
        width_multiplier: scales every channel count, the grouped convs' widths included
            (1.0 = the standard network; at least 0.25, so that each of the 32 groups
            keeps a channel); the cardinality stays.
        sync_batchnorm: synchronise batch statistics across replicas under tf.distribute.
        method: the training method, one of `byot_keras.losses.list_methods()`
            (default "byot"); its options may be given as further keywords.
        objective: a preset name of the method (byot: "official", "paper"), a dict
            of its options, or a loss object from `byot_keras.losses`.

    Returns:
        A `byot_keras.training.SelfDistillationModel`: compile it and call `fit`.

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> model = zoo.resnext50_32x4d_byot(num_classes=10, width_multiplier=0.25)
        >>> sorted(model(np.zeros((1, 32, 32, 3))))  # logits per exit
        ['exit_1', 'exit_2', 'exit_3', 'exit_4']
    """
    cardinality, base_width = 32, 4
    check_group_width(scaled(STEM_CHANNELS, width_multiplier), cardinality, base_width, name)
    return build_resnet(
        bottleneck_block, (3, 4, 6, 3), name=name, num_classes=num_classes,
        input_shape=input_shape, stem_type=stem_type, exits=exits,
        head=head, attention=attention, width_multiplier=width_multiplier,
        groups=cardinality, width_per_group=base_width, sync_batchnorm=sync_batchnorm,
        default_head=default_head, branches=branches,
    )

resnext29_8x64d, resnext29_16x64d, resnext50_32x4d = (
    register_plain_variant(builder) for builder in
    (resnext29_8x64d_byot, resnext29_16x64d_byot, resnext50_32x4d_byot)
)
