"""Cut a multi-exit network into what gets deployed: one sub-model per exit, and the
early-exit cascade, whose segments run in order without recomputing anything."""

from __future__ import annotations

import keras

TRUNK_IN = "trunk_in"
TRUNK_OUT = "trunk_out"
LOGITS = "logits"
IMAGE = "image"


def _require_multi_exit(model) -> None:
    if not hasattr(model, "exit_names") or not hasattr(model, "network"):
        raise ValueError(
            f"Expected a multi-exit model (a byot_keras SelfDistillationModel with "
            f"exit_1..exit_N), got {type(model).__name__}. Build one with byot_keras.zoo "
            "or load a .keras file saved from one."
        )


def exit_sections(model) -> list[int]:
    """For each exit, the trunk section its classifier hangs off (1-based)."""
    _require_multi_exit(model)
    sections = []
    for name in model.exit_names:
        names = [layer.name for layer in model.exit_model(name).layers]
        used = [int(n.split("_")[1]) for n in names if n.startswith("section_")]
        if not used:
            raise ValueError(f"{name} depends on no 'section_k' layer: cannot cut a cascade.")
        sections.append(max(used))
    return sections


def exit_models(model, network: keras.Model | None = None) -> list[keras.Model]:
    """One Keras model per exit, image -> that exit's logits, holding only the layers the
    exit needs (as `model.exit_model(k)`). `network`: a copy of `model.network` with the
    same layer names (e.g. rescaled for quantization) to cut instead of `model.network`."""
    _require_multi_exit(model)
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
    sections = exit_sections(model)
    segments = []
    previous = network.inputs[0]
    for k, (name, section) in enumerate(zip(model.exit_names, sections), start=1):
        outputs = {LOGITS: network.get_layer(name).output}
        trunk = network.get_layer(f"section_{section}").output
        if k < len(sections):
            outputs[TRUNK_OUT] = trunk
        segments.append(keras.Model(previous, outputs, name=f"segment_{k}"))
        previous = trunk
    return segments
