"""Pieces every family shares: layer factories, argument checks, and the one function
that turns a backbone's sections into a multi-exit network (and its structure)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import keras

from byot_keras.networks import namespace
from byot_keras.networks.namespace import layers
from byot_keras.networks.structure import BRANCH, CHAIN, GATE, ExitInfo, MultiExitNetwork
from byot_keras.options import (
    FLAG,
    POSITIVE,
    OptionKind,
    integer_at_least,
    is_integer_list,
    number_in,
    optional,
)


def conv_initializer() -> keras.initializers.Initializer:
    """He normal with fan_out, as in the BYOT code and torchvision's ResNets.

    A new instance per layer: an unseeded Keras initializer fixes its seed when it is
    created, so one shared instance would give every kernel of the same shape the same
    values (and ignore keras.utils.set_random_seed, which seeds what new ones draw).
    """
    return namespace.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


# PyTorch defaults (momentum 0.1 there == 0.9 here), which the published numbers used.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

STEMS = ("auto", "cifar", "imagenet")
HEADS = ("sepconv", "bottleneck", "conv", "blocks")


def conv2d(x, filters: int, kernel: int, stride: int = 1, *, name: str, groups: int = 1,
           use_bias: bool = False):
    if kernel == 1 and stride > 1 and x.shape[-1] < 16:
        # TensorFlow 2.21's oneDNN kernels crash the process (SIGSEGV / abort) when
        # training a 1x1 stride-2 convolution on fewer than 16 input channels at some
        # batch sizes (e.g. 29; 32 and 64 pass). Subsampling first computes the same
        # function with the same weights; only narrow (width_multiplier < 1) nets get it.
        x = layers.MaxPooling2D(1, strides=stride, name=f"{name}_subsample")(x)
        stride = 1
    return layers.Conv2D(
        filters, kernel, strides=stride, padding="same", groups=groups, use_bias=use_bias,
        kernel_initializer=conv_initializer(), name=name,
    )(x)


def batch_norm(x, *, name: str, sync: bool = False):
    """Batch norm with PyTorch's defaults; in Keras 3 the fused kernel for training
    (`FusedBatchNormalization`: the same function, faster on CPU). tf_keras' own layer is
    fused already; synchronized batch norm keeps Keras' layer."""
    if namespace.is_keras3() and not sync and len(x.shape) == 4:
        from byot_keras.networks.batch_norm import FusedBatchNormalization

        return FusedBatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                       name=name)(x)
    return layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=sync, name=name
    )(x)


INPUT_SHAPE = OptionKind(
    "None (for (32, 32, 3)) or a (height, width, channels) tuple of integers >= 1",
    lambda v: v is None or (is_integer_list(v) and len(v) == 3 and min(v) >= 1))

#: The kind of every keyword the builders share (families check their own extras, such
#: as `depth` or `classifier`, and choices such as `head` list their valid names).
BUILDER_OPTION_KINDS: dict[str, OptionKind] = {
    "num_classes": integer_at_least(2),
    "input_shape": INPUT_SHAPE,
    "name": optional(OptionKind("a string", lambda v: isinstance(v, str) and v != "")),
    "exits": optional(OptionKind("a list of section numbers (integers)", is_integer_list),
                      "every section"),
    "attention": OptionKind("True, False or None (the head's default)",
                            lambda v: v is None or FLAG.accepts(v)),
    "sync_batchnorm": FLAG,
    "bottleneck": FLAG,
    "width_multiplier": POSITIVE,
    "dropout_rate": number_in(0, 1, open_high=True),
    "compression": number_in(0, 1, open_low=True),
    "groups": integer_at_least(1),
    "width_per_group": integer_at_least(1),
    "branches": integer_at_least(2),
}


def check_builder_options(options: dict, builder: str) -> None:
    """Raises a ValueError naming the option, its value and what is valid for the first
    keyword in `options` whose type or range is wrong (`exits="13"`, `attention="no"`,
    `width_multiplier=0`), before anything is built."""
    for option, value in options.items():
        kind = BUILDER_OPTION_KINDS.get(option)
        if kind is not None:
            kind.check(option, value, f"{builder} option")


def check_num_classes(num_classes) -> None:
    BUILDER_OPTION_KINDS["num_classes"].check("num_classes", num_classes)


def resolve_input(input_shape, stem: str, model_name: str, downsampling_without_stem: int):
    """Validates `input_shape` and `stem`; returns (input_shape, resolved_stem).

    `stem="auto"` picks the CIFAR stem (3x3, stride 1, no max-pool) for inputs up to 64
    pixels and the ImageNet stem (7x7 stride 2 + max-pool, 4x downsampling) above.
    """
    if stem not in STEMS:
        raise ValueError(f"Unknown stem '{stem}'. Valid stems: {', '.join(STEMS)}.")
    if input_shape is None:
        input_shape = (32, 32, 3)
    if not INPUT_SHAPE.accepts(input_shape):
        raise ValueError(
            f"input_shape must be a fixed (height, width, channels) tuple of integers >= 1, "
            f"got {input_shape!r}; the exit heads need static spatial sizes."
        )
    input_shape = tuple(int(d) for d in input_shape)
    height, width, _ = input_shape
    if stem == "auto":
        stem = "cifar" if max(height, width) <= 64 else "imagenet"
    factor = downsampling_without_stem * (4 if stem == "imagenet" else 1)
    if min(height, width) < factor:
        raise ValueError(
            f"input_shape {input_shape} is too small for {model_name} with the {stem} stem: "
            f"the network downsamples {factor}x, so height and width must be at least "
            f"{factor} pixels."
        )
    return input_shape, stem


def scaled(channels: int, width_multiplier: float) -> int:
    """Channel count scaled by `width_multiplier` (at least 1); 1.0 gives the paper's."""
    POSITIVE.check("width_multiplier", width_multiplier)
    return max(1, int(round(channels * width_multiplier)))


def select_exit_sections(exits: Sequence[int] | None, num_sections: int, model_name: str
                         ) -> list[int]:
    """Sections (1-based) that get a shallow exit; the deepest section always has one."""
    shallow = list(range(1, num_sections))
    if exits is None:
        return shallow
    BUILDER_OPTION_KINDS["exits"].check("exits", exits, f"{model_name} option")
    requested = [int(e) for e in exits]
    twice = sorted({e for e in requested if requested.count(e) > 1})
    if twice:  # a typo for another section, most likely: not silently merged
        raise ValueError(f"exits={list(exits)} lists section{'s' if len(twice) > 1 else ''} "
                         f"{', '.join(map(str, twice))} more than once; give each section "
                         "once.")
    chosen = sorted(set(requested))
    invalid = [e for e in chosen if e not in shallow]
    if invalid:
        raise ValueError(
            f"exits={list(exits)} is invalid for {model_name}: shallow exits can be placed "
            f"after sections {shallow} (the deepest section {num_sections} always has the "
            f"final classifier)."
        )
    return chosen


def _call_branch(branch_block: Callable, section: int, x, in_channels: int, name: str):
    return branch_block(x, in_channels, section, name)


def build_multi_exit_model(
    inputs,
    sections: Sequence,
    section_channels: Sequence[int],
    deepest_feature,
    num_classes: int,
    *,
    name: str,
    exits: Sequence[int] | None = None,
    head: str | None = None,
    default_head: str | None = None,
    attention: bool | None = None,
    head_width: int | None = None,
    sync_batchnorm: bool = False,
    branch_block: Callable | None = None,
) -> MultiExitNetwork:
    """Attaches exit heads to a backbone: the multi-exit network and its structure.

    Args:
        inputs: the backbone's `keras.Input`.
        sections: output tensor of every section, shallow to deep (the last is the
            deepest feature map; it gets no head, the backbone classifier serves it).
        section_channels: channel count of each section output.
        deepest_feature: the pooled feature vector that feeds the backbone classifier
            (the classifier itself, a Dense layer named `exit_<N>`, is added here).
        head: the exit head (`HEADS`); None: `default_head` where this family can build
            it (a training method's own head, e.g. MSD's "blocks"), else "sepconv".
        head_width: feature width of the shallow heads (default: `section_channels[-1]`).
        branch_block: for `head="blocks"`: `branch_block(x, in_channels, section, name)`
            builds one block of section `section`'s type (with its downsampling) that
            outputs `section_channels[section - 1]` channels.
    """
    from byot_keras.networks import heads as heads_lib

    if head is None:
        head = default_head or "sepconv"
        if head == "blocks" and branch_block is None:
            head = "sepconv"
    if head not in HEADS:
        raise ValueError(f"Unknown head '{head}'. Valid heads: {', '.join(HEADS)}.")
    if head == "blocks" and branch_block is None:
        raise ValueError(
            f"head='blocks' (MSD's branch augmentation) is not available for {name}. Valid "
            f"heads here: {', '.join(h for h in HEADS if h != 'blocks')}."
        )
    if attention is None:
        attention = head == "sepconv"
    BUILDER_OPTION_KINDS["attention"].check("attention", attention, f"{name} option")
    num_sections = len(sections)
    chosen = select_exit_sections(exits, num_sections, name)
    head_width = head_width or section_channels[-1]
    num_exits = len(chosen) + 1

    outputs, structure = {}, []
    for exit_index, section in enumerate(chosen, start=1):
        later = list(section_channels[section:])
        later_blocks = []
        if head == "blocks":  # each block reproduces its section, so the deepest width
            later_blocks = [functools.partial(_call_branch, branch_block, s)
                            for s in range(section + 1, num_sections + 1)]
        else:
            later[-1] = head_width
        feature = heads_lib.exit_head(
            sections[section - 1], section_channels[section - 1], later,
            kind=head, attention=attention, prefix=f"exit_{exit_index}_head",
            sync_batchnorm=sync_batchnorm, feature_name=f"feature_{exit_index}",
            later_blocks=later_blocks,
        )
        outputs[f"exit_{exit_index}"] = layers.Dense(num_classes, name=f"exit_{exit_index}")(
            feature
        )
        outputs[f"feature_{exit_index}"] = feature
        structure.append(ExitInfo(f"exit_{exit_index}", section, int(feature.shape[-1]), CHAIN))

    deepest = f"exit_{num_exits}"
    deepest_feature = layers.Identity(name=f"feature_{num_exits}")(deepest_feature)
    outputs[deepest] = layers.Dense(num_classes, name=deepest)(deepest_feature)
    outputs[f"feature_{num_exits}"] = deepest_feature
    structure.append(ExitInfo(deepest, num_sections, int(deepest_feature.shape[-1]), CHAIN))
    network = namespace.Model(inputs, outputs, name=f"{name}_network")
    return MultiExitNetwork(network, tuple(structure))


def build_branch_ensemble_model(inputs, trunk, branches: Sequence, num_classes: int, *,
                                name: str, sync_batchnorm: bool = False) -> MultiExitNetwork:
    """ONE's network: `branches` (the last stage's output maps, one per branch) each get
    average pooling and a classifier (exits 1..K); a gate on the shared trunk, GAP ->
    Dense(K) -> BN -> ReLU -> softmax as in the ONE paper, weighs the branches' logits
    into the teacher, exit K + 1 (its feature is the same weighting of the branches'
    features). Standard Keras layers only: nothing custom to register for saving or
    export."""
    count = len(branches)
    outputs, logits, features, structure = {}, [], [], []
    for index, branch in enumerate(branches, start=1):
        feature = layers.GlobalAveragePooling2D(name=f"feature_{index}")(branch)
        outputs[f"feature_{index}"] = feature
        outputs[f"exit_{index}"] = layers.Dense(num_classes, name=f"exit_{index}")(feature)
        structure.append(ExitInfo(f"exit_{index}", None, int(feature.shape[-1]), BRANCH))
        features.append(layers.Reshape((1, feature.shape[-1]),
                                       name=f"branch{index}_feature_row")(feature))
        logits.append(layers.Reshape((1, num_classes),
                                     name=f"branch{index}_logits_row")(outputs[f"exit_{index}"]))
    gate = layers.GlobalAveragePooling2D(name="gate_pool")(trunk)
    gate = layers.Dense(count, name="gate_dense")(gate)
    gate = batch_norm(gate, name="gate_bn", sync=sync_batchnorm)
    gate = layers.ReLU(name="gate_relu")(gate)
    gate = layers.Softmax(name="gate")(gate)
    teacher = f"exit_{count + 1}"
    stacked = layers.Concatenate(axis=1, name="branch_logits")(logits)
    outputs[teacher] = layers.Dot(axes=(1, 1), name=teacher)([gate, stacked])
    stacked = layers.Concatenate(axis=1, name="branch_features")(features)
    outputs[f"feature_{count + 1}"] = layers.Dot(axes=(1, 1), name=f"feature_{count + 1}")(
        [gate, stacked])
    structure.append(ExitInfo(teacher, None, structure[-1].feature_width, GATE))
    network = namespace.Model(inputs, outputs, name=f"{name}_network")
    return MultiExitNetwork(network, tuple(structure))
