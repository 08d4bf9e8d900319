"""TFLite files from a tf_keras multi-exit network (a QAT or pruned twin), with the same
layout, names, metadata and manifest as `byot_keras.export.export_tflite`:
`exit_<k>[_q].tflite` (image classifiers: 0..255 RGB pixels in, "probabilities" out),
`cascade/segment_<k>[_q].tflite`, `labels.txt`, `manifest.json`, signature
`serving_default`, input `image` / `trunk_in`, outputs `probabilities` / `logits` /
`trunk_out`.

tfmot wraps layers and renames them (`quant_<name>`, `prune_low_magnitude_<name>`);
layers are looked up under either name. Conversion goes through a concrete function
whose variables are held by a plain `tf.Module` (saving the tf_keras model itself would
re-trace every layer and take minutes). A QAT network's int8 files take their ranges
from its fake-quantization ops; the few tensors without one (a segment's `trunk_in`, the
inside of a BatchNorm that follows no convolution) are calibrated on representative data.

Example:
    >>> from byot_keras.compress import export
    >>> export.unwrapped_name("quant_exit_1")
    'exit_1'
"""

from __future__ import annotations

import gzip
import os
import warnings
from collections.abc import Sequence

import numpy as np

from byot_keras.compress import extra
from byot_keras.export.cascade import IMAGE, LOGITS, PROBABILITIES, TRUNK_IN, TRUNK_OUT
from byot_keras.export.layout import CASCADE, LABELS, ExportFolder
from byot_keras.export.litert import SIGNATURE, LiteRTModel
from byot_keras.export.metadata import MIN_PARSER_VERSION
from byot_keras.export.tflite import (
    MANIFEST_VERSION,
    QUANTIZATIONS,
    add_export_metadata,
    check_eval_pair,
    check_exit_outputs,
    check_labels,
    file_name,
    manifest_input,
    metadata_defaults,
    pin_pixel_quantization,
    quantization_text,
)
from byot_keras.normalization import check_normalization, pixel_affine, to_pixels

WRAPPER_PREFIXES = ("quant_", "prune_low_magnitude_")
# Ops that may compute in float in a full-integer file: the conversions at its edges.
_EDGE_OPS = {"QUANTIZE", "DEQUANTIZE", "DELEGATE"}


def unwrapped_name(name: str) -> str:
    """A layer's zoo name without tfmot's wrapper prefix."""
    for prefix in WRAPPER_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def find_layer(network, name: str):
    """The layer called `name`, or the tfmot wrapper around it."""
    for layer in network.layers:
        if unwrapped_name(layer.name) == name:
            return layer
    raise ValueError(f"'{network.name}' has no layer '{name}' (nor a tfmot wrapper of it).")


def exit_names(network) -> list[str]:
    """`exit_1` ... `exit_N` of a multi-exit network's output dict, shallow to deep."""
    outputs = network.output if isinstance(network.output, dict) else {}
    names = sorted((n for n in outputs if n.startswith("exit_")),
                   key=lambda n: int(n.split("_")[1]))
    if not names:
        raise ValueError(f"'{network.name}' has no exit_k outputs: not a multi-exit network.")
    return names


def exit_model(network, name: str):
    """A tf_keras model from the image to one exit's logits (only the layers it needs)."""
    tf_keras = extra.tf_keras()
    return tf_keras.Model(network.inputs, find_layer(network, name).output,
                          name=f"{network.name}_{name}")


def exit_sections(network) -> list[int]:
    """For each exit, the trunk section (`section_k` layer) its classifier hangs off."""
    sections = []
    for name in exit_names(network):
        used = [int(n.split("_")[1]) for n in
                (unwrapped_name(layer.name) for layer in exit_model(network, name).layers)
                if n.startswith("section_")]
        if not used:
            raise ValueError(f"{name} depends on no 'section_k' layer: cannot cut a cascade.")
        sections.append(max(used))
    return sections


def segment_models(network) -> list:
    """The early-exit cascade's segments (as `byot_keras.export.cascade_models`): segment
    k maps segment k-1's trunk map (the image for k = 1) to `logits` and `trunk_out`."""
    tf_keras = extra.tf_keras()
    names, sections = exit_names(network), exit_sections(network)
    segments, previous = [], network.inputs[0]
    for k, (name, section) in enumerate(zip(names, sections), start=1):
        outputs = {LOGITS: find_layer(network, name).output}
        trunk = find_layer(network, f"section_{section}").output
        if k < len(names):
            outputs[TRUNK_OUT] = trunk
        segments.append(tf_keras.Model(previous, outputs, name=f"segment_{k}"))
        previous = trunk
    return segments


def float_ops(flatbuffer: bytes) -> list[str]:
    """Ops of a .tflite file that compute in float32 (besides (de)quantizing its edges)."""
    interpreter = LiteRTModel(flatbuffer).interpreter
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    return sorted({op["op_name"] for op in interpreter._get_ops_details()
                   if op["op_name"] not in _EDGE_OPS
                   and any(dtypes.get(i) == np.float32 for i in op["outputs"])})


def convert(model, input_name: str, quantization: str = "float32",
            representative: np.ndarray | None = None, int8_io: bool = False,
            qat: bool = False, *, normalization: dict | None = None,
            probabilities: bool = False) -> bytes:
    """One tf_keras model (single input, tensor or dict output) to a .tflite flatbuffer.

    `quantization`, `int8_io`, `normalization` and `probabilities` as in
    `byot_keras.export.convert`. With `qat=True` ("int8" only) the ranges come from the
    model's fake-quantization ops; `representative` data (the file's inputs), if given,
    calibrates only the tensors that have none, such as the in-graph normalisation and
    the softmax (without it, such a file raises).
    """
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization '{quantization}'. Valid: "
                         f"{', '.join(QUANTIZATIONS)}.")
    if qat and quantization != "int8":
        raise ValueError("A quantization-aware trained model converts to 'int8' only.")
    if quantization == "int8" and representative is None and not qat:
        raise ValueError("Full-integer int8 needs calibration data: pass representative "
                         "data (a few hundred typical inputs).")
    spec = tf.TensorSpec(model.inputs[0].shape, tf.float32, name=input_name)
    normalization = check_normalization(normalization) if input_name == IMAGE else None
    affine = (None if normalization is None else
              pixel_affine(normalization, int(model.inputs[0].shape[-1])))

    @tf.function(input_signature=[spec])
    def serve(inputs):
        if affine is not None:  # 0..255 pixels -> (pixel / 255 - mean) / std
            inputs = inputs * affine[0] + affine[1]
        outputs = model(inputs, training=False)
        outputs = dict(outputs) if isinstance(outputs, dict) else {LOGITS: outputs}
        if probabilities:
            outputs[PROBABILITIES] = tf.nn.softmax(outputs.pop(LOGITS), axis=-1)
        return outputs

    holder = tf.Module()
    holder.model_variables = list(model.variables)

    def run(calibrate: bool) -> bytes:
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [serve.get_concrete_function()], holder)
        if quantization != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization == "int8":
            if calibrate:
                samples = np.asarray(representative, np.float32)
                converter.representative_dataset = lambda: ({input_name: s[None]}
                                                            for s in samples)
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int8_io:  # uint8 image and probabilities, as in byot_keras.export
                converter.inference_input_type = tf.uint8 if input_name == IMAGE else tf.int8
                converter.inference_output_type = tf.uint8 if probabilities else tf.int8
        try:
            with warnings.catch_warnings():  # the calibrator's own tf.lite.Interpreter
                warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is "
                                        "deprecated")
                return converter.convert()
        except Exception as error:
            raise RuntimeError(f"TFLite conversion of '{model.name}' ({quantization}"
                               f"{', QAT' if qat else ''}) failed: {error}") from error

    # With data, a QAT model is calibrated too: the converter keeps every range its
    # fake-quantization ops give (checked: identical scales with and without data) and
    # only fills the tensors that have none (e.g. a segment's trunk_in).
    flatbuffer = run(calibrate=quantization == "int8" and representative is not None)
    if qat and representative is None:
        left_in_float = float_ops(flatbuffer)
        if left_in_float:
            raise RuntimeError(
                f"'{model.name}': ops {left_in_float} have no quantization range from QAT; "
                "pass representative data to calibrate them.")
    flex = [op for op in LiteRTModel(flatbuffer).op_names() if op.lower().startswith("flex")]
    if flex:
        raise RuntimeError(f"'{model.name}' converted with Flex ops {flex}; the deployment "
                           "kit allows builtin TFLite ops only.")
    if quantization == "int8" and int8_io and normalization is not None:
        flatbuffer = pin_pixel_quantization(flatbuffer)
    return flatbuffer


def _top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def export_network(
    network,
    output_dir: str,
    *,
    model_name: str,
    costs: Sequence[dict],
    quantizations: Sequence[str] = ("float32",),
    qat: bool = False,
    representative_data: np.ndarray | None = None,
    eval_data: tuple[np.ndarray, np.ndarray] | None = None,
    labels: Sequence[str] | None = None,
    normalization: dict | None = None,
    int8_io: bool = False,
    cascade: bool = True,
    exit_outputs: str = PROBABILITIES,
    model_info: dict | None = None,
    extra_manifest: dict | None = None,
    max_calibration_examples: int = 200,
    allow_other_files: bool = False,
) -> dict:
    """Writes every exit's file and the cascade for a tf_keras multi-exit network.

    Args:
        network: the tf_keras network (outputs `exit_k`, `feature_k`), e.g. a QAT model
            or a stripped pruned twin.
        model_name: the name recorded in the manifest.
        costs: per exit the cost entry of the Keras 3 model (`model.exit_costs()`); the
            architecture is the same.
        qat: the network has fake quantization; quantizations must be ["int8"].
        Other arguments as in `byot_keras.export.export_tflite`; every file also records
        `gzip_bytes` (what compresses away: pruning's zeros).

    Returns:
        The manifest, also written to `manifest.json`; as with `export_tflite`, only an
        earlier export's files are replaced and a failed export leaves it untouched.
    """
    quantizations = list(dict.fromkeys([quantizations] if isinstance(quantizations, str)
                                       else quantizations))
    unknown = [q for q in quantizations if q not in QUANTIZATIONS]
    if unknown or not quantizations:
        raise ValueError(f"Unknown quantization {unknown or quantizations}. Valid: "
                         f"{', '.join(QUANTIZATIONS)}.")
    if qat and quantizations != ["int8"]:
        raise ValueError("A quantization-aware trained network exports 'int8' files only.")
    if "int8" in quantizations and representative_data is None and not qat:
        raise ValueError("quantization 'int8' needs representative_data (training images).")
    exit_outputs = check_exit_outputs(exit_outputs)
    names = exit_names(network)
    if len(costs) != len(names):
        raise ValueError(f"{len(costs)} cost entries for a {len(names)}-exit network.")
    num_classes = int(network.output[names[-1]].shape[-1])
    labels = check_labels(labels, num_classes)
    check_eval_pair(eval_data)
    input_shape = [int(d) for d in network.inputs[0].shape[1:]]
    options = {"normalization": check_normalization(normalization, input_shape[-1]),
               "labels": labels, "exit_outputs": exit_outputs,
               "info": metadata_defaults(network.weights, model_info), "model": model_name,
               "int8_io": bool(int8_io)}
    calibration = (None if representative_data is None else
                   np.asarray(representative_data[:max_calibration_examples], np.float32))
    planned = planned_files(len(names), quantizations, cascade)
    with ExportFolder(output_dir, planned, allow_other_files=allow_other_files,
                      command="byot-qat/byot-prune") as folder:
        exits = _write_files(network, folder.staging, names, costs, quantizations, qat,
                             calibration, eval_data, options, cascade)
        info = options["info"]
        manifest = {
            "format_version": MANIFEST_VERSION,
            "model": model_name,
            "num_classes": num_classes,
            "num_exits": len(names),
            "signature": SIGNATURE,
            "input": manifest_input(input_shape, quantizations, int8_io,
                                    options["normalization"]),
            "exit_outputs": exit_outputs,
            "labels_file": LABELS,
            "metadata": {
                "description": "Every .tflite file carries TFLite Model Metadata, labels.txt "
                               "packed in (as byot_keras.export writes it).",
                "version": info["version"], "author": info["author"],
                "license": info["license"], "min_parser_version": MIN_PARSER_VERSION,
            },
            "quantizations": quantizations,
            "int8_io": bool(int8_io),
            "cascade": {
                "description": "Run segment_1 on the image (as the exit files take it), "
                               "then segment_k on segment_(k-1)'s 'trunk_out'; each "
                               "segment's 'logits' is exit k's answer.",
            } if cascade else None,
            "exits": exits,
            **(extra_manifest or {}),
        }
        if eval_data is not None:
            manifest["eval_examples"] = int(len(eval_data[1]))
        with open(os.path.join(folder.staging, LABELS), "w") as f:
            f.write("\n".join(options["labels"]) + "\n")
        folder.write_manifest(manifest)
    return manifest


def check_output_folder(output_dir: str, num_exits: int, quantizations: Sequence[str],
                        cascade: bool, allow_other_files: bool = False) -> None:
    """Refuses, before any fine-tuning, an `output_dir` that `export_network` with these
    options would not write into (see `byot_keras.export.layout`)."""
    ExportFolder(output_dir, planned_files(num_exits, quantizations, cascade),
                 allow_other_files=allow_other_files, command="byot-qat/byot-prune")


def planned_files(num_exits: int, quantizations: Sequence[str], cascade: bool) -> list[str]:
    """The relative paths `export_network` writes (besides the manifest)."""
    files = [LABELS]
    for quantization in quantizations:
        for k in range(1, num_exits + 1):
            files.append(file_name(f"exit_{k}", quantization))
            if cascade:
                files.append(f"{CASCADE}/{file_name(f'segment_{k}', quantization)}")
    return files


def _write_files(network, folder, names, costs, quantizations, qat, calibration, eval_data,
                 options, cascade) -> list[dict]:
    def write(relative: str, flatbuffer: bytes) -> dict:
        path = os.path.join(folder, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(flatbuffer)
        return {"file": relative, "bytes": len(flatbuffer),
                "gzip_bytes": len(gzip.compress(flatbuffer, compresslevel=9))}

    normalization, output = options["normalization"], options["exit_outputs"]
    int8_io, model_name = options["int8_io"], options["model"]
    pixel_calibration = None if calibration is None else to_pixels(calibration, normalization)
    exits = [{**cost, "files": {}, "segment": {}} for cost in costs]
    keras_eval = None if eval_data is None else network.predict(eval_data[0], verbose=0)
    pixel_eval = None if eval_data is None else to_pixels(eval_data[0], normalization)
    for k, (name, entry) in enumerate(zip(names, exits), start=1):
        sub = exit_model(network, name)
        for quantization in quantizations:
            flatbuffer = convert(sub, IMAGE, quantization, pixel_calibration, int8_io, qat,
                                 normalization=normalization,
                                 probabilities=output == PROBABILITIES)
            flatbuffer = add_export_metadata(
                flatbuffer, options, f"{model_name} {name}",
                f"Exit {k} of {len(names)} of {model_name}, a multi-exit network "
                f"(byot-keras), as an image classifier. "
                f"{quantization_text(quantization, int8_io)}"
                f"{', quantization-aware trained' if qat else ''}. Input: an RGB image; "
                f"output: {output} of the classes.", name)
            info = write(file_name(name, quantization), flatbuffer)
            runner = LiteRTModel(flatbuffer)
            info.update(runner.tensor_facts())
            if eval_data is not None:
                got = runner.predict(image=pixel_eval)[output]
                info["accuracy"] = _top1(got, eval_data[1])
                info["agreement_with_keras"] = float(np.mean(
                    got.argmax(-1) == keras_eval[name].argmax(-1)))
            entry["files"][quantization] = info
        if eval_data is not None:
            entry["keras_accuracy"] = _top1(keras_eval[name], eval_data[1])
    if not cascade:
        return exits
    keras_inputs = calibration
    for k, (segment, entry) in enumerate(zip(segment_models(network), exits), start=1):
        input_name = IMAGE if k == 1 else TRUNK_IN
        file_inputs = (to_pixels(keras_inputs, normalization)
                       if k == 1 and keras_inputs is not None else keras_inputs)
        for quantization in quantizations:
            flatbuffer = convert(segment, input_name, quantization, file_inputs, int8_io,
                                 qat, normalization=normalization)
            flatbuffer = add_export_metadata(
                flatbuffer, options, f"{model_name} cascade segment_{k}",
                f"Segment {k} of {len(names)} of the early-exit cascade of {model_name} "
                "(byot-keras): run segment_1 on the image, then segment_k on "
                "segment_(k-1)'s trunk_out. "
                f"{quantization_text(quantization, int8_io)}.", f"exit_{k}", segment=k)
            info = write(f"{CASCADE}/{file_name(f'segment_{k}', quantization)}", flatbuffer)
            info.update(LiteRTModel(flatbuffer).tensor_facts())
            entry["segment"][quantization] = info
        if keras_inputs is not None and TRUNK_OUT in segment.output:
            keras_inputs = segment.predict(keras_inputs, verbose=0)[TRUNK_OUT]
    return exits
