"""ResNet-18/34/50/101/152 with BYOT exits after each of the four stages.

The backbone follows torchvision's ResNet (v1.5: stride on the 3x3 conv of bottlenecks,
no conv biases) with either the CIFAR stem (3x3 conv, stride 1, no max-pool; as in the
BYOT code) or the ImageNet stem (7x7 stride 2 + 3x3 max-pool). The deepest exit is the
unchanged backbone: CIFAR ResNet-18 with 100 classes has 11,220,132 trainable
parameters, ImageNet ResNet-50 with 1000 classes 25,557,032.
"""

from __future__ import annotations

from collections.abc import Sequence

from byot_keras.networks import namespace
from byot_keras.networks.common import (
    BUILDER_OPTION_KINDS,
    batch_norm,
    build_branch_ensemble_model,
    build_multi_exit_model,
    check_num_classes,
    conv2d,
    resolve_input,
    scaled,
)
from byot_keras.networks.namespace import layers
from byot_keras.networks.registry import register_plain_variant, register_variant
from byot_keras.networks.structure import MultiExitNetwork


def basic_block(x, in_channels: int, filters: int, stride: int, *, name: str,
                sync_batchnorm: bool = False, **_):
    """Two 3x3 convs; output has `filters` channels."""
    shortcut = x
    y = conv2d(x, filters, 3, stride, name=f"{name}_conv1")
    y = batch_norm(y, name=f"{name}_bn1", sync=sync_batchnorm)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = conv2d(y, filters, 3, name=f"{name}_conv2")
    y = batch_norm(y, name=f"{name}_bn2", sync=sync_batchnorm)
    if stride != 1 or in_channels != filters:
        shortcut = conv2d(x, filters, 1, stride, name=f"{name}_shortcut")
        shortcut = batch_norm(shortcut, name=f"{name}_shortcut_bn", sync=sync_batchnorm)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


basic_block.expansion = 1


def bottleneck_block(x, in_channels: int, filters: int, stride: int, *, name: str,
                     groups: int = 1, width_per_group: int = 64,
                     sync_batchnorm: bool = False):
    """1x1 reduce -> 3x3 (grouped for ResNeXt, carries the stride) -> 1x1 to 4*filters."""
    width = int(filters * width_per_group / 64) * groups
    out_channels = filters * 4
    shortcut = x
    y = conv2d(x, width, 1, name=f"{name}_conv1")
    y = batch_norm(y, name=f"{name}_bn1", sync=sync_batchnorm)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = conv2d(y, width, 3, stride, groups=groups, name=f"{name}_conv2")
    y = batch_norm(y, name=f"{name}_bn2", sync=sync_batchnorm)
    y = layers.ReLU(name=f"{name}_relu2")(y)
    y = conv2d(y, out_channels, 1, name=f"{name}_conv3")
    y = batch_norm(y, name=f"{name}_bn3", sync=sync_batchnorm)
    if stride != 1 or in_channels != out_channels:
        shortcut = conv2d(x, out_channels, 1, stride, name=f"{name}_shortcut")
        shortcut = batch_norm(shortcut, name=f"{name}_shortcut_bn", sync=sync_batchnorm)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


bottleneck_block.expansion = 4


def stem(x, channels: int, kind: str, sync_batchnorm: bool = False):
    """CIFAR: 3x3 stride 1. ImageNet: 7x7 stride 2 + 3x3 stride-2 max-pool."""
    if kind == "cifar":
        x = conv2d(x, channels, 3, name="stem_conv")
    else:
        x = conv2d(x, channels, 7, 2, name="stem_conv")
    x = batch_norm(x, name="stem_bn", sync=sync_batchnorm)
    x = layers.ReLU(name="stem_relu")(x)
    if kind == "imagenet":
        x = layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    return x


def build_resnet(
    block,
    blocks_per_stage: Sequence[int],
    *,
    name: str,
    num_classes: int = 100,
    input_shape: tuple | None = None,
    stem_type: str = "auto",
    exits: Sequence[int] | None = None,
    head: str | None = None,
    attention: bool | None = None,
    width_multiplier: float = 1.0,
    groups: int = 1,
    width_per_group: int = 64,
    sync_batchnorm: bool = False,
    default_head: str | None = None,
    branches: int | None = None,
) -> MultiExitNetwork:
    """Builds a 4-stage ResNet/ResNeXt with an exit after every chosen stage (or, with
    `branches` (ONE), that many copies of the last stage and a gate)."""
    check_num_classes(num_classes)
    if branches is not None:
        BUILDER_OPTION_KINDS["branches"].check("branches", branches, f"{name} option")
    input_shape, stem_type = resolve_input(input_shape, stem_type, name, 8)
    base = scaled(64, width_multiplier)
    inputs = namespace.Input(shape=input_shape, name="image")
    x = stem(inputs, base, stem_type, sync_batchnorm)
    options = dict(groups=groups, width_per_group=width_per_group,
                   sync_batchnorm=sync_batchnorm)

    def build_stage(y, in_channels: int, stage: int, prefix: str = ""):
        filters = base * 2 ** (stage - 1)
        for index in range(1, blocks_per_stage[stage - 1] + 1):
            stride = 2 if stage > 1 and index == 1 else 1
            y = block(y, in_channels, filters, stride,
                      name=f"{prefix}stage{stage}_block{index}", **options)
            in_channels = filters * block.expansion
        return y, in_channels

    in_channels = base
    sections, section_channels = [], []
    last = len(blocks_per_stage)
    for stage in range(1, last + 1):
        if stage == last and branches is not None:
            if exits is not None or head is not None or attention is not None:
                raise ValueError("branches= (ONE: copies of the last stage and a gate) builds "
                                 "no shallow exits: exits=, head= and attention= do not "
                                 "apply to it.")
            copies = [build_stage(x, in_channels, stage, prefix=f"branch{b}_")[0]
                      for b in range(1, branches + 1)]
            return build_branch_ensemble_model(
                inputs, x, copies, num_classes, name=name, sync_batchnorm=sync_batchnorm)
        x, in_channels = build_stage(x, in_channels, stage)
        x = layers.Identity(name=f"section_{stage}")(x)
        sections.append(x)
        section_channels.append(in_channels)
    feature = layers.GlobalAveragePooling2D(name="avg_pool")(x)

    def branch_block(y, in_channels: int, section: int, block_name: str):
        return block(y, in_channels, base * 2 ** (section - 1), 2, name=block_name, **options)

    return build_multi_exit_model(
        inputs, sections, section_channels, feature, num_classes, name=name, exits=exits,
        head=head, attention=attention, sync_batchnorm=sync_batchnorm, default_head=default_head,
        branch_block=branch_block,
    )


_DOC = """Builds {title} with BYOT exits after each stage (4 exits by default).

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
        width_multiplier: scales every channel count (1.0 = the standard network).
        sync_batchnorm: synchronise batch statistics across replicas under tf.distribute.
        method: the training method, one of `byot_keras.losses.list_methods()`
            (default "byot"); its options may be given as further keywords. "one"
            builds `branches` copies of the last stage and a gate instead of exits.
        objective: a preset name of the method (byot: "official", "paper"), a dict
            of its options, or a loss object from `byot_keras.losses`.

    Returns:
        A `byot_keras.training.SelfDistillationModel`: compile it and call `fit`.

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> model = zoo.{fn}(num_classes=10, width_multiplier=0.125)
        >>> sorted(model(np.zeros((1, 32, 32, 3))))  # logits per exit
        ['exit_1', 'exit_2', 'exit_3', 'exit_4']
"""


def _register(fn_name: str, title: str, block, blocks: Sequence[int]):
    return register_variant(fn_name, build_resnet, _DOC.format(title=title, fn=fn_name),
                            block, blocks)


resnet18_byot = _register("resnet18_byot", "ResNet-18", basic_block, (2, 2, 2, 2))
resnet34_byot = _register("resnet34_byot", "ResNet-34", basic_block, (3, 4, 6, 3))
resnet50_byot = _register("resnet50_byot", "ResNet-50", bottleneck_block, (3, 4, 6, 3))
resnet101_byot = _register("resnet101_byot", "ResNet-101", bottleneck_block, (3, 4, 23, 3))
resnet152_byot = _register("resnet152_byot", "ResNet-152", bottleneck_block, (3, 8, 36, 3))

resnet18, resnet34, resnet50, resnet101, resnet152 = (
    register_plain_variant(builder) for builder in
    (resnet18_byot, resnet34_byot, resnet50_byot, resnet101_byot, resnet152_byot)
)
