"""TFLite files from a tf_keras multi-exit network (a QAT or pruned twin): the converter
for tf_keras models, given to the export layout of `byot_keras.export.files`, so that the
files have the same names, metadata, checks and manifest as
`byot_keras.export.export_tflite` writes:
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

import warnings
from collections.abc import Sequence

import numpy as np

from byot_keras.compress import extra
from byot_keras.export.cascade import IMAGE, PROBABILITIES, cut_segments
from byot_keras.export.files import (
    ExportFiles,
    cascade_entry,
    check_eval_pair,
    check_exit_outputs,
    check_labels,
    manifest_header,
    metadata_defaults,
    planned_files,
)
from byot_keras.export.layout import ExportFolder
from byot_keras.export.litert import LiteRTModel
from byot_keras.export.tflite import QUANTIZATIONS, pin_pixel_quantization, serving_function
from byot_keras.normalization import check_normalization, to_pixels

WRAPPER_PREFIXES = ("quant_", "prune_low_magnitude_")
# Ops that may compute in float in a full-integer file: the conversions at its edges.
EDGE_OPS = {"QUANTIZE", "DEQUANTIZE", "DELEGATE"}
COMMAND = "byot-qat/byot-prune"


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


def segment_models(network, sections: Sequence[int]) -> list:
    """The early-exit cascade's segments (as `byot_keras.export.cascade_models`), cut
    from the tf_keras `network` at the trunk `sections` of its exits (the Keras 3
    model's `byot_keras.export.exit_sections`)."""
    return cut_segments(network, exit_names(network), sections,
                        layer=find_layer, model_class=extra.tf_keras().Model)


def float_ops(flatbuffer: bytes) -> list[str]:
    """Ops of a .tflite file that compute in float32 (besides (de)quantizing its edges)."""
    interpreter = LiteRTModel(flatbuffer).interpreter
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    return sorted({op["op_name"] for op in interpreter._get_ops_details()
                   if op["op_name"] not in EDGE_OPS
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
    serve = tf.function(serving_function(model, normalization, probabilities),
                        input_signature=[spec])
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


def export_network(
    network,
    output_dir: str,
    *,
    model_name: str,
    costs: Sequence[dict],
    sections: Sequence[int] | None = None,
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
        sections: with `cascade`, per exit the trunk section it hangs off: the Keras 3
            model's `byot_keras.export.exit_sections(model)`.
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
    if cascade and (sections is None or len(sections) != len(names)):
        raise ValueError(f"A cascade needs the trunk section of each of the {len(names)} "
                         f"exits (byot_keras.export.exit_sections(model)); got {sections}.")
    num_classes = int(network.output[names[-1]].shape[-1])
    check_eval_pair(eval_data)
    input_shape = [int(d) for d in network.inputs[0].shape[1:]]
    options = {"normalization": check_normalization(normalization, input_shape[-1]),
               "labels": check_labels(labels, num_classes), "exit_outputs": exit_outputs,
               "info": metadata_defaults(network.weights, model_info),
               "quantizations": quantizations, "int8_io": bool(int8_io)}
    calibration = (None if representative_data is None else
                   np.asarray(representative_data[:max_calibration_examples], np.float32))
    planned = planned_files(len(names), quantizations, cascade=cascade)
    with ExportFolder(output_dir, planned, allow_other_files=allow_other_files,
                      command=COMMAND) as folder:
        def tf_keras_convert(model, input_name, quantization, representative, *,
                             normalization, probabilities):
            return convert(model, input_name, quantization, representative, int8_io, qat,
                           normalization=normalization, probabilities=probabilities)

        files = ExportFiles(folder.staging, tf_keras_convert, options, model_name=model_name,
                            num_exits=len(names), eval_data=eval_data, gzip_sizes=True,
                            note=", quantization-aware trained" if qat else "")
        exits = [{**cost, "files": {}, "segment": {}} for cost in costs]
        pixel_calibration = (None if calibration is None else
                             to_pixels(calibration, options["normalization"]))
        keras_eval = None if eval_data is None else network.predict(eval_data[0], verbose=0)
        for k, (name, entry) in enumerate(zip(names, exits), start=1):
            sub = exit_model(network, name)
            for quantization in quantizations:
                entry["files"][quantization], _ = files.exit_file(
                    k, sub, quantization, pixel_calibration,
                    None if keras_eval is None else keras_eval[name])
            if eval_data is not None:
                entry["keras_accuracy"] = files.keras_accuracy(keras_eval[name])
        if cascade:
            segments = segment_models(network, sections)
            files.cascade_files(exits, {q: segments for q in quantizations}, calibration)
        files.write_labels()
        manifest = {
            **manifest_header(
                model_name=model_name, num_classes=num_classes, num_exits=len(names),
                input_shape=input_shape, options=options,
                metadata_description="Every .tflite file carries TFLite Model Metadata, "
                                     "labels.txt packed in (as byot_keras.export writes it)."),
            "cascade": cascade_entry(cascade),
            "exits": exits,
            **(extra_manifest or {}),
        }
        if eval_data is not None:
            manifest["eval_examples"] = int(len(eval_data[1]))
        folder.write_manifest(manifest)
    return manifest


def check_output_folder(output_dir: str, num_exits: int, quantizations: Sequence[str],
                        cascade: bool, allow_other_files: bool = False) -> None:
    """Refuses, before any fine-tuning, an `output_dir` that `export_network` with these
    options would not write into (see `byot_keras.export.layout`)."""
    ExportFolder(output_dir, planned_files(num_exits, quantizations, cascade=cascade),
                 allow_other_files=allow_other_files, command=COMMAND)
