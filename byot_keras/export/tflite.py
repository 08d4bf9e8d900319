"""Convert a multi-exit model to TFLite: one file per exit, the early-exit cascade, and
a manifest an app can read. Conversion goes through a SavedModel with one serving
signature per file, builtin ops only (a graph that would need Flex ops fails clearly).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence

import keras
import numpy as np

from byot_keras.export.cascade import IMAGE, LOGITS, TRUNK_IN, TRUNK_OUT, cascade_models
from byot_keras.export.litert import SIGNATURE, LiteRTModel

QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8")
MANIFEST_VERSION = 1


def file_name(stem: str, quantization: str) -> str:
    """`exit_1.tflite` for float32, `exit_1_int8.tflite` etc. for the others."""
    return f"{stem}.tflite" if quantization == "float32" else f"{stem}_{quantization}.tflite"


def _check_quantizations(quantizations: Sequence[str]) -> list[str]:
    if isinstance(quantizations, str):
        quantizations = [quantizations]
    unknown = [q for q in quantizations if q not in QUANTIZATIONS]
    if unknown or not quantizations:
        raise ValueError(
            f"Unknown quantization {unknown or quantizations}. Valid: {', '.join(QUANTIZATIONS)}."
        )
    return list(dict.fromkeys(quantizations))


def convert(keras_model: keras.Model, input_name: str, quantization: str = "float32",
            representative: np.ndarray | None = None, int8_io: bool = False) -> bytes:
    """One Keras model (single input, dict or tensor output) to a .tflite flatbuffer.

    Args:
        input_name: the signature's input name.
        quantization: "float32", "float16" (float16 weights), "dynamic_int8" (int8
            weights, float activations) or "int8" (full integer, calibrated on
            `representative`: a batch of typical inputs, e.g. 100-500 training images).
        int8_io: with "int8", make the file's inputs and outputs int8 too (the default
            keeps float32 inputs/outputs with (de)quantize ops at the edges).
    """
    import tensorflow as tf

    (quantization,) = _check_quantizations([quantization])
    if quantization == "int8" and representative is None:
        raise ValueError(
            "Full-integer int8 needs calibration data: pass representative data (a few "
            "hundred typical inputs, e.g. training images) or choose float16/dynamic_int8."
        )
    spec = tf.TensorSpec(keras_model.inputs[0].shape, tf.float32, name=input_name)

    def serve(inputs):
        outputs = keras_model(inputs, training=False)
        return dict(outputs) if isinstance(outputs, dict) else {LOGITS: outputs}

    with tempfile.TemporaryDirectory(prefix="byot-savedmodel-") as saved_model:
        archive = keras.export.ExportArchive()
        archive.track(keras_model)
        archive.add_endpoint(SIGNATURE, serve, input_signature=[spec])
        archive.write_out(saved_model, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model,
                                                             signature_keys=[SIGNATURE])
        if quantization != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization == "int8":
            samples = np.asarray(representative, dtype=np.float32)

            def calibration():
                for sample in samples:
                    yield {input_name: sample[None]}

            converter.representative_dataset = calibration
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int8_io:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        try:
            flatbuffer = converter.convert()
        except Exception as error:
            raise RuntimeError(
                f"TFLite conversion of '{keras_model.name}' ({quantization}) failed with "
                f"builtin ops only (Flex ops are not allowed): {error}"
            ) from error
    flex = [op for op in LiteRTModel(flatbuffer).op_names() if op.lower().startswith("flex")]
    if flex:
        raise RuntimeError(f"'{keras_model.name}' converted with Flex ops {flex}; the "
                           "deployment kit allows builtin TFLite ops only.")
    return flatbuffer


def _prepare_output_dir(output_dir: str) -> tuple[str, str]:
    output_dir = os.path.abspath(output_dir)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"Output folder '{output_dir}' is a file; give a folder path.")
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.export-", dir=parent)
    return output_dir, staging


def _publish(staging: str, output_dir: str) -> None:
    """Swap the finished staging folder in; the old export is removed only afterwards."""
    backup = None
    if os.path.exists(output_dir):
        backup = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.old-",
                                  dir=os.path.dirname(output_dir))
        os.rmdir(backup)
        os.rename(output_dir, backup)
    os.rename(staging, output_dir)
    if backup:
        shutil.rmtree(backup, ignore_errors=True)


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
    cascade: bool = True,
    exits: Sequence[int] | None = None,
    max_calibration_examples: int = 200,
) -> dict:
    """Writes per-exit files, the cascade, `labels.txt` and `manifest.json`.

    Files under `output_dir` (for quantization q, suffix `_q` unless float32):
    `exit_<k>.tflite` (input "image", output "logits"), `cascade/segment_<k>.tflite`
    (input "image" for k = 1, else "trunk_in"; outputs "logits" and, but for the last,
    "trunk_out"), all with the signature "serving_default" and a dynamic batch size.

    Args:
        model: a multi-exit `SelfDistillationModel`.
        quantizations: any of "float32", "float16", "dynamic_int8", "int8".
        representative_data: typical inputs (already normalised like training data),
            needed for "int8"; the first `max_calibration_examples` are used.
        int8_io: int8 inputs/outputs for the "int8" files.
        eval_data: `(images, labels)` to measure each file's top-1 accuracy (and its
            agreement with the Keras model) into the manifest.
        labels: class names for `labels.txt` (default "0", "1", ...).
        normalization: what an app must do to raw pixels before the model, recorded in
            the manifest, e.g. `{"scale": 1/255, "mean": [...], "std": [...]}`.
        cascade: also write the cascade segments (always all of them).
        exits: which exits get their own `exit_<k>` file (1-based); default all.

    Returns:
        The manifest (also written to `manifest.json`). A failed export leaves any
        previous export in `output_dir` untouched.

    Example:
        >>> from byot_keras import zoo
        >>> model = zoo.resnet18_byot(num_classes=10, width_multiplier=0.125)
        >>> manifest = export_tflite(model, "/tmp/doc_export")
        >>> [e["files"]["float32"]["file"] for e in manifest["exits"]][:2]
        ['exit_1.tflite', 'exit_2.tflite']
    """
    from byot_keras.export.cascade import _require_multi_exit

    _require_multi_exit(model)
    selected = list(range(1, model.num_exits + 1)) if exits is None else [
        int(model.exit_name(k).split("_")[1]) for k in exits]
    quantizations = _check_quantizations(quantizations)
    if "int8" in quantizations and representative_data is None:
        raise ValueError(
            "quantization 'int8' needs calibration data: pass representative_data (a few "
            "hundred training images, normalised like the training data)."
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

    output_dir, staging = _prepare_output_dir(output_dir)
    try:
        manifest = _write_export(
            model, staging, quantizations, representative_data, int8_io, eval_data, labels,
            normalization, cascade, selected, max_calibration_examples, input_shape,
        )
        _publish(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _write_export(model, folder, quantizations, representative_data, int8_io, eval_data,
                  labels, normalization, cascade, selected, max_calibration_examples,
                  input_shape):
    calibration = None
    if representative_data is not None:
        calibration = np.asarray(representative_data[:max_calibration_examples], np.float32)
    check_images = (calibration if calibration is not None else
                    np.random.default_rng(0).normal(size=(8, *input_shape)).astype("float32"))
    costs = model.exit_costs()
    exits = [{**cost, "files": {}, "segment": {}} for cost in costs]

    def write(relative: str, flatbuffer: bytes) -> dict:
        path = os.path.join(folder, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(flatbuffer)
        return {"file": relative, "bytes": len(flatbuffer)}

    keras_check = model.predict(check_images, verbose=0)
    keras_eval = None if eval_data is None else model.predict(eval_data[0], verbose=0)
    for k, entry in enumerate(exits, start=1):
        if k not in selected:
            continue
        sub = model.exit_model(k)
        for quantization in quantizations:
            flatbuffer = convert(sub, IMAGE, quantization, calibration, int8_io)
            info = write(file_name(f"exit_{k}", quantization), flatbuffer)
            runner = LiteRTModel(flatbuffer)
            if quantization == "float32":
                got = runner.predict(image=check_images)[LOGITS]
                reference = keras_check[f"exit_{k}"]
                info["max_abs_diff"] = float(np.abs(got - reference).max())
                info["logit_scale"] = float(np.abs(reference).max())
            if eval_data is not None:
                got = runner.predict(image=eval_data[0])[LOGITS]
                info["accuracy"] = _top1(got, eval_data[1])
                info["agreement_with_keras"] = float(np.mean(
                    got.argmax(-1) == keras_eval[f"exit_{k}"].argmax(-1)))
            entry["files"][quantization] = info
        if eval_data is not None:
            entry["keras_accuracy"] = _top1(keras_eval[f"exit_{k}"], eval_data[1])

    if cascade:
        segments = cascade_models(model)
        segment_inputs = calibration
        for k, (segment, entry) in enumerate(zip(segments, exits), start=1):
            input_name = IMAGE if k == 1 else TRUNK_IN
            for quantization in quantizations:
                flatbuffer = convert(segment, input_name, quantization, segment_inputs,
                                     int8_io)
                info = write(f"cascade/{file_name(f'segment_{k}', quantization)}",
                             flatbuffer)
                runner = LiteRTModel(flatbuffer)
                info["inputs"] = {n: [int(d) for d in runner.input_details[n]["shape"][1:]]
                                  for n in runner.input_names}
                info["outputs"] = {n: [int(d) for d in runner.output_details[n]["shape"][1:]]
                                   for n in runner.output_names}
                entry["segment"][quantization] = info
            if segment_inputs is not None and TRUNK_OUT in segment.output:
                segment_inputs = segment.predict(segment_inputs, verbose=0)[TRUNK_OUT]

    with open(os.path.join(folder, "labels.txt"), "w") as f:
        f.write("\n".join(labels) + "\n")
    manifest = {
        "format_version": MANIFEST_VERSION,
        "model": model.name,
        "num_classes": model.num_classes,
        "num_exits": model.num_exits,
        "signature": SIGNATURE,
        "input": {
            "name": IMAGE,
            "shape": [None, *[int(d) for d in input_shape]],
            "dtype": "int8" if ("int8" in quantizations and int8_io) else "float32",
            "layout": "NHWC",
            "normalization": normalization or {"scale": 1.0, "mean": 0.0, "std": 1.0},
        },
        "labels_file": "labels.txt",
        "quantizations": quantizations,
        "int8_io": bool(int8_io),
        "cascade": {
            "description": "Run segment_1 on the image, then segment_k on segment_(k-1)'s "
                           "'trunk_out'; each segment's 'logits' is exit k's answer.",
        } if cascade else None,
        "exits": exits,
    }
    if eval_data is not None:
        manifest["eval_examples"] = int(len(eval_data[1]))
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    return manifest
