"""Batch-norm VGG-11/13/16/19 (configurations A, B, D, E) with BYOT exits after each of
the first four pooling blocks.

Each of the five sections is one block: 3x3 convs WITH bias (as in torchvision's and
kuangliu's pytorch-cifar VGG), each followed by BN and ReLU, then a 2x2 max-pool. VGG
has no stem, so the five pools are the whole 32x downsampling. Two classifiers:

- "cifar" (kuangliu's pytorch-cifar VGG): global average pooling of the last map (1x1x512
  at 32x32) -> Dense. CIFAR VGG-16 with 100 classes: 14,774,436 trainable parameters.
- "imagenet" (torchvision's vgg*_bn): flatten -> Dense 4096 -> ReLU -> Dropout 0.5 ->
  Dense 4096 -> ReLU -> Dropout 0.5 -> Dense. At 224x224 with 1000 classes the deepest
  exit has exactly torchvision's parameter count (VGG-16-BN: 138,365,992). torchvision
  adaptive-pools the last map to 7x7 first; here it is flattened as is, which is the
  same at 224 px, while other sizes change the first Dense's fan-in (h/32 * w/32 * 512).

With the "imagenet" classifier the deepest feature is the 4096-d vector before the last
Dense; the shallow heads still end at 512 channels, and the BYOT loss's adaptation layer
maps them to 4096 (a preset without adaptation cannot compare the features).
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
from byot_keras.networks.registry import register_plain_variant, register_variant
from byot_keras.networks.structure import MultiExitNetwork

# Convs per block for Simonyan & Zisserman's configurations A (11), B (13), D (16), E (19).
VGG_CONFIGS = {
    "A": (1, 1, 2, 2, 2),
    "B": (2, 2, 2, 2, 2),
    "D": (2, 2, 3, 3, 3),
    "E": (2, 2, 4, 4, 4),
}
BLOCK_CHANNELS = (64, 128, 256, 512, 512)
CLASSIFIERS = ("auto", "cifar", "imagenet")
DOWNSAMPLING = 2 ** len(BLOCK_CHANNELS)
HIDDEN_UNITS = 4096


def vgg_block(x, filters: int, num_convs: int, *, name: str, sync_batchnorm: bool = False):
    """`num_convs` x (3x3 conv with bias -> BN -> ReLU), then a 2x2 stride-2 max-pool."""
    for index in range(1, num_convs + 1):
        x = conv2d(x, filters, 3, name=f"{name}_conv{index}", use_bias=True)
        x = batch_norm(x, name=f"{name}_bn{index}", sync=sync_batchnorm)
        x = layers.ReLU(name=f"{name}_relu{index}")(x)
    return layers.MaxPooling2D(2, 2, name=f"{name}_pool")(x)


def imagenet_classifier(x, units: int, dropout_rate: float = 0.5):
    """torchvision's classifier up to its last Dense: flatten -> 2 x (Dense-ReLU-Dropout)."""
    x = layers.Flatten(name="flatten")(x)
    for index in (1, 2):
        x = layers.Dense(units, name=f"fc{index}")(x)
        x = layers.ReLU(name=f"fc{index}_relu")(x)
        x = layers.Dropout(dropout_rate, name=f"fc{index}_dropout")(x)
    return x


def resolve_classifier(input_shape, classifier: str, model_name: str):
    """Validates `input_shape` and `classifier`; returns (input_shape, resolved classifier).

    `classifier="auto"` picks "cifar" for inputs up to 64 pixels and "imagenet" above
    (the same rule as the ResNets' `stem_type="auto"`).
    """
    if classifier not in CLASSIFIERS:
        raise ValueError(
            f"Unknown classifier '{classifier}'. Valid classifiers: {', '.join(CLASSIFIERS)}."
        )
    # VGG has no stem; the stride-1 "cifar" stem adds no downsampling, so this call only
    # normalises and validates the shape. The size check below names the real cause.
    input_shape, _ = resolve_input(input_shape, "cifar", model_name, 1)
    height, width, _ = input_shape
    if min(height, width) < DOWNSAMPLING:
        raise ValueError(
            f"input_shape {input_shape} is too small for {model_name}: its "
            f"{len(BLOCK_CHANNELS)} max-pools downsample {DOWNSAMPLING}x, so height and "
            f"width must be at least {DOWNSAMPLING} pixels."
        )
    if classifier == "auto":
        classifier = "cifar" if max(height, width) <= 64 else "imagenet"
    return input_shape, classifier


def build_vgg(
    convs_per_block: Sequence[int],
    *,
    name: str,
    num_classes: int = 100,
    input_shape: tuple | None = None,
    classifier: str = "auto",
    exits: Sequence[int] | None = None,
    head: str | None = None,
    attention: bool | None = None,
    width_multiplier: float = 1.0,
    sync_batchnorm: bool = False,
    default_head: str | None = None,
) -> MultiExitNetwork:
    """Builds a 5-block batch-norm VGG with an exit after every chosen block."""
    check_num_classes(num_classes)
    input_shape, classifier = resolve_classifier(input_shape, classifier, name)
    inputs = namespace.Input(shape=input_shape, name="image")
    x = inputs
    sections, section_channels = [], []
    for block, (channels, num_convs) in enumerate(zip(BLOCK_CHANNELS, convs_per_block),
                                                  start=1):
        filters = scaled(channels, width_multiplier)
        x = vgg_block(x, filters, num_convs, name=f"block{block}",
                      sync_batchnorm=sync_batchnorm)
        x = layers.Identity(name=f"section_{block}")(x)
        sections.append(x)
        section_channels.append(filters)
    if classifier == "cifar":
        feature = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    else:
        feature = imagenet_classifier(x, scaled(HIDDEN_UNITS, width_multiplier))
    def branch_block(y, in_channels: int, section: int, block_name: str):
        return vgg_block(y, section_channels[section - 1], 1, name=block_name,
                         sync_batchnorm=sync_batchnorm)

    return build_multi_exit_model(
        inputs, sections, section_channels, feature, num_classes, name=name, exits=exits,
        head=head, attention=attention, head_width=section_channels[-1],
        sync_batchnorm=sync_batchnorm, default_head=default_head, branch_block=branch_block,
    )


_DOC = """Builds {title} with batch norm and BYOT exits after pooling blocks 1-4 (5 exits by
    default).

    Args:
        num_classes: number of classes (>= 2); every exit outputs logits.
        input_shape: (height, width, channels), at least 32 px; default (32, 32, 3).
        weights: None, a checkpoint name (`zoo.list_pretrained()`) or a .npz / .keras /
            .weights.h5 file; with `reset_classifiers=True`, weights of another
            num_classes load with fresh classifiers.
        name: model name.
        classifier: "auto" ("cifar" up to 64 px, "imagenet" above), "cifar" (global
            average pooling -> Dense, as kuangliu's pytorch-cifar VGG) or "imagenet"
            (torchvision's flatten -> 2 x (Dense 4096 -> ReLU -> Dropout 0.5) -> Dense).
        exits: pooling blocks (1-4) that get a shallow exit; default all.
        head: "sepconv" (official BYOT heads), "bottleneck" (the BYOT paper's reading),
            "conv" (EED's) or "blocks" (MSD's branch augmentation); default: the
            method's own head, else "sepconv".
        attention: attention mask before each head; default True for "sepconv".
        width_multiplier: scales every channel count and the 4096 hidden units (1.0 = the
            standard network).
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
        >>> model = zoo.{fn}(num_classes=10, width_multiplier=0.125)
        >>> sorted(model(np.zeros((1, 32, 32, 3))))  # logits per exit
        ['exit_1', 'exit_2', 'exit_3', 'exit_4', 'exit_5']
"""


def _register(fn_name: str, title: str, config: str):
    return register_variant(fn_name, build_vgg, _DOC.format(title=title, fn=fn_name),
                            VGG_CONFIGS[config])


vgg11_byot = _register("vgg11_byot", "VGG-11 (configuration A)", "A")
vgg13_byot = _register("vgg13_byot", "VGG-13 (configuration B)", "B")
vgg16_byot = _register("vgg16_byot", "VGG-16 (configuration D)", "D")
vgg19_byot = _register("vgg19_byot", "VGG-19 (configuration E)", "E")

vgg11, vgg13, vgg16, vgg19 = (register_plain_variant(builder) for builder in
                              (vgg11_byot, vgg13_byot, vgg16_byot, vgg19_byot))
