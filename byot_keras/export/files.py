"""The export layout that every export writes, whatever converts its models: file names,
the files an export plans, the TFLite Model Metadata of each file, the per-exit and
cascade files with their accuracy checks, `labels.txt`, and the manifest's shared keys.

Two exporters use it, each with its own converter: `byot_keras.export.export_tflite`
(Keras 3 models, `byot_keras.export.convert`) and `byot_keras.compress` (tf_keras QAT or
pruned networks, `byot_keras.compress.export.convert`). A converter is any callable
`convert(model, input_name, quantization, representative, *, normalization,
probabilities) -> bytes`; staging, publishing and the refusal of foreign files are
`layout.ExportFolder`'s.

Example:
    >>> file_name("exit_2", "int8"), file_name("segment_1", "float32")
    ('exit_2_int8.tflite', 'segment_1.tflite')
    >>> planned_files(2, ["int8"], cascade=False)
    ['labels.txt', 'exit_1_int8.tflite', 'exit_2_int8.tflite']
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from byot_keras.export import metadata as metadata_lib
from byot_keras.export.cascade import IMAGE, LOGITS, PROBABILITIES, TRUNK_IN, TRUNK_OUT
from byot_keras.export.layout import CASCADE, LABELS
from byot_keras.export.litert import SIGNATURE, LiteRTModel
from byot_keras.normalization import to_pixels

Converter = Callable[..., bytes]
CASCADE_DESCRIPTION = ("Run segment_1 on the image (as the exit files take it), then "
                       "segment_k on segment_(k-1)'s 'trunk_out'; each segment's 'logits' "
                       "is exit k's answer.")

EXIT_OUTPUTS = (PROBABILITIES, LOGITS)


# 2: files take 0..255 pixels and normalise inside; exit files output probabilities.
MANIFEST_VERSION = 2
METADATA_AUTHOR = "byot-keras"


def manifest_input(input_shape, quantizations: Sequence[str], int8_io: bool,
                   normalization: dict | None) -> dict:
    """The manifest's `input` entry: what an app feeds every file's `image` tensor."""
    pixels = normalization is not None
    return {
        "name": IMAGE,
        "shape": [None, *[int(d) for d in input_shape]],
        "layout": "NHWC",
        "color_space": "RGB",
        "pixels": pixels,
        "dtype": {q: "uint8" if (q == "int8" and int8_io) else "float32"
                  for q in quantizations},
        "normalization": normalization,
        "description": (
            "RGB pixel values 0..255 (uint8 where dtype says so: quantization scale 1, "
            "zero point 0, so the bytes are the pixels); the files apply the model's "
            "normalization inside, (pixel / 255 - mean) / std." if pixels else
            "The model's input normalisation is unknown (the model does not record it "
            "and none was given): the files pass the image tensor to the network "
            "unchanged; feed what the model was trained on."),
    }


def file_name(stem: str, quantization: str) -> str:
    """`exit_1.tflite` for float32, `exit_1_int8.tflite` etc. for the others."""
    return f"{stem}.tflite" if quantization == "float32" else f"{stem}_{quantization}.tflite"



def check_exit_outputs(exit_outputs: str, flag: str = "exit_outputs") -> str:
    """`exit_outputs` if it is "probabilities" or "logits"; else a ValueError.

    Example:
        >>> check_exit_outputs("logits")
        'logits'
    """
    if exit_outputs not in EXIT_OUTPUTS:
        raise ValueError(f"{flag}: got {exit_outputs!r}; valid: {', '.join(EXIT_OUTPUTS)} "
                         "(what the exit files and model.tflite return).")
    return exit_outputs



MODEL_INFO_KEYS = ("version", "author", "license")


def metadata_defaults(weights: Sequence, model_info: Mapping[str, str] | None = None
                      ) -> dict:
    """The metadata's version (default: "sha256:" and 12 hex digits of the weights'
    hash), author (default "byot-keras") and license (default None), overridden by
    `model_info`.

    Example:
        >>> import numpy as np
        >>> metadata_defaults([np.zeros(3)], {"license": "MIT"})["version"]
        'sha256:9d908ecfb6b2'
    """
    model_info = dict(model_info or {})
    unknown = sorted(set(model_info) - set(MODEL_INFO_KEYS))
    if unknown:
        raise ValueError(f"model_info: unknown keys {unknown}; valid: "
                         f"{', '.join(MODEL_INFO_KEYS)}.")
    digest = hashlib.sha256()
    for weight in weights:
        digest.update(np.ascontiguousarray(np.asarray(weight)).tobytes())
    info = {"version": f"sha256:{digest.hexdigest()[:12]}", "author": METADATA_AUTHOR,
            "license": None}
    for key, value in model_info.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"model_info['{key}'] must be a non-empty string, got "
                             f"{value!r}.")
        info[key] = value
    return info


def check_labels(labels, num_classes: int) -> list[str]:
    """The class names for labels.txt: one non-empty single-line string per class ("0",
    "1", ... for None); else a ValueError naming the bad entry.

    Example:
        >>> check_labels(None, 3)
        ['0', '1', '2']
    """
    if labels is None:
        return [str(i) for i in range(num_classes)]
    if isinstance(labels, str) or not hasattr(labels, "__len__"):
        raise ValueError(f"labels must be a list of {num_classes} class names (strings); got "
                         f"{labels!r}.")
    labels = list(labels)
    if len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels for a {num_classes}-class model: give one "
                         "class name per class.")
    for index, label in enumerate(labels):
        if not isinstance(label, str):  # numbers here are most likely class ids, not names
            raise ValueError(f"labels must be class names (strings); got {label!r} "
                             f"({type(label).__name__}) at index {index}.")
        if not label.strip() or "\n" in label or "\r" in label:
            raise ValueError(f"labels[{index}] is {label!r}: labels.txt holds one non-empty "
                             "label per line, so a label cannot be empty or contain a line "
                             "break.")
    return labels


def check_eval_pair(eval_data) -> None:
    """Raises a ValueError unless `eval_data` is None or an (images, labels) pair."""
    if eval_data is None or (isinstance(eval_data, tuple | list) and len(eval_data) == 2):
        return
    what = (f"one array of shape {np.shape(eval_data)}" if hasattr(eval_data, "shape")
            else repr(eval_data)[:80])
    raise ValueError(f"eval_data must be an (images, labels) pair; got {what}.")



_QUANTIZATION_TEXT = {
    "float32": "float32",
    "float16": "float16 weights, float32 compute",
    "dynamic_int8": "int8 weights, float32 activations",
    "int8": "full-integer int8",
    "int16x8": "int16 activations, int8 weights",
}


def quantization_text(quantization: str, int8_io: bool) -> str:
    """How a file of this quantization computes, for its metadata description.

    Example:
        >>> quantization_text("int8", int8_io=True)
        'full-integer int8 with uint8 image and probabilities (int8 logits and trunk tensors)'
    """
    text = _QUANTIZATION_TEXT[quantization]
    if quantization == "int8":
        text += (" with uint8 image and probabilities (int8 logits and trunk tensors)"
                 if int8_io else " with float32 inputs and outputs")
    return text


def tensor_info(name: str, dtype: str, options: dict, exit_label: str,
                 segment: int | None = None) -> metadata_lib.TensorInfo:
    """What the metadata says about one of an export's tensors."""
    normalization = options["normalization"]
    num_classes = len(options["labels"])
    if name == IMAGE:
        if normalization is None:
            text = ("The network's input, passed on unchanged: the model's input "
                    "normalisation is unknown. NormalizationOptions mean 0, std 1: tools "
                    "feed 0..255 pixel values, right only for a model trained on them.")
        else:
            stored = ("uint8 (quantization scale 1, zero point 0: the bytes are the "
                      "pixels)" if dtype == "uint8" else dtype)
            text = (f"RGB image, pixel values 0..255 as {stored}, NHWC. The file computes "
                    f"the model's input normalisation itself: (pixel / 255 - mean) / std, "
                    f"mean {normalization['mean']}, std {normalization['std']}.")
        # Pixel units, as tools apply it: (pixel - 0) / 1, i.e. the pixels unchanged.
        return metadata_lib.TensorInfo(
            name, text, image=True, normalization=([0.0], [1.0]),
            value_range=(0.0, 255.0) if normalization is not None else None)
    if name == PROBABILITIES:
        text = (f"Probabilities of the {num_classes} classes (softmax of {exit_label}'s "
                "logits), in the order of labels.txt.")
        value_range = {"float32": (0.0, 1.0), "uint8": (0.0, 255.0)}.get(dtype)
        if dtype == "uint8":
            text += " uint8: probability = value / 256."
        return metadata_lib.TensorInfo(name, text, value_range=value_range,
                                       labels_file=LABELS)
    if name == LOGITS:
        text = (f"Class scores (logits) of {exit_label}, in the order of labels.txt; "
                "their softmax gives the probabilities.")
        if dtype != "float32":
            text += f" {dtype}: dequantize with the tensor's scale and zero point."
        return metadata_lib.TensorInfo(name, text, labels_file=LABELS)
    if name == TRUNK_OUT:
        return metadata_lib.TensorInfo(name, f"Feature map for cascade segment "
                                             f"{segment + 1}: pass it on unchanged as its "
                                             f"'{TRUNK_IN}'.")
    if name == TRUNK_IN:
        return metadata_lib.TensorInfo(name, f"Feature map: cascade segment {segment - 1}'s "
                                             f"'{TRUNK_OUT}', unchanged.")
    return metadata_lib.TensorInfo(name, name)


def add_export_metadata(flatbuffer: bytes, options: dict, title: str, description: str,
                        exit_label: str, segment: int | None = None) -> bytes:
    """`flatbuffer` with TFLite Model Metadata describing subgraph 0 (name `title`,
    `description`, each tensor by its name) and `labels.txt` packed in. `options`: the
    export's "normalization", "labels" and "info" (`metadata_defaults`).

    Example:
        >>> import keras
        >>> from byot_keras.export import convert
        >>> tiny = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
        ...                          keras.layers.Dense(2)])  # any one-input Keras model
        >>> options = {"normalization": None, "labels": ["cat", "dog"],
        ...            "info": metadata_defaults(tiny.weights)}
        >>> packed = add_export_metadata(convert(tiny, "image"), options,
        ...                              "demo", "exit 1 as a file", "exit_1")
        >>> metadata_lib.read_metadata(packed)["associated_files"]
        {'labels.txt': b'cat\\ndog\\n'}
    """
    inputs, outputs = metadata_lib.subgraph_tensors(flatbuffer)
    info = options["info"]
    model_info = metadata_lib.ModelInfo(
        name=title, description=description, version=info["version"],
        author=info["author"], license=info["license"],
        inputs=[tensor_info(n, d, options, exit_label, segment) for n, d in inputs],
        outputs=[tensor_info(n, d, options, exit_label, segment) for n, d in outputs])
    labels = ("\n".join(options["labels"]) + "\n").encode()
    return metadata_lib.add_metadata(flatbuffer, model_info, {LABELS: labels})



def planned_files(num_exits: int, quantizations: Sequence[str], *,
                  exits: Sequence[int] | None = None, cascade: bool = True,
                  multi_signature_stem: str | None = None) -> list[str]:
    """The relative paths an export writes (besides the manifest): `labels.txt`, then per
    quantization the files of the `exits` (1-based, default all), the cascade segments
    (all of them) and the multi-signature file (`multi_signature_stem`, if given)."""
    exits = range(1, num_exits + 1) if exits is None else exits
    files = [LABELS]
    for quantization in quantizations:
        files += [file_name(f"exit_{k}", quantization) for k in exits]
        if cascade:
            files += [f"{CASCADE}/{file_name(f'segment_{k}', quantization)}"
                      for k in range(1, num_exits + 1)]
        if multi_signature_stem:
            files.append(file_name(multi_signature_stem, quantization))
    return files


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of rows whose largest score is at the label."""
    return float(np.mean(np.argmax(scores, axis=-1) == labels))


def manifest_header(*, model_name: str, num_classes: int, num_exits: int, input_shape,
                    options: dict, metadata_description: str) -> dict:
    """The manifest's first entries, the same for every export (`options`: the export's
    "quantizations", "int8_io", "normalization", "exit_outputs" and "info")."""
    info = options["info"]
    return {
        "format_version": MANIFEST_VERSION,
        "model": model_name,
        "num_classes": int(num_classes),
        "num_exits": int(num_exits),
        "signature": SIGNATURE,
        "input": manifest_input(input_shape, options["quantizations"], options["int8_io"],
                                options["normalization"]),
        "exit_outputs": options["exit_outputs"],
        "labels_file": LABELS,
        "metadata": {
            "description": metadata_description,
            "version": info["version"],
            "author": info["author"],
            "license": info["license"],
            "min_parser_version": metadata_lib.MIN_PARSER_VERSION,
        },
        "quantizations": list(options["quantizations"]),
        "int8_io": bool(options["int8_io"]),
    }


def cascade_entry(cascade: bool) -> dict | None:
    """The manifest's "cascade" entry."""
    return {"description": CASCADE_DESCRIPTION} if cascade else None


class ExportFiles:
    """Converts and writes an export's per-exit and cascade files into `folder` (the
    staging folder of a `layout.ExportFolder`) and describes each in the manifest's
    `exits` entries.

    Args:
        folder: where the files go.
        convert: the converter (see the module docstring).
        options: the export's "quantizations", "int8_io", "normalization", "labels",
            "exit_outputs" and "info".
        model_name: the title of the files' metadata.
        num_exits: how many exits the model has.
        eval_data: `(images, labels)`, normalised like the training data: each exit
            file's top-1 accuracy and agreement with `eval_logits` go into its entry.
        gzip_sizes: also record each file's gzip-compressed size (`gzip_bytes`).
        note: added to each exit file's metadata description of its quantization.
    """

    def __init__(self, folder: str, convert: Converter, options: dict, *, model_name: str,
                 num_exits: int, eval_data=None, gzip_sizes: bool = False, note: str = ""):
        self.folder, self.convert, self.options = folder, convert, options
        self.model_name, self.num_exits = model_name, num_exits
        self.gzip_sizes, self.note = gzip_sizes, note
        self.eval_labels = None if eval_data is None else eval_data[1]
        self.eval_pixels = (None if eval_data is None else
                            to_pixels(eval_data[0], options["normalization"]))

    def write(self, relative: str, flatbuffer: bytes) -> dict:
        """Writes one file; its manifest entry ("file", "bytes"[, "gzip_bytes"])."""
        path = os.path.join(self.folder, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(flatbuffer)
        info = {"file": relative, "bytes": len(flatbuffer)}
        if self.gzip_sizes:
            info["gzip_bytes"] = len(gzip.compress(flatbuffer, compresslevel=9))
        return info

    def write_labels(self) -> None:
        with open(os.path.join(self.folder, LABELS), "w") as f:
            f.write("\n".join(self.options["labels"]) + "\n")

    def exit_file(self, k: int, sub_model, quantization: str, pixel_calibration,
                  eval_logits=None) -> tuple[dict, LiteRTModel]:
        """Converts exit k's model (image -> logits) to `exit_<k>[_q].tflite`; its entry
        (with accuracy and agreement on the evaluation data) and its runner."""
        options, output = self.options, self.options["exit_outputs"]
        flatbuffer = self.convert(sub_model, IMAGE, quantization, pixel_calibration,
                                  normalization=options["normalization"],
                                  probabilities=output == PROBABILITIES)
        flatbuffer = add_export_metadata(
            flatbuffer, options, f"{self.model_name} exit_{k}",
            f"Exit {k} of {self.num_exits} of {self.model_name}, a multi-exit network "
            f"(byot-keras), as an image classifier: only the layers exit {k} needs. "
            f"{quantization_text(quantization, options['int8_io'])}{self.note}. Input: an "
            f"RGB image; output: {output} of the {len(options['labels'])} classes.",
            f"exit_{k}")
        info = self.write(file_name(f"exit_{k}", quantization), flatbuffer)
        runner = LiteRTModel(flatbuffer)
        info.update(runner.tensor_facts())
        if self.eval_labels is not None:
            got = runner.predict(image=self.eval_pixels)[output]
            info["accuracy"] = top1(got, self.eval_labels)
            info["agreement_with_keras"] = float(np.mean(
                got.argmax(-1) == np.asarray(eval_logits).argmax(-1)))
        return info, runner

    def keras_accuracy(self, eval_logits) -> float:
        """The model's own top-1 on the evaluation data, from its logits."""
        return top1(eval_logits, self.eval_labels)

    def cascade_files(self, exits: list[dict], segments: Mapping[str, Sequence],
                      calibration, *, int8_trunk: bool = False,
                      trunk_interface: Callable | None = None) -> None:
        """Converts the cascade's segments (`segments[q][k - 1]`: segment k's model for
        quantization q) to `cascade/segment_<k>[_q].tflite`, into `exits[k - 1]["segment"]`.

        `calibration`: images normalised like the training data (or None); each segment
        is calibrated on what it takes (the pixels for segment 1, then the previous
        segment's trunk map). With `int8_trunk`, the int8 files pass `trunk_interface`
        (file, previous "trunk_out" quantization) -> file, chaining the int8 trunk.
        """
        options = self.options
        quantizations, normalization = options["quantizations"], options["normalization"]
        keras_inputs = calibration  # what the model's segment takes
        trunk_quantization = None  # int8 "trunk_out" (scale, zero point) of the last segment
        for k, entry in enumerate(exits, start=1):
            input_name = IMAGE if k == 1 else TRUNK_IN
            file_inputs = (to_pixels(keras_inputs, normalization)
                           if k == 1 and keras_inputs is not None else keras_inputs)
            for quantization in quantizations:
                flatbuffer = self.convert(segments[quantization][k - 1], input_name,
                                          quantization, file_inputs,
                                          normalization=normalization, probabilities=False)
                if quantization == "int8" and int8_trunk:
                    flatbuffer = trunk_interface(flatbuffer, trunk_quantization)
                    if k < len(exits):
                        trunk_quantization = LiteRTModel(flatbuffer).output_details[
                            TRUNK_OUT]["quantization"]
                flatbuffer = add_export_metadata(
                    flatbuffer, options, f"{self.model_name} cascade segment_{k}",
                    f"Segment {k} of {len(exits)} of the early-exit cascade of "
                    f"{self.model_name} (byot-keras): run segment_1 on the image, then "
                    "segment_k on segment_(k-1)'s trunk_out; stop at the first exit whose "
                    "largest softmax probability reaches your threshold. "
                    f"{quantization_text(quantization, options['int8_io'])}.",
                    f"exit_{k}", segment=k)
                info = self.write(f"{CASCADE}/{file_name(f'segment_{k}', quantization)}",
                                  flatbuffer)
                info.update(LiteRTModel(flatbuffer).tensor_facts())
                entry["segment"][quantization] = info
            segment = segments[quantizations[0]][k - 1]
            if keras_inputs is not None and TRUNK_OUT in segment.output:
                # The trunk is the same function in every copy of the network (int8
                # rescaling only touches depthwise -> 1x1 pairs and keeps outputs).
                keras_inputs = segment.predict(keras_inputs, verbose=0)[TRUNK_OUT]
