"""The deployment kit README's tables, generated from a real export so they cannot drift
from what `export_tflite` writes (`tflite/make_readme_tables.py` calls this; the tests
read the README back and check it against freshly exported files). Repository tooling:
not part of the installed package."""

from __future__ import annotations

import json
import os
import re

from byot_keras.export.litert import LiteRTModel
from byot_keras.export.runtime import read_manifest

# Every manifest field, in README order: (path, meaning, when it is present; None = always).
# `exits[k]` is one entry per exit, `<q>` a quantization ("float32", "int8", ...).
MANIFEST_FIELDS = [
    ("format_version", "Manifest layout version (readers should check it; 2: files take "
                       "0..255 pixels and normalise inside, exit files return "
                       "probabilities).", None),
    ("model", "Name of the Keras model that was exported.", None),
    ("num_classes", "Number of classes (length of every `probabilities` / `logits` "
                    "vector).", None),
    ("num_exits", "Number of exits N (= number of cascade segments).", None),
    ("signature", "Signature key of every file (run it by name).", None),
    ("input.name", "Input tensor name of `exit_<k>`, `model` and `segment_1`.", None),
    ("input.shape", "Image input shape, NHWC; `null` = dynamic batch (files are allocated "
                    "for batch 1).", None),
    ("input.layout", "Memory layout of the image tensor.", None),
    ("input.color_space", "Channel order of the image tensor.", None),
    ("input.pixels", "True: the image tensor takes RGB pixel values 0..255 and the files "
                     "normalise them inside; false: the model's normalisation is unknown "
                     "and the files pass the tensor to the network unchanged.", None),
    ("input.dtype.<q>", "The image tensor's dtype in the `<q>` files: `float32`, or "
                        "`uint8` (scale 1, zero point 0: the bytes are the pixels) in the "
                        "`int8` files when `int8_io`.", None),
    ("input.normalization.scale", "The model's input normalisation, computed inside the "
                                  "files (`normalization` is null when unknown): the "
                                  "training data's pixel values times `scale` were in "
                                  "[0, 1] ...", None),
    ("input.normalization.mean", "... then this was subtracted (one number, or one per "
                                 "RGB channel) ...", None),
    ("input.normalization.std", "... and the result divided by this: the files compute "
                                "(pixel / 255 - mean) / std.", None),
    ("input.normalization", "`null`: the model's normalisation is unknown (see "
                            "`input.pixels`).", "when the model records none and none is "
                                                "given"),
    ("input.description", "The above in words.", None),
    ("exit_outputs", "What the `exit_<k>` files and `model` return: `probabilities` "
                     "(softmax) or `logits`; the cascade segments always return "
                     "`logits`.", None),
    ("labels_file", "Text file with one class name per line, in class-index order (also "
                    "packed into every .tflite file).", None),
    ("metadata.description", "Every .tflite file carries TFLite Model Metadata: what it "
                             "holds.", None),
    ("metadata.version", "The metadata's model version (default: hash of the weights).",
     None),
    ("metadata.author", "The metadata's author.", None),
    ("metadata.license", "The metadata's license (null: none given).", None),
    ("metadata.min_parser_version", "Metadata schema version a reader needs.", None),
    ("quantizations", "Which file variants were written (`_<q>` file-name suffix; none for "
                      "float32).", None),
    ("int8_io", "True if the `int8` files take and return integer tensors (uint8 `image` "
                "and `probabilities`, int8 `logits` and trunk tensors); false: float32 "
                "inputs and outputs.", None),
    ("int8_trunk", "True if the `int8` cascade segments take `trunk_in` and return "
                   "`trunk_out` as int8, segment k's `trunk_out` having exactly segment "
                   "k+1's `trunk_in` scale and zero point: copy the bytes on.", None),
    ("cascade.description", "How the segments chain; `cascade` is null when exported "
                            "without the cascade.", None),
    ("multi_signature.description", "What `model[_q].tflite` holds; `multi_signature` is "
                                    "null when exported with `multi_signature=False`.", None),
    ("multi_signature.signatures", "Its signature names, one per exit (input `image`, "
                                   "output as `exit_outputs`).", None),
    ("multi_signature.files.<q>.file", "The multi-signature file, relative to the export "
                                       "folder.", None),
    ("multi_signature.files.<q>.bytes", "Its size in bytes (the exits share their weights: "
                                        "less than the `exit_<k>` files together).", None),
    ("multi_signature.files.<q>.metadata_signature", "The signature its metadata describes "
                                                     "(subgraph 0; the format holds one).",
     None),
    ("multi_signature.files.<q>.max_abs_diff", "Largest absolute difference between any "
                                               "signature's output and the Keras exit's "
                                               "(softmax) on check images.",
     "for float32 files"),
    ("multi_signature.files.<q>.output_scale", "Largest absolute Keras value on those "
                                               "images.", "for float32 files"),
    ("calibration.examples", "Representative images the `int8` / `int16x8` files were "
                             "calibrated on.", "with a calibrated quantization"),
    ("calibration.int8_float_classifier", "True if the `int8` files compute the final "
                                          "Dense layer (the logits) and the softmax in "
                                          "float; the rest is int8.", "with `int8`"),
    ("calibration.int8_equalized_layer_pairs", "Depthwise -> 1x1 convolution pairs "
                                               "rescaled before int8 calibration (same "
                                               "float function).", "with `int8`"),
    ("exits[k].exit", "Exit name, `exit_1` (shallowest) ... `exit_N` (deepest).", None),
    ("exits[k].params", "Parameters of the stand-alone exit model `exit_<k>`.", None),
    ("exits[k].trainable_params", "Trainable parameters of `exit_<k>`.", None),
    ("exits[k].macs", "Multiply-accumulates of `exit_<k>` for one image.", None),
    ("exits[k].flops", "2 x `macs`.", None),
    ("exits[k].cascade_macs", "MACs the cascade has spent when it answers at exit k "
                              "(trunk up to k plus the heads of exits 1..k).", None),
    ("exits[k].files.<q>.file", "Stand-alone classifier file for exit k (image in, "
                                "`exit_outputs` out), relative to the export folder; "
                                "`files` is empty for exits left out with "
                                "`export_tflite(exits=...)`.", None),
    ("exits[k].files.<q>.bytes", "Its size in bytes.", None),
    ("exits[k].files.<q>.inputs", "Its input tensors: name -> shape without the batch "
                                  "dimension.", None),
    ("exits[k].files.<q>.outputs", "Its output tensors: name -> shape without the batch "
                                   "dimension.", None),
    ("exits[k].files.<q>.dtypes", "Its tensors' dtypes: name -> `float32`, `uint8`, "
                                  "`int8`.", None),
    ("exits[k].files.<q>.quantization", "Its integer tensors' quantization: name -> "
                                        "[scale, zero point] (real = scale x (stored - "
                                        "zero point)).", "for files with integer inputs "
                                                         "or outputs"),
    ("exits[k].files.<q>.max_abs_diff", "Largest absolute difference between the file's "
                                        "output and the Keras exit's (softmax of) logits "
                                        "on check images.", "for float32 files"),
    ("exits[k].files.<q>.output_scale", "Largest absolute Keras value on those images (the "
                                        "scale of `max_abs_diff`).", "for float32 files"),
    ("exits[k].files.<q>.accuracy", "Top-1 accuracy of the file on the export's eval "
                                    "data.", "with `eval_data`"),
    ("exits[k].files.<q>.agreement_with_keras", "Fraction of eval images where the file "
                                                "and the Keras model agree.",
     "with `eval_data`"),
    ("exits[k].keras_accuracy", "Top-1 accuracy of the Keras exit on the eval data.",
     "with `eval_data`"),
    ("exits[k].segment.<q>.file", "Cascade segment k, relative to the export folder.",
     None),
    ("exits[k].segment.<q>.bytes", "Its size in bytes.", None),
    ("exits[k].segment.<q>.inputs", "Its input tensors: name -> shape without the batch "
                                    "dimension.", None),
    ("exits[k].segment.<q>.outputs", "Its output tensors: name -> shape without the batch "
                                     "dimension.", None),
    ("exits[k].segment.<q>.dtypes", "Its tensors' dtypes.", None),
    ("exits[k].segment.<q>.quantization", "Its integer tensors' [scale, zero point].",
     "for files with integer inputs or outputs"),
    ("eval_examples", "Number of eval images behind the accuracies.",
     "with `eval_data`"),
    ("latency", "Measured latencies (ms) per file, quantization and thread count, and the "
                "targets.", "by `python -m benchmarks.tflite_latency`"),
    ("files", "Every file the export wrote (relative paths, `manifest.json` included): "
              "what a later export into the folder replaces.", None),
    ("file_sha256", "SHA-256 of each of those files but `manifest.json`: a later export "
                    "replaces a file only while it is still the one written (a file you "
                    "put in its place is kept).", None),
]
_OPAQUE = {"inputs", "outputs", "dtypes", "quantization", "latency",
           "file_sha256"}  # shown whole


def manifest_paths(manifest: dict) -> dict[str, object]:
    """The manifest's field paths in `MANIFEST_FIELDS` notation, with an example value
    (exit 1, the first quantization)."""
    paths: dict[str, object] = {}

    def walk(value, path):
        leaf = path.rsplit(".", 1)[-1]
        if path == "exits":
            for entry in value:
                walk(entry, "exits[k]")
        elif path in ("cascade", "multi_signature") and value is None:
            return  # exported without the cascade / the multi-signature file
        elif isinstance(value, dict) and leaf not in _OPAQUE:
            for key, item in value.items():
                key = "<q>" if leaf in ("files", "segment") or path == "input.dtype" else key
                walk(item, f"{path}.{key}" if path else key)
        else:
            paths.setdefault(path, value)

    walk(manifest, "")
    return paths


def _example(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 48 else text[:45] + "..."


def manifest_table(manifest: dict) -> str:
    """Markdown table of every manifest field with its meaning and an example value;
    raises if the manifest has a field the table does not document."""
    present = manifest_paths(manifest)
    documented = {path for path, _, _ in MANIFEST_FIELDS}
    undocumented = sorted(set(present) - documented)
    if undocumented:
        raise ValueError(f"manifest.json fields without a README description: {undocumented}; "
                         "add them to MANIFEST_FIELDS.")
    lines = ["| field | meaning | example (reference export) |", "|---|---|---|"]
    for path, meaning, condition in MANIFEST_FIELDS:
        if path in present:
            example = f"`{_example(present[path])}`"
        else:
            example = f"written only {condition}" if condition else "-"
        lines.append(f"| `{path}` | {meaning} | {example} |")
    return "\n".join(lines) + "\n"


def _tensors(path: str, signature: str) -> list[tuple[str, str, list[int], str]]:
    runner = LiteRTModel(path, signature=signature)
    rows = []
    for direction, names, details in (("input", runner.input_names, runner.input_details),
                                      ("output", runner.output_names, runner.output_details)):
        for name in sorted(names):
            detail = details[name]
            rows.append((direction, name, [int(d) for d in detail["shape"]],
                         detail["dtype"].__name__))
    return rows


def export_files(manifest: dict, quantization: str) -> list[str]:
    """The export's single-signature .tflite files of one quantization: exits first,
    then segments."""
    files = [entry["files"][quantization]["file"] for entry in manifest["exits"]
             if quantization in entry["files"]]
    if manifest.get("cascade"):
        files += [entry["segment"][quantization]["file"] for entry in manifest["exits"]]
    return files


def export_signatures(manifest: dict, quantization: str) -> list[tuple[str, str]]:
    """Every (file, signature) of one quantization: the exit and segment files'
    `serving_default`, then each signature of the multi-signature file."""
    pairs = [(file, manifest["signature"]) for file in export_files(manifest, quantization)]
    multi = manifest.get("multi_signature")
    if multi and quantization in multi["files"]:
        pairs += [(multi["files"][quantization]["file"], name) for name in multi["signatures"]]
    return pairs


def tensor_table(export_dir: str, description: str) -> str:
    """Markdown table of every float32 file's signatures with their inputs and outputs
    (name, shape at batch 1, dtype), read from the files themselves; plus a note on the
    other quantizations, checked to have the same names and shapes."""
    manifest = read_manifest(export_dir)
    reference = manifest["quantizations"][0]
    lines = [
        f"Read from the files of a real export: {description}; quantization "
        f"`{reference}`.",
        "",
        "| file | signature | direction | tensor name | shape (batch 1) | dtype |",
        "|---|---|---|---|---|---|",
    ]
    reference_tensors = {}
    for file, signature in export_signatures(manifest, reference):
        tensors = _tensors(os.path.join(export_dir, file), signature)
        reference_tensors[file, signature] = [(d, n, s) for d, n, s, _ in tensors]
        for direction, name, shape, dtype in tensors:
            lines.append(f"| `{file}` | `{signature}` | {direction} | `{name}` | `{shape}` | "
                         f"{dtype} |")
    others = [q for q in manifest["quantizations"] if q != reference]
    for quantization in others:
        dtypes: dict[str, set[str]] = {}
        for (ref_file, signature), (other_file, _) in zip(
                export_signatures(manifest, reference),
                export_signatures(manifest, quantization)):
            tensors = _tensors(os.path.join(export_dir, other_file), signature)
            if [(d, n, s) for d, n, s, _ in tensors] != reference_tensors[ref_file, signature]:
                raise ValueError(f"{other_file} ({signature}) has tensors {tensors}, unlike "
                                 f"{ref_file}: {reference_tensors[ref_file, signature]}.")
            for _, name, _, dtype in tensors:
                dtypes.setdefault(dtype, set()).add(name)
        listing = "; ".join(f"{', '.join(f'`{n}`' for n in sorted(names))}: {dtype}"
                            for dtype, names in sorted(dtypes.items()))
        lines += ["", f"The `_{quantization}` files of the same export were checked to have "
                      f"the same signatures, tensor names and shapes (dtypes: {listing})."]
    return "\n".join(lines) + "\n"


def _markers(name: str) -> tuple[str, str]:
    return (f"<!-- BEGIN GENERATED {name} (tflite/make_readme_tables.py) -->",
            f"<!-- END GENERATED {name} -->")


def generated_block(readme_text: str, name: str) -> str:
    """The text between a generated block's markers."""
    begin, end = _markers(name)
    match = re.search(re.escape(begin) + r"\n(.*?)" + re.escape(end), readme_text, re.S)
    if not match:
        raise ValueError(f"The README has no generated block '{name}' ({begin} ... {end}).")
    return match.group(1)


def replace_block(readme_text: str, name: str, content: str) -> str:
    generated_block(readme_text, name)  # raises when the markers are missing
    begin, end = _markers(name)
    pattern = re.escape(begin) + r"\n.*?" + re.escape(end)
    return re.sub(pattern, lambda _: f"{begin}\n{content}{end}", readme_text, flags=re.S)


def update_readme(readme_path: str, export_dir: str, description: str) -> None:
    """Rewrites the README's `tensors` and `manifest` blocks from `export_dir`."""
    with open(readme_path) as f:
        text = f.read()
    text = replace_block(text, "tensors", tensor_table(export_dir, description))
    text = replace_block(text, "manifest", manifest_table(read_manifest(export_dir)))
    temporary = readme_path + ".tmp"
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, readme_path)


# The export the README's tables describe (and the tests rebuild to check them).
REFERENCE_MODEL = "resnet18_byot"
REFERENCE_OPTIONS = {"num_classes": 10, "width_multiplier": 0.125}


def reference_model():
    """A fresh (untrained) model of the README's reference configuration, recording the
    CIFAR-10 normalisation as byot-train would."""
    from byot_keras import zoo
    from byot_keras.data import CIFAR_NORMALIZATION

    model = zoo.create_model(REFERENCE_MODEL, **REFERENCE_OPTIONS)
    model.input_normalization = CIFAR_NORMALIZATION
    return model


def reference_description() -> str:
    options = ", ".join(f"{k}={v}" for k, v in REFERENCE_OPTIONS.items())
    return f"`zoo.{REFERENCE_MODEL}({options})`, CIFAR-size input"
