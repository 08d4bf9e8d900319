"""Convert a multi-exit model to TFLite: one classifier file per exit, the early-exit
cascade, one multi-signature file, and a manifest an app can read. Conversion goes
through a SavedModel with one signature per entry point, builtin ops only (a graph that
would need Flex ops fails clearly).

Every file that takes the image takes RGB pixel values 0..255 and applies the model's
input normalisation inside its graph; the exit files and the multi-signature file end in
a softmax ("probabilities"), the cascade segments return "logits" for the early-exit
rule. Every file carries TFLite Model Metadata (`metadata.py`) with the labels packed in,
so MediaPipe Tasks' `ImageClassifier` and Android Studio's ML Model Binding use the exit
files with no preprocessing or postprocessing code.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence

import keras
import numpy as np

from byot_keras.export import metadata as metadata_lib
from byot_keras.export.cascade import (
    IMAGE,
    LOGITS,
    PROBABILITIES,
    TRUNK_IN,
    TRUNK_OUT,
    cascade_models,
    exit_models,
)
from byot_keras.export.equalize import equalize_for_quantization
from byot_keras.export.files import (  # noqa: F401 - names of byot_keras.export.tflite
    EXIT_OUTPUTS,
    MANIFEST_VERSION,
    METADATA_AUTHOR,
    MODEL_INFO_KEYS,
    ExportFiles,
    add_export_metadata,
    cascade_entry,
    check_eval_pair,
    check_exit_outputs,
    check_labels,
    file_name,
    manifest_header,
    manifest_input,
    metadata_defaults,
    planned_files,
    quantization_text,
)
from byot_keras.export.layout import ExportFolder
from byot_keras.export.litert import SIGNATURE, LiteRTModel, operator_names, signature_outputs
from byot_keras.normalization import check_normalization, pixel_affine, to_pixels

QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8")
# TFLite's 16x8 mode (int16 activations, int8 weights): far closer to float than int8, but
# LiteRT runs it with reference CPU kernels (measured ~20x slower than float32 on x86):
# for accelerators that support it, or where int8's accuracy is not enough.
EXPERIMENTAL_QUANTIZATIONS = ("int16x8",)
CALIBRATED = ("int8", "int16x8")
MULTI_SIGNATURE_STEM = "model"


def check_quantizations(quantizations: Sequence[str], flag: str = "quantizations"
                        ) -> list[str]:
    """The requested quantizations without repeats; unknown or no names raise."""
    if isinstance(quantizations, str):
        quantizations = [quantizations]
    valid = QUANTIZATIONS + EXPERIMENTAL_QUANTIZATIONS
    unknown = [q for q in quantizations if q not in valid]
    if unknown or not quantizations:
        raise ValueError(
            f"{flag}: unknown quantization {unknown or list(quantizations)}. Valid: "
            f"{', '.join(valid)}."
        )
    return list(dict.fromkeys(quantizations))



def convert(keras_model: keras.Model, input_name: str, quantization: str = "float32",
            representative: np.ndarray | None = None, int8_io: bool = False, *,
            float_classifier: bool = True, normalization: dict | None = None,
            probabilities: bool = False) -> bytes:
    """One Keras model (single input, dict or tensor output) to a .tflite flatbuffer with
    the signature "serving_default".

    Args:
        input_name: the signature's input name.
        quantization: "float32", "float16" (float16 weights), "dynamic_int8" (int8
            weights, float activations), "int8" (full integer, calibrated on
            `representative`: a batch of typical inputs of the file, e.g. 100-500
            training images) or "int16x8" (int16 activations and int8 weights,
            calibrated likewise).
        int8_io: with "int8", integer inputs and outputs: the "image" input (0..255
            pixels with `normalization`) and "probabilities" as uint8, other tensors
            ("logits", "trunk_in", "trunk_out") as int8. Default: float32 inputs and
            outputs with (de)quantize ops at the edges.
        float_classifier: with "int8" and float outputs, compute the op that produces
            "logits" (the exit's final Dense layer: num_classes x features weights), and
            the softmax after it, in float. int8 logits have 256 levels, so close top-2
            scores tie and the top-1 flips; the rest of the graph stays int8.
        normalization: the model's input normalisation (`byot_keras.normalization`):
            the file then takes RGB pixel values 0..255 and computes
            (pixel / 255 - mean) / std in its graph. None: the input goes to the model
            unchanged.
        probabilities: replace the "logits" output by "probabilities", its softmax.

    Example:
        >>> from byot_keras import zoo
        >>> model = zoo.alexnet_byot(num_classes=10, width_multiplier=0.125)
        >>> flatbuffer = convert(model.exit_model(1), "image")
        >>> LiteRTModel(flatbuffer).output_names
        ['logits']
    """
    return convert_signatures({SIGNATURE: keras_model}, input_name, quantization,
                              representative, int8_io, float_classifier=float_classifier,
                              normalization=normalization, probabilities=probabilities)


def serving_function(keras_model: keras.Model, normalization: dict | None,
                      probabilities: bool):
    import tensorflow as tf

    affine = None
    if normalization is not None:
        affine = pixel_affine(normalization, int(keras_model.inputs[0].shape[-1]))

    def serve(inputs):
        if affine is not None:  # 0..255 pixels -> (pixel / 255 - mean) / std
            inputs = inputs * affine[0] + affine[1]
        outputs = keras_model(inputs, training=False)
        outputs = dict(outputs) if isinstance(outputs, dict) else {LOGITS: outputs}
        if probabilities:
            outputs[PROBABILITIES] = tf.nn.softmax(outputs.pop(LOGITS), axis=-1)
        return outputs

    return serve


def convert_signatures(models: Mapping[str, keras.Model], input_name: str,
                       quantization: str = "float32",
                       representative: np.ndarray | None = None, int8_io: bool = False, *,
                       float_classifier: bool = True, normalization: dict | None = None,
                       probabilities: bool = False) -> bytes:
    """Several Keras models with one input each, as one .tflite file with one signature
    per model (`{signature name: model}`). Models built from the same layers share their
    weights in the file. Arguments as in `convert`; int8 calibration runs every
    signature on all of `representative`.

    Example:
        >>> from byot_keras import zoo
        >>> model = zoo.alexnet_byot(num_classes=10, width_multiplier=0.125)
        >>> flatbuffer = convert_signatures(
        ...     {"exit_1": model.exit_model(1), "exit_2": model.exit_model(2)}, "image")
        >>> LiteRTModel(flatbuffer, signature="exit_2").signature_names
        ['exit_1', 'exit_2']
    """
    import tensorflow as tf

    from byot_keras.backend.export import check_export_backend

    check_export_backend()  # every conversion passes here
    (quantization,) = check_quantizations([quantization])
    if not models:
        raise ValueError("Give at least one model to convert.")
    if quantization in CALIBRATED and representative is None:
        raise ValueError(
            f"Quantization '{quantization}' needs calibration data: pass representative "
            "data (a few hundred typical inputs, e.g. training images) or choose "
            "float16/dynamic_int8."
        )
    normalization = check_normalization(normalization)
    keys = list(models)
    samples = None if representative is None else np.asarray(representative, np.float32)

    def calibration():
        for key in keys:
            for sample in samples:
                feed = {input_name: sample[None]}
                yield feed if len(keys) == 1 else (key, feed)

    names = ", ".join(model.name for model in models.values())
    keep_classifier_float = quantization == "int8" and float_classifier and not int8_io
    integer_io = quantization == "int8" and int8_io
    with tempfile.TemporaryDirectory(prefix="byot-savedmodel-") as saved_model:
        archive = keras.export.ExportArchive()
        for key, keras_model in models.items():
            archive.track(keras_model)
            spec = tf.TensorSpec(keras_model.inputs[0].shape, tf.float32, name=input_name)
            archive.add_endpoint(key, serving_function(
                keras_model, normalization if input_name == IMAGE else None, probabilities),
                input_signature=[spec])
        archive.write_out(saved_model, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=keys)
        if quantization != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization in CALIBRATED:
            converter.representative_dataset = calibration
        if quantization == "int16x8":
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        if quantization == "int8" and not keep_classifier_float:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if integer_io:
                # uint8 for images and probabilities: what image classifier APIs (MediaPipe
                # Tasks) accept; they reject int8 inputs and outputs.
                converter.inference_input_type = tf.uint8 if input_name == IMAGE else tf.int8
                converter.inference_output_type = tf.uint8 if probabilities else tf.int8
        try:
            if keep_classifier_float:
                flatbuffer = _quantize_all_but_classifier(converter, calibration)
            else:
                flatbuffer = converter.convert()
        except Exception as error:
            raise RuntimeError(
                f"TFLite conversion of '{names}' ({quantization}) failed with builtin ops "
                f"only (Flex ops are not allowed): {error}"
            ) from error
    flex = [op for op in operator_names(flatbuffer) if op.lower().startswith("flex")]
    if flex:
        raise RuntimeError(f"'{names}' converted with Flex ops {flex}; the deployment kit "
                           "allows builtin TFLite ops only.")
    if integer_io and input_name == IMAGE and normalization is not None:
        flatbuffer = pin_pixel_quantization(flatbuffer)
    return flatbuffer


def _quantize_all_but_classifier(converter, calibration) -> bytes:
    """Full-integer quantization except the ops that compute each signature's "logits",
    or its "probabilities" and the logits they are the softmax of (TFLite's selective
    quantization: calibrate, then quantize with those nodes denylisted). Raises if one of
    them still comes out of an int8 op."""
    import tensorflow as tf

    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter,
                                                         debug_dataset=calibration)

    def classifier_outputs(flatbuffer):
        found = {}
        for name in (LOGITS, PROBABILITIES):
            for key, output in signature_outputs(flatbuffer, name).items():
                found[key, name] = output
        return found

    outputs = classifier_outputs(debugger.calibrated_model)
    if not outputs:
        raise ValueError(f"No signature has an output named '{LOGITS}' or "
                         f"'{PROBABILITIES}'.")
    denylisted = set()
    for (_, name), output in outputs.items():
        denylisted.add(output.tensor)
        if name == PROBABILITIES:  # the softmax's input: the logits
            denylisted.update(tensor for tensor, _ in output.producer_inputs)
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=sorted(denylisted))
    flatbuffer = debugger.get_nondebug_quantized_model()
    still_quantized = set()
    for (key, name), output in classifier_outputs(flatbuffer).items():
        produced = [output.producer] + ([p for _, p in output.producer_inputs]
                                        if name == PROBABILITIES else [])
        if any(p in (None, "DEQUANTIZE") for p in produced):
            still_quantized.add(key)
    if still_quantized:
        raise RuntimeError(f"Could not keep the classifier of {sorted(still_quantized)} in "
                           "float; export with int8_float_classifier=False.")
    return flatbuffer


def pin_pixel_quantization(flatbuffer: bytes) -> bytes:
    """A uint8 "image" input (0..255 pixels) with quantization scale 1 and zero point 0,
    so the bytes an app or MediaPipe passes are the pixel values themselves. Calibration
    on real images gives (1, 0) already when they span 0..255; otherwise the input's
    parameters are set to (1, 0), which is exact because the input only feeds a
    QUANTIZE op (uint8 -> int8 requantization with its own output parameters).

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> model = zoo.alexnet_byot(num_classes=2, width_multiplier=0.125)
        >>> dim = np.random.default_rng(0).uniform(20, 200, (8, 32, 32, 3)).astype("float32")
        >>> flatbuffer = convert(model.exit_model(1), "image", "int8", dim, int8_io=True,
        ...                      normalization={"scale": 1 / 255, "mean": 0.5, "std": 0.25})
        >>> LiteRTModel(flatbuffer).input_details["image"]["quantization"]  # pinned
        (1.0, 0)
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in model.operatorCodes]
    quantize, uint8 = 114, 3  # BuiltinOperator.QUANTIZE, TensorType.UINT8
    changed = False
    for signature in model.signatureDefs:
        subgraph = model.subgraphs[signature.subgraphIndex]
        for tensor_map in signature.inputs:
            if tensor_map.name.decode() != IMAGE:
                continue
            tensor = subgraph.tensors[tensor_map.tensorIndex]
            if tensor.type != uint8:
                continue
            params = tensor.quantization
            if [float(v) for v in params.scale] == [1.0] and [
                    int(v) for v in params.zeroPoint] == [0]:
                continue
            consumers = [op for op in subgraph.operators
                         if tensor_map.tensorIndex in op.inputs]
            if not consumers or any(codes[op.opcodeIndex] != quantize for op in consumers):
                raise RuntimeError("The uint8 'image' input feeds other ops than QUANTIZE; "
                                   "cannot give it scale 1, zero point 0.")
            params.scale = np.array([1.0], np.float32)
            params.zeroPoint = np.array([0], np.int64)
            changed = True
    if not changed:
        return flatbuffer
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def int8_trunk_interface(flatbuffer: bytes,
                         trunk_in_quantization: tuple[float, int] | None = None) -> bytes:
    """A full-integer cascade segment that takes "trunk_in" and returns "trunk_out" as
    int8 (its own quantized tensors) instead of float: the QUANTIZE op after "trunk_in"
    and the DEQUANTIZE op before "trunk_out" are removed, so consecutive segments hand
    over the int8 bytes unchanged (4x less to copy, no float round trip). "image" and
    "logits" keep their types. `trunk_in_quantization`: (scale, zero point) to give
    "trunk_in", i.e. exactly the previous segment's "trunk_out" parameters (calibration
    gives both the same range up to float rounding). Tensors that are int8 already
    (`int8_io`) only get those parameters.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in model.operatorCodes]
    quantize, dequantize = 114, 6  # BuiltinOperator.QUANTIZE, DEQUANTIZE
    for signature in model.signatureDefs:
        subgraph = model.subgraphs[signature.subgraphIndex]
        for tensor_map, is_input in [(t, True) for t in signature.inputs] + [
                (t, False) for t in signature.outputs]:
            name = tensor_map.name.decode()
            if name != (TRUNK_IN if is_input else TRUNK_OUT):
                continue
            wanted, side = (quantize, "inputs") if is_input else (dequantize, "outputs")
            index = tensor_map.tensorIndex
            if subgraph.tensors[index].type == 9:  # TensorType.INT8: nothing to remove
                replacement = index
            else:
                replacement = _remove_edge_conversion(subgraph, codes, wanted, index, name,
                                                      is_input)
                ends = getattr(subgraph, side)
                ends[ends == index] = replacement
                tensor_map.tensorIndex = replacement
            if is_input and trunk_in_quantization is not None:
                quantization = subgraph.tensors[replacement].quantization
                quantization.scale = np.array([trunk_in_quantization[0]], np.float32)
                quantization.zeroPoint = np.array([trunk_in_quantization[1]], np.int64)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _remove_edge_conversion(subgraph, codes, wanted, index, name, is_input) -> int:
    """Removes the QUANTIZE (input) / DEQUANTIZE (output) op at a graph edge; returns the
    int8 tensor on its other side."""
    ops = [op for op in subgraph.operators if codes[op.opcodeIndex] == wanted
           and (op.inputs[0] if is_input else op.outputs[0]) == index]
    if len(ops) != 1:
        raise RuntimeError(f"'{name}' is not (de)quantized by one op; cannot make it an "
                           "int8 tensor.")
    if is_input and sum(index in op.inputs for op in subgraph.operators) != 1:
        raise RuntimeError(f"'{name}' feeds more than its QUANTIZE op.")
    subgraph.operators.remove(ops[0])
    return int(ops[0].outputs[0] if is_input else ops[0].inputs[0])


def export_tflite(
    model,
    output_dir: str,
    *,
    quantizations: Sequence[str] = ("float32",),
    representative_data: np.ndarray | None = None,
    int8_io: bool = False,
    eval_data: tuple[np.ndarray, np.ndarray] | None = None,
    labels: Sequence[str] | None = None,
    normalization: dict | None = None,
    exit_outputs: str = PROBABILITIES,
    cascade: bool | None = None,
    multi_signature: bool = True,
    exits: Sequence[int] | None = None,
    max_calibration_examples: int = 200,
    int8_float_classifier: bool = True,
    int8_equalize: bool = True,
    int8_trunk: bool = True,
    model_info: Mapping[str, str] | None = None,
    allow_other_files: bool = False,
) -> dict:
    """Writes per-exit classifier files, the cascade, the multi-signature file,
    `labels.txt` and `manifest.json`.

    Files under `output_dir` (for quantization q, suffix `_q` unless float32):
    `exit_<k>.tflite` (input "image", output "probabilities"), `cascade/segment_<k>.tflite`
    (input "image" for k = 1, else "trunk_in"; outputs "logits" and, but for the last,
    "trunk_out"), both with the signature "serving_default", and `model.tflite`: one
    signature per exit, "exit_1" ... "exit_N" (input "image", output "probabilities"),
    sharing the weights. All have a dynamic batch size. "image" is RGB pixel values
    0..255: every file applies the model's normalisation inside. Every file carries TFLite
    Model Metadata (name, description, version, author, the image's colour space and
    normalisation, the output's meaning) with `labels.txt` packed in, so MediaPipe Tasks'
    `ImageClassifier` runs an exit file with default options.

    Args:
        model: a multi-exit `SelfDistillationModel`.
        quantizations: any of "float32", "float16", "dynamic_int8", "int8" and the
            experimental "int16x8" (int16 activations, int8 weights: closest to float,
            but slow on CPUs without 16x8 kernels).
        representative_data: typical inputs of the model (normalised like its training
            data), needed for "int8" and "int16x8"; the first `max_calibration_examples`
            are used (as 0..255 pixels, for the files that take the image).
        int8_io: integer inputs and outputs for the "int8" files: "image" and
            "probabilities" as uint8 (0..255 pixels with scale 1 and zero point 0; what
            MediaPipe accepts), "logits" and the trunk tensors as int8. The whole graph is
            then integer (no float classifier).
        eval_data: `(images, labels)`, images normalised like the training data, to
            measure each exit file's top-1 accuracy (and its agreement with the Keras
            model) into the manifest.
        labels: class names for `labels.txt` and the files' metadata (default "0", "1",
            ...).
        normalization: the model's input normalisation, `{"scale", "mean", "std"}`
            (`byot_keras.normalization`), built into the files. Default: the model's
            `input_normalization` (byot-train and byot-quickstart record it); give it for
            a model that does not record it. With neither, the files pass their input to
            the network unchanged (the manifest's `input.pixels` is false).
        exit_outputs: what the `exit_<k>` files and `model.tflite` return:
            "probabilities" (softmax, for classifier APIs) or "logits". The cascade
            segments always return "logits".
        cascade: also write the cascade segments (always all of them); default: yes,
            unless the exits are side-by-side branches (`method="one"`), which form
            no cascade.
        multi_signature: also write `model[_q].tflite` (always every exit).
        exits: which exits get their own `exit_<k>` file (1-based); default all.
        int8_float_classifier: in "int8" files with float outputs, compute each exit's
            final Dense layer (the logits) and its softmax in float: int8 logits tie on
            close top-2 scores. Costs the float weights of that layer (num_classes x
            features).
        int8_equalize: before int8 calibration, rescale the channels of every
            depthwise -> 1x1 convolution pair (the exit heads) so that one int8 scale
            suits them all; the float function is unchanged (`equalize.py`).
        int8_trunk: the "int8" cascade segments take and return their trunk tensors
            ("trunk_in", "trunk_out") as int8, with segment k's "trunk_out" scale and zero
            point given to segment k+1's "trunk_in": an app copies the bytes on, with no
            float round trip ("image" and "logits" stay float unless `int8_io`).
        model_info: the metadata's "version" (default: "sha256:" and the first 12 hex
            digits of the weights' hash), "author" (default "byot-keras") and "license"
            (default: none).
        allow_other_files: write into an `output_dir` that holds entries no export
            wrote; they are kept. Without it such a folder is refused before any work.

    Returns:
        The manifest (also written to `manifest.json`; its "files" lists every file
        written). An export replaces only the files an earlier export in `output_dir`
        listed; a failed export leaves that earlier export untouched.

    Example:
        >>> from byot_keras import zoo
        >>> model = zoo.alexnet_byot(num_classes=10, width_multiplier=0.125)
        >>> model.input_normalization = {"scale": 1 / 255, "mean": 0.5, "std": 0.25}
        >>> # exit 1's file and model.tflite only (without these options: every exit
        >>> # and the cascade segments too), into the folder "export"
        >>> manifest = export_tflite(model, "export", exits=[1], cascade=False)
        >>> manifest["exits"][0]["files"]["float32"]["file"]
        'exit_1.tflite'
        >>> manifest["exits"][0]["files"]["float32"]["outputs"]
        {'probabilities': [10]}
        >>> manifest["multi_signature"]["files"]["float32"]["file"]
        'model.tflite'
    """
    from byot_keras.backend.export import check_export_backend
    from byot_keras.export.cascade import require_multi_exit

    check_export_backend()  # before any work: torch cannot be traced into a TF graph
    require_multi_exit(model)
    branches = not model.exits_form_a_chain
    if cascade is None:
        cascade = not branches
    elif cascade and branches:
        raise ValueError("This model's exits are side-by-side branches and their gated "
                         "ensemble (method 'one'), not a chain of exits: there is no "
                         "early-exit cascade to write. Export with cascade=False "
                         "(byot-export --nocascade).")
    selected = list(range(1, model.num_exits + 1)) if exits is None else [
        int(model.exit_name(k).split("_")[1]) for k in exits]
    quantizations = check_quantizations(quantizations)
    exit_outputs = check_exit_outputs(exit_outputs)
    calibrated = [q for q in quantizations if q in CALIBRATED]
    if calibrated and representative_data is None:
        raise ValueError(
            f"quantization {calibrated} needs calibration data: pass representative_data "
            "(a few hundred training images, normalised like the training data)."
        )
    input_shape = tuple(model.network.inputs[0].shape[1:])
    check_eval_pair(eval_data)
    for label, data in (("representative_data", representative_data),
                        ("eval_data images", None if eval_data is None else eval_data[0])):
        if data is not None and tuple(np.shape(data)[1:]) != input_shape:
            raise ValueError(f"{label} has shape {np.shape(data)}; the model takes "
                             f"(n, {', '.join(map(str, input_shape))}).")
    if normalization is None:
        normalization = getattr(model, "input_normalization", None)
    normalization = check_normalization(normalization, int(input_shape[-1]))
    num_classes = model.num_classes
    labels = check_labels(labels, num_classes)
    check_export_data(representative_data, eval_data, num_classes, max_calibration_examples)

    options = {
        "quantizations": quantizations, "int8_io": bool(int8_io), "cascade": cascade,
        "multi_signature": multi_signature, "selected": selected,
        "int8_float_classifier": bool(int8_float_classifier),
        "int8_equalize": bool(int8_equalize), "int8_trunk": bool(int8_trunk),
        "exit_outputs": exit_outputs, "normalization": normalization,
        "labels": labels,
        "info": metadata_defaults(model.network.weights, model_info),
    }
    planned = planned_files(model.num_exits, quantizations, exits=selected, cascade=cascade,
                            multi_signature_stem=MULTI_SIGNATURE_STEM if multi_signature
                            else None)
    with ExportFolder(output_dir, planned, allow_other_files=allow_other_files) as folder:
        manifest = _write_export(model, folder, options, representative_data,
                                 max_calibration_examples, eval_data, input_shape)
    return manifest



def check_export_data(representative_data, eval_data, num_classes: int,
                      max_calibration_examples: int = 200) -> None:
    """Calibration and evaluation data an export can use: some examples, finite images,
    labels among the model's classes; else a ValueError naming the problem."""
    if isinstance(max_calibration_examples, bool) or not isinstance(
            max_calibration_examples, int) or max_calibration_examples < 1:
        raise ValueError(f"max_calibration_examples must be an integer >= 1, got "
                         f"{max_calibration_examples!r}.")
    if representative_data is not None:
        images = np.asarray(representative_data[:max_calibration_examples])
        if len(images) == 0:
            raise ValueError("representative_data is empty: int8 calibration needs a few "
                             "hundred typical images.")
        _require_finite(images, "representative_data")
    if eval_data is not None:
        check_eval_pair(eval_data)
        images, labels = np.asarray(eval_data[0]), np.asarray(eval_data[1])
        if len(images) == 0 or len(images) != len(labels):
            raise ValueError(f"eval_data has {len(images)} images and {len(labels)} labels: "
                             "give (images, labels) of the same, non-zero length.")
        _require_finite(images, "eval_data images")
        labels = labels.reshape(len(labels), -1)
        if labels.shape[1] != 1:
            raise ValueError(f"eval_data labels have shape {np.shape(eval_data[1])}; give "
                             "integer class ids of shape (n,).")
        bad = labels[(labels < 0) | (labels >= num_classes) | (labels != np.round(labels))]
        if bad.size:
            raise ValueError(f"eval_data holds label {bad.flat[0]!r}, not a class of this "
                             f"{num_classes}-class model (valid: 0..{num_classes - 1}).")


def _require_finite(images: np.ndarray, label: str) -> None:
    finite = np.isfinite(images.astype(np.float64, copy=False))
    if not finite.all():
        first = int(np.argmin(finite.reshape(len(images), -1).all(axis=1)))
        raise ValueError(f"{label} holds NaN or infinite values (first in example {first}): "
                         "give real, normalised images.")


def _deployed_networks(model, options: dict, calibration) -> tuple[dict, int | None]:
    """The network each quantization is cut from: the model's own, or for "int8" (with
    `int8_equalize`) a copy rescaled for quantization. Also the number of rescaled
    layer pairs (None when not rescaled)."""
    networks = {q: model.network for q in options["quantizations"]}
    pairs = None
    if "int8" in networks and options["int8_equalize"]:
        networks["int8"], pairs = equalize_for_quantization(model.network, calibration)
    return networks, pairs



def _keras_converter(options: dict):
    """`convert` with the export's int8 options: the converter the shared layout calls
    (looked up at call time, so that a test may replace `convert`)."""
    def keras_convert(model, input_name, quantization, representative, *, normalization,
                      probabilities):
        return convert(model, input_name, quantization, representative, options["int8_io"],
                       float_classifier=options["int8_float_classifier"],
                       normalization=normalization, probabilities=probabilities)
    return keras_convert


def _write_export(model, export: ExportFolder, options, representative_data,
                  max_calibration_examples, eval_data, input_shape):
    quantizations, int8_io = options["quantizations"], options["int8_io"]
    float_classifier = options["int8_float_classifier"]
    normalization, output = options["normalization"], options["exit_outputs"]
    calibration = None
    if representative_data is not None:
        calibration = np.asarray(representative_data[:max_calibration_examples], np.float32)
    check_images = (calibration if calibration is not None else
                    np.random.default_rng(0).normal(size=(8, *input_shape)).astype("float32"))
    # The files that take the image take 0..255 pixels: the same images, un-normalised.
    pixel_calibration = None if calibration is None else to_pixels(calibration, normalization)
    pixel_checks = to_pixels(check_images, normalization)
    exits = [{**cost, "files": {}, "segment": {}} for cost in model.exit_costs()]
    files = ExportFiles(export.staging, _keras_converter(options), options,
                        model_name=model.name, num_exits=model.num_exits, eval_data=eval_data)
    networks, equalized_pairs = _deployed_networks(model, options, calibration)
    subs = {q: exit_models(model, networks[q]) for q in quantizations}

    keras_check = model.predict(check_images, verbose=0)
    keras_eval = None if eval_data is None else model.predict(eval_data[0], verbose=0)
    for k, entry in enumerate(exits, start=1):
        if k not in options["selected"]:
            continue
        name = f"exit_{k}"
        for quantization in quantizations:
            info, runner = files.exit_file(k, subs[quantization][k - 1], quantization,
                                           pixel_calibration,
                                           None if keras_eval is None else keras_eval[name])
            if quantization == "float32":
                info.update(_float_check(runner, pixel_checks, keras_check[name], output))
            entry["files"][quantization] = info
        if eval_data is not None:
            entry["keras_accuracy"] = files.keras_accuracy(keras_eval[name])

    if options["cascade"]:
        files.cascade_files(exits, {q: cascade_models(model, networks[q])
                                    for q in quantizations}, calibration,
                            int8_trunk=options["int8_trunk"],
                            trunk_interface=int8_trunk_interface)
    multi = None
    if options["multi_signature"]:
        multi = _write_multi_signature(model, files, subs, pixel_calibration, options,
                                       pixel_checks, keras_check)
    files.write_labels()
    manifest = {
        **manifest_header(
            model_name=model.name, num_classes=model.num_classes,
            num_exits=model.num_exits, input_shape=input_shape, options=options,
            metadata_description=(
                "Every .tflite file carries TFLite Model Metadata (read by MediaPipe Tasks "
                "and Android Studio): name, description, version, author, the image "
                "input's colour space and normalisation, each output's meaning, "
                "labels.txt packed in.")),
        "int8_trunk": bool(options["cascade"] and "int8" in quantizations
                           and options["int8_trunk"]),
        "cascade": cascade_entry(options["cascade"]),
        "multi_signature": multi,
        "exits": exits,
    }
    if calibration is not None and any(q in CALIBRATED for q in quantizations):
        manifest["calibration"] = {"examples": int(len(calibration))}
        if "int8" in quantizations:
            manifest["calibration"].update({
                "int8_float_classifier": bool(float_classifier and not int8_io),
                "int8_equalized_layer_pairs": int(equalized_pairs or 0),
            })
    if eval_data is not None:
        manifest["eval_examples"] = int(len(eval_data[1]))
    return export.write_manifest(manifest)


def _float_check(runner: LiteRTModel, images: np.ndarray, keras_logits: np.ndarray,
                 output: str) -> dict:
    """The file's largest deviation from the Keras exit (its softmax for
    "probabilities") on `images` (the file's inputs), and the size of the values."""
    from byot_keras.inference import softmax

    reference = np.asarray(keras_logits, np.float64)
    if output == PROBABILITIES:
        reference = softmax(reference)
    got = runner.predict(image=images)[output]
    return {"max_abs_diff": float(np.abs(got - reference).max()),
            "output_scale": float(np.abs(reference).max())}


def _write_multi_signature(model, writer, subs, calibration, options, check_images,
                           keras_check) -> dict:
    signatures = list(model.exit_names)
    output = options["exit_outputs"]
    files = {}
    for quantization in options["quantizations"]:
        flatbuffer = convert_signatures(
            dict(zip(signatures, subs[quantization])), IMAGE, quantization, calibration,
            options["int8_io"], float_classifier=options["int8_float_classifier"],
            normalization=options["normalization"],
            probabilities=output == PROBABILITIES)
        main = metadata_lib.subgraph_signature(flatbuffer, 0)
        flatbuffer = add_export_metadata(
            flatbuffer, options, f"{model.name} all exits",
            f"All {model.num_exits} exits of {model.name} (byot-keras), one signature "
            f"per exit ('exit_1' ... 'exit_{model.num_exits}'), sharing their weights. "
            f"{quantization_text(quantization, options['int8_io'])}. This metadata "
            f"describes subgraph 0, signature '{main}', which metadata-based tools run; "
            "the other signatures take and return the same tensors.", main)
        info = writer.write(file_name(MULTI_SIGNATURE_STEM, quantization), flatbuffer)
        info["metadata_signature"] = main
        if quantization == "float32":
            checks = [_float_check(LiteRTModel(flatbuffer, signature=name), check_images,
                                   keras_check[name], output) for name in signatures]
            info["max_abs_diff"] = max(c["max_abs_diff"] for c in checks)
            info["output_scale"] = max(c["output_scale"] for c in checks)
        files[quantization] = info
    return {
        "description": "One file with one signature per exit ('exit_1' ... 'exit_N'; "
                       f"input 'image', output '{output}'), the exits sharing their "
                       "weights. Its metadata describes `metadata_signature`.",
        "signatures": signatures,
        "files": files,
    }
