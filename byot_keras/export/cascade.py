"""Cut a multi-exit network into what gets deployed: one sub-model per exit, and the
early-exit cascade, whose segments run in order without recomputing anything."""

from __future__ import annotations

import keras

TRUNK_IN = "trunk_in"
TRUNK_OUT = "trunk_out"
LOGITS = "logits"
PROBABILITIES = "probabilities"  # softmax of the logits: what classifier files output
IMAGE = "image"


def require_multi_exit(model) -> None:
    if not hasattr(model, "exit_names") or not hasattr(model, "network"):
        raise ValueError(
            f"Expected a multi-exit model (a byot_keras SelfDistillationModel with "
            f"exit_1..exit_N), got {type(model).__name__}. Build one with byot_keras.zoo "
            "or load a .keras file saved from one."
        )


def exit_sections(model) -> list[int]:
    """For each exit, the trunk section its classifier hangs off (1-based), from the
    model's recorded structure."""
    require_multi_exit(model)
    structure = model.exit_structure
    if not model.exits_form_a_chain:
        raise ValueError(f"{model.name}'s exits are side-by-side branches (method 'one'), not "
                         "a chain of trunk sections: there is no cascade to cut.")
    unknown = [info.name for info in structure if info.section is None]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} of {model.name} follow no known trunk section "
                         "(a network built outside the zoo, without 'section_k' layers): "
                         "cannot cut a cascade.")
    return [info.section for info in structure]


def exit_models(model, network: keras.Model | None = None) -> list[keras.Model]:
    """One Keras model per exit, image -> that exit's logits, holding only the layers the
    exit needs (as `model.exit_model(k)`). `network`: a copy of `model.network` with the
    same layer names (e.g. rescaled for quantization) to cut instead of `model.network`."""
    require_multi_exit(model)
    network = model.network if network is None else network
    return [keras.Model(network.inputs, network.get_layer(name).output,
                        name=f"{model.name}_{name}") for name in model.exit_names]


def cascade_models(model, network: keras.Model | None = None) -> list[keras.Model]:
    """The cascade's segments as Keras models, one per exit.

    Segment 1 maps the image to exit 1's logits and the trunk feature map of exit 1's
    section; segment k maps segment k-1's trunk map to exit k's logits and (except the
    last) its own trunk map. Outputs are dicts with keys "logits" and "trunk_out".
    `network` as in `exit_models`.
    """
    network = model.network if network is None else network
    return cut_segments(network, model.exit_names, exit_sections(model))


def cut_segments(network, exit_names, sections, *, layer=None, model_class=None) -> list:
    """The cascade's segments cut from `network` (see `cascade_models`): exit k's
    classifier `exit_names[k - 1]` hangs off trunk layer `section_<sections[k - 1]>`.
    `layer(network, name)` finds a layer (default `network.get_layer`) and `model_class`
    makes the segments (default `keras.Model`), so that other Keras versions' networks
    (the tf_keras twins of `byot_keras.compress`) are cut the same way."""
    layer = layer or (lambda net, name: net.get_layer(name))
    model_class = model_class or keras.Model
    segments = []
    previous = network.inputs[0]
    for k, (name, section) in enumerate(zip(exit_names, sections), start=1):
        outputs = {LOGITS: layer(network, name).output}
        trunk = layer(network, f"section_{section}").output
        if k < len(sections):
            outputs[TRUNK_OUT] = trunk
        segments.append(model_class(previous, outputs, name=f"segment_{k}"))
        previous = trunk
    return segments
