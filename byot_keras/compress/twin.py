"""A trained Keras 3 multi-exit model's tf_keras twin: the same zoo builder run in the
tf_keras namespace (`byot_keras.zoo.namespace`), so the layers and their names are the
same, and the trained weights are copied over layer by layer, by name.

tfmot 0.8 only accepts tf_keras models; the twin is what it quantizes and prunes.
`build_twin` checks that every weighted layer found its counterpart with the same weight
shapes and that the twin's exits reproduce the Keras 3 model's logits.

Example:
    >>> from byot_keras import zoo
    >>> from byot_keras.compress import twin
    >>> model = zoo.resnet18_byot(num_classes=10, width_multiplier=0.125)
    >>> result = twin.build_twin(model)
    >>> sorted(result.network.output)[:2]                  # a tf_keras functional model
    ['exit_1', 'exit_2']
    >>> result.builder["width_multiplier"]
    0.125
"""

from __future__ import annotations

import re
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
            f"loaded with keras.saving.load_model), got {type(model).__name__}."
        )
    from byot_keras.training import method_trait

    if method_trait(model, "BRANCH_ENSEMBLE"):
        raise ValueError(
            "QAT and pruning do not support ONE models (method 'one': side-by-side "
            "branches and a gate) yet. Post-training int8 works: byot-export "
            "--quantizations int8.")


def _weighted_layers(network) -> dict:
    return {layer.name: layer for layer in network.layers if layer.weights}


def _first_conv_filters(network) -> int | None:
    for layer in network.layers:
        if hasattr(layer, "filters") and getattr(layer, "kernel_size", None):
            return int(layer.filters)
    return None


def infer_builder_kwargs(model) -> dict:
    """The zoo builder keywords that rebuild `model`'s architecture, read off its layers:
    `num_classes`, `input_shape`, `exits` (sections with a shallow exit), `head`,
    `attention` and `sync_batchnorm`. The width is found by `build_twin`.

    Example:
        >>> from byot_keras import zoo
        >>> infer_builder_kwargs(zoo.vgg11_byot(num_classes=4, width_multiplier=0.125,
        ...                                     exits=[2]))["exits"]
        [2]
    """
    from byot_keras.export.cascade import exit_sections

    _require_model(model)
    names = [layer.name for layer in model.network.layers]
    kwargs = {
        "num_classes": int(model.num_classes),
        "input_shape": tuple(int(d) for d in model.network.inputs[0].shape[1:]),
        "exits": exit_sections(model)[:-1],
    }
    if any(re.match(r"exit_\d+_head_sep\d+_", n) for n in names):
        kwargs["head"] = "sepconv"
    elif any(re.match(r"exit_\d+_head_bottleneck_", n) for n in names):
        kwargs["head"] = "bottleneck"
    if kwargs["exits"]:
        kwargs["attention"] = any(re.match(r"exit_\d+_head_attention_", n) for n in names)
    batch_norms = [layer for layer in model.network.layers
                   if type(layer).__name__ == "BatchNormalization"]
    if batch_norms:
        kwargs["sync_batchnorm"] = bool(getattr(batch_norms[0], "synchronized", False))
    return kwargs


def _width_candidates(network) -> list[float]:
    """Widths to try: every family's first conv has 16, 32 or 64 channels at width 1.0
    (`scaled(c, w) = round(c * w)`), smallest first so a wrong guess stays cheap."""
    filters = _first_conv_filters(network)
    if filters is None:
        return [1.0]
    return sorted({filters / base for base in (64, 32, 16)})


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


def _build(model_name: str, tf_keras, kwargs: dict):
    from byot_keras import zoo
    from byot_keras.zoo import namespace

    with namespace.use(tf_keras):
        return zoo.create_model(model_name, **kwargs)


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
        model_name: the registry name of its builder; default `model.name` (the builders'
            default name).
        check_images: inputs to compare the twin's logits with the model's on (default 8
            random images); differences beyond float32 round-off raise.
        **builder_kwargs: builder keywords; those not given are inferred
            (`infer_builder_kwargs`), and `width_multiplier` is searched for.

    Returns:
        A `Twin`: `network`, a tf_keras functional model with the Keras 3 network's
        outputs (`exit_k` logits, `feature_k` features); `builder`, the builder call;
        `differences`, the measured logit differences per exit.
    """
    from byot_keras import zoo

    _require_model(model)  # before importing tf_keras: bad input fails fast
    tf_keras = extra.tf_keras()
    model_name = model_name or model.name
    if model_name not in zoo.list_models():
        raise ValueError(
            f"'{model_name}' is not a registered zoo model, so its tf_keras twin cannot be "
            f"built: pass the builder's registry name as model_name (--model). Valid names: "
            f"{', '.join(zoo.list_models())}."
        )
    kwargs = {**infer_builder_kwargs(model), **builder_kwargs}
    widths = ([kwargs.pop("width_multiplier")] if "width_multiplier" in kwargs
              else _width_candidates(model.network))
    source = _weighted_layers(model.network)
    tried = {}
    twin = None
    for width in widths:
        try:
            candidate = _build(model_name, tf_keras, {**kwargs, "width_multiplier": width})
        except ValueError as error:  # e.g. a group width this width cannot split
            tried[width] = [f"the builder refused it ({error})"]
            continue
        problems = _mismatches(source, candidate)
        if not problems:
            twin, kwargs["width_multiplier"] = candidate, width
            break
        tried[width] = problems
    if twin is None:
        detail = "; ".join(f"width_multiplier={w}: {len(p)} mismatch(es), e.g. "
                           + ", ".join(p[:3]) for w, p in tried.items())
        raise ValueError(
            f"Could not rebuild '{model.name}' with {model_name}({kwargs}): {detail}. Pass "
            "the builder keywords it was created with (e.g. --width_multiplier, "
            "--builder_kwargs '{\"stem_type\": \"imagenet\"}')."
        )
    copy_weights(model.network, twin)
    if check_images is None:
        shape = tuple(model.network.inputs[0].shape[1:])
        check_images = np.random.default_rng(0).normal(size=(8, *shape)).astype("float32")
    differences = output_differences(model, twin, check_images[:32])
    for name, diff in differences.items():
        if diff["max_abs_diff"] > TWIN_TOLERANCE * max(1.0, diff["logit_scale"]):
            raise ValueError(
                f"The tf_keras twin's {name} differs from the model by "
                f"{diff['max_abs_diff']:.3g} (logit scale {diff['logit_scale']:.3g}); a layer "
                "behaves differently in tf_keras."
            )
    builder = {"model": model_name, **{k: list(v) if isinstance(v, tuple) else v
                                       for k, v in kwargs.items()}}
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
