"""AlexNet (CIFAR and ImageNet forms) with BYOT exits after its first two pooling blocks.

Both forms have the five convolutions of Krizhevsky's "one weird trick" AlexNet (64, 192,
384, 256, 256 channels; 11x11 stride 4, 5x5, then three 3x3; every conv has a bias and
is followed by ReLU; no batch norm), grouped into three sections, each ending in a max-pool:

    section 1: conv1 -> pool          section 2: conv2 -> pool
    section 3: conv3 -> conv4 -> conv5 -> pool

Each pool halves the resolution, which is what the exit heads assume. Two variants:

- "cifar": the CIFAR AlexNet of Wei Yang's pytorch-classification
  (github.com/bearpaw/pytorch-classification, `models.cifar.alexnet`): conv1 padded by 5,
  2x2 stride-2 pools (32 px -> 8 -> 4 -> 2 -> 1), then one Dense on the 256 features.
  Its README lists 2.47M parameters for CIFAR-10: here 2,472,266 with 10 classes
  (2,495,396 with 100). That code flattens the last map, which is 1x1 for inputs of 29 to
  60 px; global average pooling is the same there and keeps 256 features at other sizes.
- "imagenet": torchvision's `alexnet`: conv1 padded by 2, 3x3 stride-2 pools (224 px ->
  55 -> 27 -> 13 -> 6), flatten -> Dropout 0.5 -> Dense 4096 -> ReLU -> Dropout 0.5 ->
  Dense 4096 -> ReLU -> Dense. At 224 px with 1000 classes the deepest exit has
  torchvision's 61,100,840 parameters. torchvision adaptive-pools the last map to 6x6
  first; here it is flattened as is (the same at 224 px; other sizes change the first
  Dense's fan-in), as in `byot_keras.networks.vgg`.

conv1 pads explicitly (PyTorch's symmetric padding) and then convolves without padding,
so the sampling grid matches the reference code; the other convs are "same" (equal to
PyTorch's symmetric padding for odd kernels at stride 1).

With the "imagenet" variant the deepest feature is the 4096-d vector before the last
Dense; the shallow heads end at 256 channels, and the BYOT loss's adaptation layer maps
them to 4096.
"""

from __future__ import annotations

from collections.abc import Sequence

from byot_keras.networks import namespace
from byot_keras.networks.common import (
    build_multi_exit_model,
    check_num_classes,
    conv2d,
    conv_initializer,
    resolve_input,
    scaled,
)
from byot_keras.networks.namespace import layers
from byot_keras.networks.registry import register_single_exit_variant, register_variant
from byot_keras.networks.structure import MultiExitNetwork

# (filters, kernel) of the five convs, and the section each belongs to.
CONVS = ((64, 11), (192, 5), (384, 3), (256, 3), (256, 3))
SECTION_OF_CONV = (1, 2, 3, 3, 3)
CONV1_STRIDE = 4
# Per variant: conv1's padding and the max-pools' kernel (all pools have stride 2).
VARIANT_GEOMETRY = {"cifar": (5, 2), "imagenet": (2, 3)}
VARIANTS = ("auto", "cifar", "imagenet")
HIDDEN_UNITS = 4096
DROPOUT_RATE = 0.5


def final_map_size(size: int, variant: str) -> int:
    """Height (or width) of the last pooled map for an input of `size` pixels."""
    padding, pool = VARIANT_GEOMETRY[variant]
    size = (size + 2 * padding - CONVS[0][1]) // CONV1_STRIDE + 1
    for _ in range(3):
        size = (size - pool) // 2 + 1
    return size


def minimum_input_size(variant: str) -> int:
    """Smallest input size whose last pooled map is still at least 1 pixel."""
    size = 1
    while final_map_size(size, variant) < 1:
        size += 1
    return size


def resolve_variant(input_shape, variant: str, model_name: str):
    """Validates `input_shape` and `variant`; returns (input_shape, resolved variant).

    `variant="auto"` picks "cifar" for inputs up to 64 pixels and "imagenet" above (the
    ResNets' `stem_type="auto"` rule).
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant '{variant}'. Valid variants: {', '.join(VARIANTS)}.")
    # AlexNet has its own stem; the stride-1 "cifar" stem adds no downsampling, so this
    # call only normalises and validates the shape. The size check below names the cause.
    input_shape, _ = resolve_input(input_shape, "cifar", model_name, 1)
    height, width, _ = input_shape
    if variant == "auto":
        variant = "cifar" if max(height, width) <= 64 else "imagenet"
    minimum = minimum_input_size(variant)
    if min(height, width) < minimum:
        raise ValueError(
            f"input_shape {input_shape} is too small for {model_name} with the {variant} "
            f"variant: its stride-4 conv1 and three max-pools need height and width of at "
            f"least {minimum} pixels."
        )
    return input_shape, variant


def padded_conv(x, filters: int, kernel: int, stride: int, padding: int, *, name: str):
    """PyTorch-style conv: symmetric zero padding, then an unpadded conv with bias."""
    x = layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
    return layers.Conv2D(
        filters, kernel, strides=stride, padding="valid", use_bias=True,
        kernel_initializer=conv_initializer(), name=name,
    )(x)


def imagenet_classifier(x, units: int):
    """torchvision's classifier up to its last Dense: flatten -> 2 x (Dropout-Dense-ReLU)."""
    x = layers.Flatten(name="flatten")(x)
    for index in (1, 2):
        x = layers.Dropout(DROPOUT_RATE, name=f"fc{index}_dropout")(x)
        x = layers.Dense(units, name=f"fc{index}")(x)
        x = layers.ReLU(name=f"fc{index}_relu")(x)
    return x


def build_alexnet(
    *,
    name: str,
    num_classes: int = 100,
    input_shape: tuple | None = None,
    variant: str = "auto",
    exits: Sequence[int] | None = None,
    head: str = "sepconv",
    attention: bool | None = None,
    width_multiplier: float = 1.0,
    sync_batchnorm: bool = False,
    default_head: str | None = None,
) -> MultiExitNetwork:
    """Builds AlexNet with an exit after every chosen pooling block."""
    check_num_classes(num_classes)
    input_shape, variant = resolve_variant(input_shape, variant, name)
    conv1_padding, pool_size = VARIANT_GEOMETRY[variant]
    inputs = namespace.Input(shape=input_shape, name="image")
    x = inputs
    sections, section_channels = [], []
    for index, ((channels, kernel), section) in enumerate(zip(CONVS, SECTION_OF_CONV),
                                                         start=1):
        filters = scaled(channels, width_multiplier)
        if index == 1:
            x = padded_conv(x, filters, kernel, CONV1_STRIDE, conv1_padding, name="conv1")
        else:
            x = conv2d(x, filters, kernel, name=f"conv{index}", use_bias=True)
        x = layers.ReLU(name=f"relu{index}")(x)
        section_ends = index == len(CONVS) or SECTION_OF_CONV[index] != section
        if section_ends:
            x = layers.MaxPooling2D(pool_size, 2, name=f"pool{section}")(x)
            x = layers.Identity(name=f"section_{section}")(x)
            sections.append(x)
            section_channels.append(filters)
    if variant == "cifar":
        feature = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    else:
        feature = imagenet_classifier(x, scaled(HIDDEN_UNITS, width_multiplier))
    return build_multi_exit_model(
        inputs, sections, section_channels, feature, num_classes, name=name, exits=exits,
        head=head, attention=attention, head_width=section_channels[-1],
        sync_batchnorm=sync_batchnorm, default_head=default_head,
    )


_ARGS = """num_classes: number of classes (>= 2); every exit outputs logits.
        input_shape: (height, width, channels); default (32, 32, 3). At least 29 px for
            the "cifar" variant, 63 px for "imagenet".
        weights: None, a checkpoint name (`zoo.list_pretrained()`) or a .npz / .keras /
            .weights.h5 file; with `reset_classifiers=True`, weights of another
            num_classes load with fresh classifiers.
        name: model name.
        variant: "auto" ("cifar" up to 64 px, "imagenet" above), "cifar" (pytorch-
            classification's CIFAR AlexNet: 2x2 pools, one Dense) or "imagenet"
            (torchvision's: 3x3 pools, Dense 4096 -> Dense 4096 -> Dense with dropout).
        {exit_args}width_multiplier: scales every channel count and the 4096 hidden units (1.0 = the
            standard network).
        sync_batchnorm: synchronise batch statistics across replicas under tf.distribute.
        objective: the self-distillation loss: a preset name ("official", "paper"),
            a `byot_keras.losses.BYOTLoss`, or None for "official".

    Returns:
        A `byot_keras.training.SelfDistillationModel`: compile it and call `fit`."""

_EXIT_ARGS = """exits: pooling blocks (1-2) that get a shallow exit; default both.
        head: "sepconv" (official BYOT heads) or "bottleneck" (the paper's reading).
        attention: attention mask before each head; default True for "sepconv".
        """

alexnet_byot = register_variant("alexnet_byot", build_alexnet, f"""Builds AlexNet with BYOT exits
    after pooling blocks 1 and 2 (3 exits by default).

    Args:
        {_ARGS.format(exit_args=_EXIT_ARGS)}

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> model = zoo.create_model("alexnet_byot", num_classes=10, width_multiplier=0.125)
        >>> sorted(model(np.zeros((1, 32, 32, 3))))  # logits per exit
        ['exit_1', 'exit_2', 'exit_3']
""")

alexnet = register_single_exit_variant("alexnet", build_alexnet, f"""Builds AlexNet with its own
    classifier only: one exit, `exit_1` (`alexnet_byot` adds the shallow exits).

    Args:
        {_ARGS.format(exit_args="")}

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> model = zoo.create_model("alexnet", num_classes=10, width_multiplier=0.125)
        >>> sorted(model(np.zeros((1, 32, 32, 3))))  # logits per exit
        ['exit_1']
""")
