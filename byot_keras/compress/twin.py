"""A trained Keras 3 multi-exit model's tf_keras twin: the same zoo builder run in the
tf_keras namespace (`byot_keras.networks.namespace`) with the keywords the model records
(`model.builder`), so the layers and their names are the same, and the trained weights
are copied over layer by layer, by name.

tfmot 0.8 only accepts tf_keras models; the twin is what it quantizes and prunes.
`build_twin` checks that every weighted layer found its counterpart with the same weight
shapes and that the twin's exits reproduce the Keras 3 model's logits.

Example:
    >>> from byot_keras import zoo
    >>> from byot_keras.compress import twin
    >>> model = zoo.alexnet_byot(num_classes=10, width_multiplier=0.125)
    >>> result = twin.build_twin(model)
    >>> sorted(result.network.output)[:2]                  # a tf_keras functional model
    ['exit_1', 'exit_2']
    >>> result.builder["width_multiplier"]
    0.125
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from byot_keras.compress import extra

# Relative tolerance of the twin's logits: float32 round-off only (the twin runs the same
# ops on the same weights; measured differences are ~1e-6 of the logit scale).
TWIN_TOLERANCE = 1e-4


class Twin(NamedTuple):
    """What `build_twin` returns."""

    network: object  # the tf_keras functional network, trained weights loaded
    builder: dict  # the builder call that made it: {"model": name, **keywords}
    differences: dict  # per exit: max_abs_diff and logit_scale against the model


def _require_model(model) -> None:
    if not hasattr(model, "network") or not hasattr(model, "exit_names"):
        raise ValueError(
            f"Expected a trained multi-exit byot_keras model (a SelfDistillationModel, e.g. "
            f"loaded with byot_keras.saving.load_model), got {type(model).__name__}."
        )
    if not getattr(model, "exits_form_a_chain", True):
        raise ValueError(
            "QAT and pruning do not support ONE models (method 'one': side-by-side "
            "branches and a gate) yet. Post-training int8 works: byot-export "
            "--quantizations int8.")


def _weighted_layers(network) -> dict:
    return {layer.name: layer for layer in network.layers if layer.weights}


def _mismatches(source: dict, twin) -> list[str]:
    target = _weighted_layers(twin)
    problems = [f"'{n}' is missing in the twin" for n in source if n not in target]
    problems += [f"'{n}' exists only in the twin" for n in target if n not in source]
    for name in source.keys() & target.keys():
        got = [tuple(w.shape) for w in target[name].weights]
        want = [tuple(w.shape) for w in source[name].weights]
        if got != want:
            problems.append(f"'{name}' has weights {got} in the twin, {want} in the model")
    return problems


def builder_call(model, model_name: str | None = None, **builder_kwargs) -> tuple:
    """(registry name, positional args, keywords) that rebuild `model`'s network: the
    model's own record (`model.builder`), with `model_name` / `builder_kwargs`
    overriding it. A model saved before builders were recorded needs both."""
    record = getattr(model, "builder", None) or {}
    name = model_name or record.get("name")
    if not name:
        raise ValueError(
            f"'{model.name}' does not record the zoo builder that made it (saved by "
            "byot-keras 0.1): pass its registry name and keywords (--model resnet18_byot "
            "--width_multiplier 0.25, --builder_kwargs '{...}'), or re-save it from a "
            "model built with this version.")
    keywords = {**record.get("kwargs", {}), **builder_kwargs}
    if not record:  # what a 0.1 file still tells
        keywords.setdefault("num_classes", int(model.num_classes))
        keywords.setdefault("input_shape", tuple(int(d) for d in
                                                 model.network.inputs[0].shape[1:]))
    return name, tuple(record.get("args", ())), keywords


def build_network_twin(name: str, args: tuple, keywords: dict, tf_keras):
    """The zoo network `name` built in tf_keras (`byot_keras.networks.namespace`)."""
    from byot_keras.networks import build_network, namespace

    with namespace.use(tf_keras):
        return build_network(name, *args, **keywords).network


def copy_weights(network, twin) -> int:
    """Copies every weighted layer of the Keras 3 `network` into the tf_keras `twin` by
    layer name (BatchNorm moving statistics included); returns the number of layers."""
    source = _weighted_layers(network)
    problems = _mismatches(source, twin)
    if problems:
        raise ValueError("The tf_keras twin does not match the model: " + "; ".join(problems))
    for name, layer in source.items():
        twin.get_layer(name).set_weights([np.asarray(w) for w in layer.weights])
    return len(source)


def output_differences(model, twin, images: np.ndarray) -> dict[str, dict]:
    """Per exit, the largest |twin - model| logit difference on `images` and the logit
    scale (largest |logit| of the model), both in inference mode."""
    reference = model.network(images, training=False)
    got = twin(images, training=False)
    result = {}
    for name in model.exit_names:
        want = np.asarray(reference[name])
        result[name] = {"max_abs_diff": float(np.abs(np.asarray(got[name]) - want).max()),
                        "logit_scale": float(np.abs(want).max())}
    return result


def build_twin(model, model_name: str | None = None, *, check_images: np.ndarray | None = None,
               **builder_kwargs) -> Twin:
    """The tf_keras twin of a trained multi-exit Keras 3 `model`, with its weights.

    Args:
        model: a byot_keras `SelfDistillationModel` (built by a zoo builder).
        model_name: the registry name of its builder; default: the one the model records.
        check_images: inputs to compare the twin's logits with the model's on (default 8
            random images); differences beyond float32 round-off raise.
        **builder_kwargs: builder keywords overriding the recorded ones.

    Returns:
        A `Twin`: `network`, a tf_keras functional model with the Keras 3 network's
        outputs (`exit_k` logits, `feature_k` features); `builder`, the builder call;
        `differences`, the measured logit differences per exit.
    """
    from byot_keras import networks

    _require_model(model)  # before importing tf_keras: bad input fails fast
    tf_keras = extra.tf_keras()
    name, args, keywords = builder_call(model, model_name, **builder_kwargs)
    if name not in networks.list_networks():
        raise ValueError(
            f"'{name}' is not a registered zoo network, so its tf_keras twin cannot be "
            f"built: pass the builder's registry name (--model). Valid names: "
            f"{', '.join(networks.list_networks())}."
        )
    try:
        twin = build_network_twin(name, args, keywords, tf_keras)
    except ValueError as error:
        raise ValueError(f"Could not rebuild '{model.name}' with {name}({keywords}): "
                         f"{error}") from error
    problems = _mismatches(_weighted_layers(model.network), twin)
    if problems:
        raise ValueError(
            f"Could not rebuild '{model.name}' with {name}({keywords}): {len(problems)} "
            f"mismatch(es), e.g. {', '.join(problems[:3])}. Pass the builder keywords it "
            "was created with (--model, --width_multiplier, --builder_kwargs).")
    copy_weights(model.network, twin)
    if check_images is None:
        shape = tuple(model.network.inputs[0].shape[1:])
        check_images = np.random.default_rng(0).normal(size=(8, *shape)).astype("float32")
    differences = output_differences(model, twin, check_images[:32])
    for exit_name, diff in differences.items():
        if diff["max_abs_diff"] > TWIN_TOLERANCE * max(1.0, diff["logit_scale"]):
            raise ValueError(
                f"The tf_keras twin's {exit_name} differs from the model by "
                f"{diff['max_abs_diff']:.3g} (logit scale {diff['logit_scale']:.3g}); a layer "
                "behaves differently in tf_keras."
            )
    builder = {"model": name, **{k: list(v) if isinstance(v, tuple) else v
                                 for k, v in keywords.items()}}
    return Twin(twin, builder, differences)


def adapter_twins(model) -> dict[int, object]:
    """The training model's adaptation Dense layers (`adaptation_k`, used by the feature
    term of the loss) as tf_keras Dense layers with the same weights: exit k -> layer."""
    tf_keras = extra.tf_keras()
    adapters = {}
    for adapter in getattr(model, "adapters", []):
        kernel, bias = (np.asarray(w) for w in adapter.weights)
        layer = tf_keras.layers.Dense(kernel.shape[1], name=adapter.name)
        layer.build((None, kernel.shape[0]))
        layer.set_weights([kernel, bias])
        adapters[int(adapter.name.rsplit("_", 1)[1])] = layer
    return adapters
