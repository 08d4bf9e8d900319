"""DenseNet (Huang et al., CVPR 2017) with BYOT exits after each dense block but the last.

A dense layer is pre-activated: BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k) with the
bottleneck ("B"), BN-ReLU-conv3x3(k) without, and its k new channels (the growth rate)
are concatenated to its input. Between blocks a transition BN-ReLU-conv1x1-2x2 average
pool keeps floor(c * compression) of the c channels ("C": compression < 1). After the
last block come BN-ReLU, global average pooling and a Dense. No conv has a bias. The stem
has 2k channels, as in the authors' code (liuzhuang13/DenseNet) and torchvision:

- "cifar": one 3x3 conv, stride 1 (no BN, the first dense layer pre-activates it);
- "imagenet": 7x7 stride-2 conv -> BN -> ReLU -> 3x3 stride-2 max-pool (torchvision).

(Without bottleneck layers the paper's text gives the stem 16 channels, hence 1.0M
parameters for its DenseNet (L=40, k=12); with the code's 2k, followed here, that network
has 1,059,298 with 10 classes.)

`densenet_bc100_k12_byot` is the paper's CIFAR DenseNet-BC (L=100, k=12): 3 blocks of 16
bottleneck layers, compression 0.5; 769,162 trainable parameters with 10 classes (0.77M in
pytorch-classification's README; 0.8M in the paper) and 800,032 with 100.
`densenet121_byot` is torchvision's DenseNet-121 (4 blocks of 6, 12, 24, 16 layers, k=32):
7,978,856 parameters at 1000 classes with the ImageNet stem (up to 64 px the CIFAR stem
makes it the CIFAR DenseNet-121 of kuangliu's pytorch-cifar). `densenet_byot(depth,
growth_rate)` builds any 3-block CIFAR DenseNet(-B/-C/-BC).

Sections: the output of each dense block (the concatenation the transition receives),
the last one after the final BN-ReLU (the map that is pooled for the classifier). Each
transition halves the resolution, as the exit heads assume.
"""

from __future__ import annotations

import math
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
from byot_keras.networks.registry import (
    plain_variant_example,
    register_network,
    register_single_exit_variant,
    register_variant,
)
from byot_keras.networks.resnet import stem as resnet_stem
from byot_keras.networks.structure import MultiExitNetwork

BOTTLENECK_FACTOR = 4  # the 1x1 conv of a bottleneck layer outputs 4k channels
CIFAR_BLOCKS = 3


def dense_layer(x, growth_rate: int, *, bottleneck: bool, dropout_rate: float, name: str,
                sync_batchnorm: bool = False):
    """One pre-activated dense layer; returns its input with k new channels appended."""
    y = batch_norm(x, name=f"{name}_bn1", sync=sync_batchnorm)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    if bottleneck:
        y = conv2d(y, BOTTLENECK_FACTOR * growth_rate, 1, name=f"{name}_conv1")
        y = batch_norm(y, name=f"{name}_bn2", sync=sync_batchnorm)
        y = layers.ReLU(name=f"{name}_relu2")(y)
    y = conv2d(y, growth_rate, 3, name=f"{name}_conv{2 if bottleneck else 1}")
    if dropout_rate > 0:
        # Where torchvision and pytorch-classification drop: on the new features.
        y = layers.Dropout(dropout_rate, name=f"{name}_dropout")(y)
    return layers.Concatenate(name=f"{name}_concat")([x, y])


def transition(x, out_channels: int, *, name: str, sync_batchnorm: bool = False):
    """BN-ReLU-conv1x1 to `out_channels`, then a 2x2 stride-2 average pool."""
    x = batch_norm(x, name=f"{name}_bn", sync=sync_batchnorm)
    x = layers.ReLU(name=f"{name}_relu")(x)
    x = conv2d(x, out_channels, 1, name=f"{name}_conv")
    return layers.AveragePooling2D(2, 2, name=f"{name}_pool")(x)


def stem(x, channels: int, kind: str, sync_batchnorm: bool = False):
    """CIFAR: a bare 3x3 conv. ImageNet: the ResNets' 7x7/2 conv-BN-ReLU + 3x3/2 max-pool."""
    if kind == "cifar":
        return conv2d(x, channels, 3, name="stem_conv")
    return resnet_stem(x, channels, "imagenet", sync_batchnorm)


def _check_positive_int(label: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{label} must be an integer >= 1; got {value!r}.")


def build_densenet(
    layers_per_block: Sequence[int],
    growth_rate: int,
    *,
    name: str,
    num_classes: int = 100,
    input_shape: tuple | None = None,
    stem_type: str = "auto",
    bottleneck: bool = True,
    compression: float = 0.5,
    exits: Sequence[int] | None = None,
    head: str = "sepconv",
    attention: bool | None = None,
    width_multiplier: float = 1.0,
    dropout_rate: float = 0.0,
    sync_batchnorm: bool = False,
    default_head: str | None = None,
) -> MultiExitNetwork:
    """Builds a DenseNet with `layers_per_block[i]` dense layers in block i and an exit
    after every chosen block."""
    if len(layers_per_block) < 1:
        raise ValueError("layers_per_block must list the dense layers of at least one block.")
    for block, count in enumerate(layers_per_block, start=1):
        _check_positive_int(f"layers_per_block[{block - 1}]", count)
    _check_positive_int("growth_rate", growth_rate)
    if not 0 < compression <= 1:
        raise ValueError(f"compression must be in (0, 1] (0.5 for DenseNet-BC); got "
                         f"{compression}.")
    if not 0 <= dropout_rate < 1:
        raise ValueError(f"dropout_rate must be in [0, 1); got {dropout_rate}.")
    check_num_classes(num_classes)
    num_blocks = len(layers_per_block)
    input_shape, stem_type = resolve_input(input_shape, stem_type, name, 2 ** (num_blocks - 1))
    growth = scaled(growth_rate, width_multiplier)
    channels = 2 * growth
    inputs = namespace.Input(shape=input_shape, name="image")
    x = stem(inputs, channels, stem_type, sync_batchnorm)
    sections, section_channels = [], []
    for block, num_layers in enumerate(layers_per_block, start=1):
        for index in range(1, num_layers + 1):
            x = dense_layer(x, growth, bottleneck=bottleneck, dropout_rate=dropout_rate,
                            name=f"block{block}_layer{index}", sync_batchnorm=sync_batchnorm)
            channels += growth
        if block == num_blocks:
            x = batch_norm(x, name="final_bn", sync=sync_batchnorm)
            x = layers.ReLU(name="final_relu")(x)
        x = layers.Identity(name=f"section_{block}")(x)
        sections.append(x)
        section_channels.append(channels)
        if block < num_blocks:
            channels = max(1, math.floor(channels * compression))
            x = transition(x, channels, name=f"transition{block}",
                           sync_batchnorm=sync_batchnorm)
    feature = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return build_multi_exit_model(
        inputs, sections, section_channels, feature, num_classes, name=name, exits=exits,
        head=head, attention=attention, sync_batchnorm=sync_batchnorm, default_head=default_head,
    )


def cifar_layers_per_block(depth, bottleneck: bool) -> int:
    """Dense layers per block of a 3-block CIFAR DenseNet of total depth `depth`.

    The depth counts the stem conv, every conv of the dense layers (2 per bottleneck
    layer, 1 otherwise), the two transition convs and the classifier: 6n + 4 or 3n + 4.
    """
    per_layer = 2 if bottleneck else 1
    step = CIFAR_BLOCKS * per_layer
    valid = isinstance(depth, int) and not isinstance(depth, bool)
    if not valid or depth < step + 4 or (depth - 4) % step != 0:
        examples = "10, 16, 22, ..., 100 (DenseNet-BC-100), 190" if bottleneck else \
            "7, 10, 13, ..., 40, 100"
        kind = "with bottleneck layers (DenseNet-B/BC)" if bottleneck else \
            "without bottleneck layers"
        raise ValueError(
            f"depth must be {step}n + 4 with n >= 1 dense layers per block for a CIFAR "
            f"DenseNet {kind} ({examples}); got {depth!r}."
        )
    return (depth - 4) // step


def default_name(depth: int, growth_rate: int, bottleneck: bool, compression: float) -> str:
    """e.g. densenet_bc100_k12_byot, densenet40_k12_byot (no bottleneck, no compression)."""
    suffix = ("b" if bottleneck else "") + ("c" if compression < 1 else "")
    prefix = f"densenet_{suffix}" if suffix else "densenet"
    return f"{prefix}{depth}_k{growth_rate}_byot"


_ARGS = """num_classes: number of classes (>= 2); every exit outputs logits.
        input_shape: (height, width, channels); default (32, 32, 3).
        weights: None, a checkpoint name (`zoo.list_pretrained()`) or a .npz / .keras /
            .weights.h5 file; with `reset_classifiers=True`, weights of another
            num_classes load with fresh classifiers.
        name: model name; default {default_name}.
        stem_type: "auto" (CIFAR stem up to 64 px, ImageNet stem above), "cifar" (one 3x3
            conv) or "imagenet" (7x7/2 conv-BN-ReLU + 3x3/2 max-pool).
        {exit_args}width_multiplier: scales the growth rate, and with it every channel count (1.0 =
            the standard network).
        dropout_rate: dropout on each dense layer's new features (0.2 in the paper's runs
            without data augmentation; 0.0 = none).
        sync_batchnorm: synchronise batch statistics across replicas under tf.distribute.
        objective: the self-distillation loss: a preset name ("official", "paper"),
            a `byot_keras.losses.BYOTLoss`, or None for "official".

    Returns:
        A `byot_keras.training.SelfDistillationModel`: compile it and call `fit`."""


def _exit_args(num_blocks: int) -> str:
    return f"""exits: dense blocks (1-{num_blocks - 1}) that get a shallow exit; default all.
        head: "sepconv" (official BYOT heads) or "bottleneck" (the paper's reading).
        attention: attention mask before each head; default True for "sepconv".
        """


@register_network
def densenet_byot(
    depth: int,
    growth_rate: int,
    *,
    bottleneck: bool = True,
    compression: float = 0.5,
    num_classes: int = 100,
    input_shape: tuple | None = None,
    name: str | None = None,
    stem_type: str = "auto",
    exits: Sequence[int] | None = None,
    head: str = "sepconv",
    attention: bool | None = None,
    width_multiplier: float = 1.0,
    dropout_rate: float = 0.0,
    sync_batchnorm: bool = False,
    default_head: str | None = None,
) -> MultiExitNetwork:
    num_layers = cifar_layers_per_block(depth, bottleneck)
    return build_densenet(
        (num_layers,) * CIFAR_BLOCKS, growth_rate,
        name=name or default_name(depth, growth_rate, bottleneck, compression),
        num_classes=num_classes, input_shape=input_shape,
        stem_type=stem_type, bottleneck=bottleneck, compression=compression, exits=exits,
        head=head, attention=attention, width_multiplier=width_multiplier,
        dropout_rate=dropout_rate, sync_batchnorm=sync_batchnorm, default_head=default_head,
    )


densenet_byot.__doc__ = f"""Builds the 3-block CIFAR DenseNet of depth `depth` and growth rate
    `growth_rate` with BYOT exits after blocks 1 and 2 (3 exits by default).

    Args:
        depth: total depth: 6n + 4 with bottleneck layers (e.g. 100, 190), 3n + 4 without
            (e.g. 40, 100); n dense layers per block.
        growth_rate: k, the channels each dense layer adds (an integer >= 1).
        bottleneck: BN-ReLU-conv1x1(4k) before each layer's 3x3 conv (DenseNet-B).
        compression: fraction of the channels a transition keeps (0.5 for DenseNet-C/BC,
            1.0 for none).
        {_ARGS.format(default_name='e.g. "densenet_bc100_k12_byot"',
                      exit_args=_exit_args(CIFAR_BLOCKS))}

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> model = zoo.create_model("densenet_byot", depth=22, growth_rate=6, num_classes=10)
        >>> model.name
        'densenet_bc22_k6_byot'
        >>> sorted(model(np.zeros((1, 32, 32, 3))))  # logits per exit
        ['exit_1', 'exit_2', 'exit_3']
"""


_DOC = """Builds {title}{with_exits}.

    Args:
        {args}

    Example:
{example}"""

_EXAMPLE = """        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> model = zoo.create_model("{fn}", num_classes=10, width_multiplier=0.125)
        >>> sorted(model(np.zeros((1, 32, 32, 3))))  # logits per exit
        {outputs}
"""


def _register(fn_name: str, title: str, layers_per_block: Sequence[int], growth_rate: int):
    """Registers `fn_name` (single exit) and `<fn_name>_byot` (an exit after every block)."""
    num_blocks = len(layers_per_block)
    byot_doc = _DOC.format(
        title=title,
        with_exits=f"\n    with BYOT exits after dense blocks 1-{num_blocks - 1} ({num_blocks} "
                   "exits by default)",
        args=_ARGS.format(default_name=f'"{fn_name}_byot"', exit_args=_exit_args(num_blocks)),
        example=_EXAMPLE.format(fn=f"{fn_name}_byot",
                                outputs=[f"exit_{k}" for k in range(1, num_blocks + 1)]),
    )
    single_doc = _DOC.format(
        title=title,
        with_exits=f"\n    with its own classifier only: one exit, `exit_1` (`{fn_name}_byot` "
                   "adds the shallow exits)",
        args=_ARGS.format(default_name=f'"{fn_name}"', exit_args=""),
        example=plain_variant_example(fn_name),
    )
    multi = register_variant(f"{fn_name}_byot", build_densenet, byot_doc, layers_per_block,
                             growth_rate)
    single = register_single_exit_variant(fn_name, build_densenet, single_doc,
                                          layers_per_block, growth_rate)
    return multi, single


densenet_bc100_k12_byot, densenet_bc100_k12 = _register(
    "densenet_bc100_k12", "the CIFAR DenseNet-BC (L=100, k=12)", (16, 16, 16), 12,
)
densenet121_byot, densenet121 = _register(
    "densenet121", "DenseNet-121 (torchvision's; k=32, blocks of 6, 12, 24, 16 layers)",
    (6, 12, 24, 16), 32,
)
