"""Convert a multi-exit model to TFLite: one file per exit, the early-exit cascade, one
multi-signature file, and a manifest an app can read. Conversion goes through a SavedModel
with one signature per entry point, builtin ops only (a graph that would need Flex ops
fails clearly).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence

import keras
import numpy as np

from byot_keras.export.cascade import (
    IMAGE,
    LOGITS,
    TRUNK_IN,
    TRUNK_OUT,
    cascade_models,
    exit_models,
)
from byot_keras.export.equalize import equalize_for_quantization
from byot_keras.export.layout import CASCADE, LABELS, ExportFolder
from byot_keras.export.litert import SIGNATURE, LiteRTModel, operator_names, signature_outputs

QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8")
# TFLite's 16x8 mode (int16 activations, int8 weights): far closer to float than int8, but
# LiteRT runs it with reference CPU kernels (measured ~20x slower than float32 on x86):
# for accelerators that support it, or where int8's accuracy is not enough.
EXPERIMENTAL_QUANTIZATIONS = ("int16x8",)
CALIBRATED = ("int8", "int16x8")
MULTI_SIGNATURE_STEM = "model"
MANIFEST_VERSION = 1


def manifest_input(input_shape, quantizations: Sequence[str], int8_io: bool,
                   normalization: dict | None) -> dict:
    """The manifest's `input` entry: what an app feeds every file's `image` tensor."""
    return {
        "name": IMAGE,
        "shape": [None, *[int(d) for d in input_shape]],
        "dtype": "int8" if ("int8" in quantizations and int8_io) else "float32",
        "layout": "NHWC",
        "normalization": normalization or {"scale": 1.0, "mean": 0.0, "std": 1.0},
    }


def file_name(stem: str, quantization: str) -> str:
    """`exit_1.tflite` for float32, `exit_1_int8.tflite` etc. for the others."""
    return f"{stem}.tflite" if quantization == "float32" else f"{stem}_{quantization}.tflite"


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
            float_classifier: bool = True) -> bytes:
    """One Keras model (single input, dict or tensor output) to a .tflite flatbuffer with
    the signature "serving_default".

    Args:
        input_name: the signature's input name.
        quantization: "float32", "float16" (float16 weights), "dynamic_int8" (int8
            weights, float activations), "int8" (full integer, calibrated on
            `representative`: a batch of typical inputs, e.g. 100-500 training images) or
            "int16x8" (int16 activations and int8 weights, calibrated likewise).
        int8_io: with "int8", make the file's inputs and outputs int8 too (the default
            keeps float32 inputs/outputs with (de)quantize ops at the edges).
        float_classifier: with "int8" and float outputs, compute the op that produces
            "logits" (the exit's final Dense layer: num_classes x features weights) in
            float. int8 logits have 256 levels, so close top-2 scores tie and the top-1
            flips; the rest of the graph stays int8.

    Example:
        >>> from byot_keras import zoo
        >>> model = zoo.resnet18_byot(num_classes=10, width_multiplier=0.125)
        >>> flatbuffer = convert(model.exit_model(1), "image")
        >>> LiteRTModel(flatbuffer).output_names
        ['logits']
    """
    return convert_signatures({SIGNATURE: keras_model}, input_name, quantization,
                              representative, int8_io, float_classifier=float_classifier)


def _serving_function(keras_model: keras.Model):
    def serve(inputs):
        outputs = keras_model(inputs, training=False)
        return dict(outputs) if isinstance(outputs, dict) else {LOGITS: outputs}

    return serve


def convert_signatures(models: Mapping[str, keras.Model], input_name: str,
                       quantization: str = "float32",
                       representative: np.ndarray | None = None, int8_io: bool = False, *,
                       float_classifier: bool = True) -> bytes:
    """Several Keras models with one input each, as one .tflite file with one signature
    per model (`{signature name: model}`). Models built from the same layers share their
    weights in the file. Arguments as in `convert`; int8 calibration runs every
    signature on all of `representative`.

    Example:
        >>> from byot_keras import zoo
        >>> model = zoo.resnet18_byot(num_classes=10, width_multiplier=0.125)
        >>> flatbuffer = convert_signatures(
        ...     {"exit_1": model.exit_model(1), "exit_2": model.exit_model(2)}, "image")
        >>> LiteRTModel(flatbuffer, signature="exit_2").signature_names
        ['exit_1', 'exit_2']
    """
    import tensorflow as tf

    (quantization,) = check_quantizations([quantization])
    if not models:
        raise ValueError("Give at least one model to convert.")
    if quantization in CALIBRATED and representative is None:
        raise ValueError(
            f"Quantization '{quantization}' needs calibration data: pass representative "
            "data (a few hundred typical inputs, e.g. training images) or choose "
            "float16/dynamic_int8."
        )
    keys = list(models)
    samples = None if representative is None else np.asarray(representative, np.float32)

    def calibration():
        for key in keys:
            for sample in samples:
                feed = {input_name: sample[None]}
                yield feed if len(keys) == 1 else (key, feed)

    names = ", ".join(model.name for model in models.values())
    keep_logits_float = quantization == "int8" and float_classifier and not int8_io
    with tempfile.TemporaryDirectory(prefix="byot-savedmodel-") as saved_model:
        archive = keras.export.ExportArchive()
        for key, keras_model in models.items():
            archive.track(keras_model)
            spec = tf.TensorSpec(keras_model.inputs[0].shape, tf.float32, name=input_name)
            archive.add_endpoint(key, _serving_function(keras_model), input_signature=[spec])
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
        if quantization == "int8" and not keep_logits_float:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int8_io:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        try:
            if keep_logits_float:
                flatbuffer = _quantize_all_but_logits(converter, calibration)
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
    return flatbuffer


def _quantize_all_but_logits(converter, calibration) -> bytes:
    """Full-integer quantization except the ops that compute each signature's "logits"
    (TFLite's selective quantization: calibrate, then quantize with those nodes
    denylisted). Raises if a signature's logits still come out of an int8 op."""
    import tensorflow as tf

    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter,
                                                         debug_dataset=calibration)
    logits = signature_outputs(debugger.calibrated_model, LOGITS)
    if not logits:
        raise ValueError(f"No signature has an output named '{LOGITS}'.")
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=sorted({tensor for tensor, _ in logits.values()}))
    flatbuffer = debugger.get_nondebug_quantized_model()
    still_quantized = {key: producer for key, (_, producer) in
                       signature_outputs(flatbuffer, LOGITS).items()
                       if producer in (None, "DEQUANTIZE")}
    if still_quantized:
        raise RuntimeError(f"Could not keep the logits of {sorted(still_quantized)} in "
                           "float; export with int8_float_classifier=False.")
    return flatbuffer


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


def _top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


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
    cascade: bool | None = None,
    multi_signature: bool = True,
    exits: Sequence[int] | None = None,
    max_calibration_examples: int = 200,
    int8_float_classifier: bool = True,
    int8_equalize: bool = True,
    int8_trunk: bool = True,
    allow_other_files: bool = False,
) -> dict:
    """Writes per-exit files, the cascade, the multi-signature file, `labels.txt` and
    `manifest.json`.

    Files under `output_dir` (for quantization q, suffix `_q` unless float32):
    `exit_<k>.tflite` (input "image", output "logits"), `cascade/segment_<k>.tflite`
    (input "image" for k = 1, else "trunk_in"; outputs "logits" and, but for the last,
    "trunk_out"), both with the signature "serving_default", and `model.tflite`: one
    signature per exit, "exit_1" ... "exit_N" (input "image", output "logits"), sharing
    the weights. All have a dynamic batch size.

    Args:
        model: a multi-exit `SelfDistillationModel`.
        quantizations: any of "float32", "float16", "dynamic_int8", "int8" and the
            experimental "int16x8" (int16 activations, int8 weights: closest to float,
            but slow on CPUs without 16x8 kernels).
        representative_data: typical inputs (already normalised like training data),
            needed for "int8" and "int16x8"; the first `max_calibration_examples` are
            used.
        int8_io: int8 inputs/outputs for the "int8" files.
        eval_data: `(images, labels)` to measure each exit file's top-1 accuracy (and
            its agreement with the Keras model) into the manifest.
        labels: class names for `labels.txt` (default "0", "1", ...).
        normalization: what an app must do to raw pixels before the model, recorded in
            the manifest, e.g. `{"scale": 1/255, "mean": [...], "std": [...]}`.
        cascade: also write the cascade segments (always all of them); default: yes,
            unless the exits are side-by-side branches (`method="one"`), which form
            no cascade.
        multi_signature: also write `model[_q].tflite` (always every exit).
        exits: which exits get their own `exit_<k>` file (1-based); default all.
        int8_float_classifier: in "int8" files with float outputs, compute each exit's
            final Dense layer (the logits) in float: int8 logits tie on close top-2
            scores. Costs the float weights of that layer (num_classes x features).
        int8_equalize: before int8 calibration, rescale the channels of every
            depthwise -> 1x1 convolution pair (the exit heads) so that one int8 scale
            suits them all; the float function is unchanged (`equalize.py`).
        int8_trunk: the "int8" cascade segments take and return their trunk tensors
            ("trunk_in", "trunk_out") as int8, with segment k's "trunk_out" scale and zero
            point given to segment k+1's "trunk_in": an app copies the bytes on, with no
            float round trip ("image" and "logits" stay float unless `int8_io`).
        allow_other_files: write into an `output_dir` that holds entries no export
            wrote; they are kept. Without it such a folder is refused before any work.

    Returns:
        The manifest (also written to `manifest.json`; its "files" lists every file
        written). An export replaces only the files an earlier export in `output_dir`
        listed; a failed export leaves that earlier export untouched.

    Example:
        >>> from byot_keras import zoo
        >>> model = zoo.resnet18_byot(num_classes=10, width_multiplier=0.125)
        >>> manifest = export_tflite(model, "/tmp/doc_export")
        >>> [e["files"]["float32"]["file"] for e in manifest["exits"]][:2]
        ['exit_1.tflite', 'exit_2.tflite']
        >>> manifest["multi_signature"]["files"]["float32"]["file"]
        'model.tflite'
    """
    from byot_keras.export.cascade import require_multi_exit

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
    calibrated = [q for q in quantizations if q in CALIBRATED]
    if calibrated and representative_data is None:
        raise ValueError(
            f"quantization {calibrated} needs calibration data: pass representative_data "
            "(a few hundred training images, normalised like the training data)."
        )
    input_shape = tuple(model.network.inputs[0].shape[1:])
    for label, data in (("representative_data", representative_data),
                        ("eval_data images", None if eval_data is None else eval_data[0])):
        if data is not None and tuple(np.shape(data)[1:]) != input_shape:
            raise ValueError(f"{label} has shape {np.shape(data)}; the model takes "
                             f"(n, {', '.join(map(str, input_shape))}).")
    num_classes = model.num_classes
    labels = [str(i) for i in range(num_classes)] if labels is None else list(labels)
    if len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels for a {num_classes}-class model.")
    check_export_data(representative_data, eval_data, num_classes, max_calibration_examples)

    options = {
        "quantizations": quantizations, "int8_io": bool(int8_io), "cascade": cascade,
        "multi_signature": multi_signature, "selected": selected,
        "int8_float_classifier": bool(int8_float_classifier),
        "int8_equalize": bool(int8_equalize), "int8_trunk": bool(int8_trunk),
    }
    planned = planned_files(model.num_exits, selected, quantizations, cascade,
                            multi_signature)
    with ExportFolder(output_dir, planned, allow_other_files=allow_other_files) as folder:
        manifest = _write_export(model, folder, options, representative_data,
                                 max_calibration_examples, eval_data, labels, normalization,
                                 input_shape)
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


def planned_files(num_exits: int, selected: Sequence[int], quantizations: Sequence[str],
                  cascade: bool, multi_signature: bool) -> list[str]:
    """The relative paths an export with these options writes (besides the manifest)."""
    files = [LABELS]
    for quantization in quantizations:
        files += [file_name(f"exit_{k}", quantization) for k in selected]
        if cascade:
            files += [f"{CASCADE}/{file_name(f'segment_{k}', quantization)}"
                      for k in range(1, num_exits + 1)]
        if multi_signature:
            files.append(file_name(MULTI_SIGNATURE_STEM, quantization))
    return files


class _Writer:
    """Writes converted files into the staging folder and describes them."""

    def __init__(self, folder: str):
        self.folder = folder

    def write(self, relative: str, flatbuffer: bytes) -> dict:
        path = os.path.join(self.folder, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(flatbuffer)
        return {"file": relative, "bytes": len(flatbuffer)}


def _deployed_networks(model, options: dict, calibration) -> tuple[dict, int | None]:
    """The network each quantization is cut from: the model's own, or for "int8" (with
    `int8_equalize`) a copy rescaled for quantization. Also the number of rescaled
    layer pairs (None when not rescaled)."""
    networks = {q: model.network for q in options["quantizations"]}
    pairs = None
    if "int8" in networks and options["int8_equalize"]:
        networks["int8"], pairs = equalize_for_quantization(model.network, calibration)
    return networks, pairs


def _write_export(model, export: ExportFolder, options, representative_data,
                  max_calibration_examples, eval_data, labels, normalization, input_shape):
    folder = export.staging
    quantizations, int8_io = options["quantizations"], options["int8_io"]
    float_classifier = options["int8_float_classifier"]
    calibration = None
    if representative_data is not None:
        calibration = np.asarray(representative_data[:max_calibration_examples], np.float32)
    check_images = (calibration if calibration is not None else
                    np.random.default_rng(0).normal(size=(8, *input_shape)).astype("float32"))
    costs = model.exit_costs()
    exits = [{**cost, "files": {}, "segment": {}} for cost in costs]
    writer = _Writer(folder)
    networks, equalized_pairs = _deployed_networks(model, options, calibration)
    subs = {q: exit_models(model, networks[q]) for q in quantizations}

    keras_check = model.predict(check_images, verbose=0)
    keras_eval = None if eval_data is None else model.predict(eval_data[0], verbose=0)
    for k, entry in enumerate(exits, start=1):
        if k not in options["selected"]:
            continue
        for quantization in quantizations:
            flatbuffer = convert(subs[quantization][k - 1], IMAGE, quantization, calibration,
                                 int8_io, float_classifier=float_classifier)
            info = writer.write(file_name(f"exit_{k}", quantization), flatbuffer)
            runner = LiteRTModel(flatbuffer)
            if quantization == "float32":
                info.update(_float_check(runner, check_images, keras_check[f"exit_{k}"]))
            if eval_data is not None:
                got = runner.predict(image=eval_data[0])[LOGITS]
                info["accuracy"] = _top1(got, eval_data[1])
                info["agreement_with_keras"] = float(np.mean(
                    got.argmax(-1) == keras_eval[f"exit_{k}"].argmax(-1)))
            entry["files"][quantization] = info
        if eval_data is not None:
            entry["keras_accuracy"] = _top1(keras_eval[f"exit_{k}"], eval_data[1])

    if options["cascade"]:
        _write_cascade(model, writer, exits, networks, calibration, options)
    multi = None
    if options["multi_signature"]:
        multi = _write_multi_signature(model, writer, subs, calibration, options,
                                       check_images, keras_check)

    with open(os.path.join(folder, LABELS), "w") as f:
        f.write("\n".join(labels) + "\n")
    manifest = {
        "format_version": MANIFEST_VERSION,
        "model": model.name,
        "num_classes": model.num_classes,
        "num_exits": model.num_exits,
        "signature": SIGNATURE,
        "input": manifest_input(input_shape, quantizations, int8_io, normalization),
        "labels_file": LABELS,
        "quantizations": quantizations,
        "int8_io": bool(int8_io),
        "int8_trunk": bool(options["cascade"] and "int8" in quantizations
                           and options["int8_trunk"]),
        "cascade": {
            "description": "Run segment_1 on the image, then segment_k on segment_(k-1)'s "
                           "'trunk_out'; each segment's 'logits' is exit k's answer.",
        } if options["cascade"] else None,
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


def _float_check(runner: LiteRTModel, images: np.ndarray, reference: np.ndarray) -> dict:
    got = runner.predict(image=images)[LOGITS]
    return {"max_abs_diff": float(np.abs(got - reference).max()),
            "logit_scale": float(np.abs(reference).max())}


def _write_cascade(model, writer, exits, networks, calibration, options):
    segments = {q: cascade_models(model, networks[q]) for q in options["quantizations"]}
    segment_inputs = calibration
    trunk_quantization = None  # int8 "trunk_out" (scale, zero point) of the last segment
    for k, entry in enumerate(exits):
        input_name = IMAGE if k == 0 else TRUNK_IN
        for quantization in options["quantizations"]:
            flatbuffer = convert(segments[quantization][k], input_name, quantization,
                                 segment_inputs, options["int8_io"],
                                 float_classifier=options["int8_float_classifier"])
            if quantization == "int8" and options["int8_trunk"]:
                flatbuffer = int8_trunk_interface(flatbuffer, trunk_quantization)
                if k + 1 < len(exits):
                    trunk_quantization = LiteRTModel(flatbuffer).output_details[TRUNK_OUT][
                        "quantization"]
            info = writer.write(f"{CASCADE}/{file_name(f'segment_{k + 1}', quantization)}",
                                flatbuffer)
            info.update(LiteRTModel(flatbuffer).tensor_shapes())
            entry["segment"][quantization] = info
        segment = segments[options["quantizations"][0]][k]
        if segment_inputs is not None and TRUNK_OUT in segment.output:
            # The trunk is the same function in every network copy (rescaling only
            # touches depthwise -> 1x1 pairs and preserves outputs).
            segment_inputs = segment.predict(segment_inputs, verbose=0)[TRUNK_OUT]


def _write_multi_signature(model, writer, subs, calibration, options, check_images,
                           keras_check) -> dict:
    signatures = list(model.exit_names)
    files = {}
    for quantization in options["quantizations"]:
        flatbuffer = convert_signatures(
            dict(zip(signatures, subs[quantization])), IMAGE, quantization, calibration,
            options["int8_io"], float_classifier=options["int8_float_classifier"])
        info = writer.write(file_name(MULTI_SIGNATURE_STEM, quantization), flatbuffer)
        if quantization == "float32":
            checks = [_float_check(LiteRTModel(flatbuffer, signature=name), check_images,
                                   keras_check[name]) for name in signatures]
            info["max_abs_diff"] = max(c["max_abs_diff"] for c in checks)
            info["logit_scale"] = max(c["logit_scale"] for c in checks)
        files[quantization] = info
    return {
        "description": "One file with one signature per exit ('exit_1' ... 'exit_N'; "
                       "input 'image', output 'logits'), the exits sharing their weights.",
        "signatures": signatures,
        "files": files,
    }
