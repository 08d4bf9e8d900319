"""Quantization-aware training (QAT) of a trained multi-exit model with tfmot, then
per-exit and cascade int8 TFLite files.

tfmot's default 8-bit scheme knows Conv2D, DepthwiseConv2D (the heads' separable
convolutions are a DepthwiseConv2D + 1x1 Conv2D pair; a SeparableConv2D layer is split
into the same pair by tfmot), Dense, BatchNormalization right after a convolution (kept
unquantized between the two, folded at conversion), ReLU, Add, pooling, UpSampling2D,
Cropping2D, Activation and a few more. Three layers of the zoo are missing from it and
get a config here:

- `Identity` (the `section_k` markers, the deepest `feature_N`): passes its input
  through, no quantizer: the int8 tensor keeps its range, so the cascade's `trunk_out`
  and the next segment's `trunk_in` share one scale;
- `Multiply` (the attention mask's apply): output quantizer, as tfmot gives `Add`;
- a BatchNormalization that does not follow a convolution (the attention mask's
  `_bn`): output quantizer. TFLite runs it as MUL + ADD; the MUL's output has no QAT
  range, so the conversion calibrates that one tensor on representative data.

Any other unknown layer stops the run with `UnsupportedLayersError` naming them.

Example:
    >>> from byot_keras import zoo
    >>> from byot_keras.compress import qat, twin
    >>> model = zoo.alexnet_byot(num_classes=10, width_multiplier=0.125, exits=[1])
    >>> network = qat.quantize_network(twin.build_twin(model).network)
    >>> [layer.name for layer in network.layers][1:4]  # fake-quantized
    ['quantize_layer', 'quant_conv1_pad', 'quant_conv1']
"""

from __future__ import annotations

import functools

import numpy as np

from byot_keras.compress import extra
from byot_keras.options import POSITIVE

# How each layer is quantized (see the module docstring).
DEFAULT, PASS_THROUGH, OUTPUT, INPUT = "default", "pass_through", "output", "input"
_FOLDED_INTO = ("Conv2D", "DepthwiseConv2D", "Dense")  # BatchNorm after these: tfmot's
_TRANSFORMED = ("SeparableConv2D", "SeparableConv1D")  # tfmot rewrites these itself


class UnsupportedLayersError(ValueError):
    """The network has layers tfmot's 8-bit QAT scheme cannot quantize."""


@functools.cache
def _configs():
    """The two QuantizeConfigs added to tfmot's scheme (classes made once tfmot is in)."""
    quantize = extra.tfmot().quantization.keras

    class PassThroughQuantizeConfig(quantize.QuantizeConfig):
        """No quantizer: the layer forwards its (already quantized) input."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    class OutputQuantizeConfig(PassThroughQuantizeConfig):
        """An 8-bit moving-average range on the output, as tfmot's Add and Concatenate."""

        def get_output_quantizers(self, layer):
            return [quantize.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    return {PASS_THROUGH: PassThroughQuantizeConfig, OUTPUT: OutputQuantizeConfig}


def _source_layer(layer):
    history = getattr(layer.input, "_keras_history", None)
    return None if history is None else history.layer


def quantization_plan(network) -> dict[str, str | None]:
    """For every layer of a tf_keras network, how QAT quantizes it: "default" (tfmot's
    scheme), "pass_through", "output", "input" (the input layer) or None (unsupported)."""
    tfmot = extra.tfmot()
    registry = tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme() \
        .get_quantize_registry()
    plan = {}
    for layer in network.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            plan[layer.name] = INPUT
        elif kind == "Identity":
            plan[layer.name] = PASS_THROUGH
        elif kind == "Multiply":
            plan[layer.name] = OUTPUT
        elif kind == "BatchNormalization":
            source = _source_layer(layer)
            follows_conv = (source is not None and type(source).__name__ in _FOLDED_INTO
                            and getattr(source.activation, "__name__", "") == "linear")
            plan[layer.name] = DEFAULT if follows_conv else OUTPUT
        elif registry.supports(layer) or kind in _TRANSFORMED:
            plan[layer.name] = DEFAULT
        else:
            plan[layer.name] = None
    return plan


def unsupported_layers(network) -> list[tuple[str, str]]:
    """(name, class) of the layers QAT cannot quantize; empty if all are supported."""
    layers = {layer.name: layer for layer in network.layers}
    return [(name, type(layers[name]).__name__)
            for name, how in quantization_plan(network).items() if how is None]


def quantize_network(network):
    """The QAT (fake-quantized) version of a tf_keras multi-exit network, same outputs.

    Raises:
        UnsupportedLayersError: naming the layers tfmot cannot quantize.
    """
    tfmot = extra.tfmot()
    tf_keras = extra.tf_keras()
    quantize = tfmot.quantization.keras
    plan = quantization_plan(network)
    missing = unsupported_layers(network)
    if missing:
        listed = ", ".join(f"'{name}' ({kind})" for name, kind in missing)
        raise UnsupportedLayersError(
            f"tfmot's 8-bit quantization-aware training cannot quantize {len(missing)} "
            f"layer(s) of '{network.name}': {listed}. Supported are the layers of tfmot's "
            "default 8-bit scheme (Conv2D, DepthwiseConv2D, SeparableConv2D, Dense, "
            "BatchNormalization, ReLU, Add, Concatenate, pooling, UpSampling2D, Activation, "
            "...) plus Identity and Multiply. Replace those layers, or use post-training "
            "int8 instead (byot-export --quantizations int8)."
        )
    configs = _configs()

    def annotate(layer):
        how = plan[layer.name]
        if how == INPUT:
            return layer
        config = configs[how]() if how in configs else None
        return quantize.quantize_annotate_layer(layer, config)

    annotated = tf_keras.models.clone_model(network, clone_function=annotate)
    scope = {cls.__name__: cls for cls in configs.values()}
    with quantize.quantize_scope(scope):
        try:
            return quantize.quantize_apply(annotated)
        except RuntimeError as error:  # tfmot's "Layer x is not supported"
            raise UnsupportedLayersError(f"tfmot could not quantize '{network.name}': "
                                         f"{error}") from error


def quantization_aware_training(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    output_dir: str,
    *,
    model_name: str | None = None,
    builder_kwargs: dict | None = None,
    epochs: int = 1,
    batch_size: int = 64,
    learning_rate: float = 0.002,
    eval_data: tuple[np.ndarray, np.ndarray] | None = None,
    representative_data: np.ndarray | None = None,
    class_names=None,
    normalization: dict | None = None,
    int8_io: bool = False,
    cascade: bool = True,
    seed: int = 0,
    verbose="auto",
    allow_other_files: bool = False,
) -> dict:
    """QAT fine-tuning of a trained Keras 3 multi-exit `model`, then int8 export.

    Builds the tf_keras twin (`twin.build_twin`, weights carried over and checked),
    quantizes it (`quantize_network`), fine-tunes it on `(images, labels)` with the
    model's own self-distillation loss (`finetune`), and writes `exit_<k>_int8.tflite`
    and `cascade/segment_<k>_int8.tflite` with a `manifest.json` into `output_dir`
    (layout of `byot_keras.export`). The manifest's `compression` entry records the
    twin check, the fine-tuning and the float model's per-exit accuracy on `eval_data`.

    `allow_other_files`: as in `export_tflite`; the folder is checked before any work.

    Returns:
        The manifest.
    """
    from byot_keras.compress import export, finetune, twin
    from byot_keras.export.cascade import exit_sections as cascade_sections

    extra.require()  # before any work: a missing extra names its install command
    POSITIVE.check("learning_rate", learning_rate)
    export.check_output_folder(output_dir, model.num_exits, ["int8"], cascade,
                               allow_other_files)
    # Where the cascade cuts the trunk: the model's recorded structure (the twin is the
    # same network, so the same sections).
    sections = cascade_sections(model) if cascade else None
    check = representative_data if representative_data is not None else images
    twin_result = twin.build_twin(model, model_name, check_images=np.asarray(check[:32]),
                                  **(builder_kwargs or {}))
    quantized = quantize_network(twin_result.network)
    trainer = finetune.distillation_trainer(quantized, model)
    history = finetune.fit(trainer, images, labels, epochs=epochs, batch_size=batch_size,
                           learning_rate=learning_rate, seed=seed, verbose=verbose)
    compression = finetune.compression_record(
        "quantization_aware_training", model, twin_result, images, epochs=epochs,
        batch_size=batch_size, learning_rate=learning_rate, history=history,
        eval_data=eval_data)
    return export.export_network(
        quantized, output_dir, model_name=model.name, costs=model.exit_costs(),
        sections=sections,
        quantizations=["int8"], qat=True, representative_data=representative_data,
        eval_data=eval_data, labels=class_names,
        normalization=(normalization if normalization is not None
                       else getattr(model, "input_normalization", None)),
        int8_io=int8_io, cascade=cascade, extra_manifest={"compression": compression},
        allow_other_files=allow_other_files,
    )
