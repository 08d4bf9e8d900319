"""`byot-export`: convert a trained multi-exit model to per-exit TFLite files and the
early-exit cascade (see byot_keras.export.export_tflite).

    byot-export --model_file runs/quickstart/model.keras --dataset digits \\
        --quantizations float32,int8 --output_dir tflite/quickstart
    byot-export --model resnet18_byot --num_classes 100 --weights r18_weights.npz \\
        --output_dir tflite/r18     # a registry name and its trained weights
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def load_trained_model(model_file: str | None, model_name: str | None = None,
                       weights: str | None = None, **builder_kwargs):
    """A trained multi-exit model: from a .keras file (`byot_keras.saving.load_model`,
    which names a missing, damaged or not-.keras file), or a registry name with its
    trained `weights`, as `zoo.<builder>(weights=...)` takes them (a registered checkpoint
    name, or a .npz, .keras or .weights.h5 file)."""
    from byot_keras import zoo
    from byot_keras.networks.common import check_builder_options
    from byot_keras.saving import load_model

    if bool(model_file) == bool(model_name):
        raise ValueError("Give exactly one of --model_file (a .keras file) or --model "
                         "(a registry name, with --weights).")
    if model_file:
        if weights:
            raise ValueError("--weights goes with --model; a --model_file holds its own "
                             "weights.")
        return load_model(model_file)
    zoo.get_model_builder(model_name)  # an unknown name, then bad options, come first
    check_builder_options(builder_kwargs, model_name)
    if not weights:
        raise ValueError(
            f"--model {model_name} needs --weights (older name: --weights_file), the trained "
            "weights: a registered checkpoint name (zoo.list_pretrained()) or a .npz, .keras "
            "or .weights.h5 file. Without them the export would hold untrained, random "
            "weights.")
    return zoo.create_model(model_name, weights=weights, **builder_kwargs)


def load_export_data(dataset: str, data_dir: str | None, calibration: int, evaluation: int):
    """(representative images, (eval images, eval labels), normalization, labels)."""
    from byot_keras import data

    if dataset == "none":
        return None, None, None, None
    if dataset == "digits":
        (x_train, _), (x_test, y_test) = data.load_digits()
        return (x_train[:calibration], (x_test[:evaluation], y_test[:evaluation]),
                data.DIGITS_NORMALIZATION, data.DIGITS_CLASSES)
    x_train, _ = data.load_cifar(dataset, f"train[:{calibration}]", data_dir)
    eval_data = data.load_cifar(dataset, f"test[:{evaluation}]", data_dir)
    return (x_train, eval_data, data.CIFAR_NORMALIZATION,
            data.cifar_class_names(dataset, data_dir))


def parse_exits(entries: list[str]) -> list[int] | None:
    """--exits entries as exit numbers (None: all)."""
    try:
        return [int(k) for k in entries] or None
    except ValueError:
        raise ValueError(f"--exits {','.join(entries)}: give exit numbers, e.g. --exits 1,3."
                         ) from None


def check_dataset_classes(dataset: str, eval_data, labels, num_classes: int) -> None:
    """The data set must have the model's classes: another data set's labels would give
    meaningless accuracies."""
    if eval_data is None:
        return
    dataset_classes = len(labels) if labels is not None else {"cifar10": 10,
                                                               "cifar100": 100}.get(dataset)
    if dataset_classes is not None and dataset_classes != num_classes:
        raise ValueError(f"--dataset {dataset} has {dataset_classes} classes; the model has "
                         f"{num_classes}. Give the data set the model was trained on, or "
                         "--dataset none.")


def parse_model_info(entries: list[str]) -> dict[str, str]:
    """--model_info entries `key=value` as a dict.

    Example:
        >>> parse_model_info(["version=2", "license=MIT"])
        {'version': '2', 'license': 'MIT'}
    """
    pairs = [entry.split("=", 1) for entry in entries]
    bad = [entry for entry, pair in zip(entries, pairs) if len(pair) != 2 or not pair[1]]
    if bad:
        raise ValueError(f"--model_info {','.join(bad)}: give key=value entries, e.g. "
                         "--model_info version=2,license=CC-BY-4.0.")
    return {key.strip(): value.strip() for key, value in pairs}


def model_normalization(model, dataset_normalization: dict | None
                        ) -> tuple[dict | None, Callable]:
    """(normalisation for the export, function re-expressing the data set's images in
    it): the normalisation the model recorded (byot-train / byot-quickstart record the
    training data's), else the data set's own. The export builds it into the files.

    Example:
        >>> from byot_keras import zoo
        >>> from byot_keras.data import CIFAR_NORMALIZATION
        >>> model = zoo.alexnet_byot(num_classes=2, width_multiplier=0.125)
        >>> model_normalization(model, CIFAR_NORMALIZATION)[0] == CIFAR_NORMALIZATION
        True
    """
    from byot_keras.normalization import from_pixels, to_pixels

    recorded = getattr(model, "input_normalization", None)
    if recorded is None or dataset_normalization is None or all(
            np.allclose(recorded[key], dataset_normalization[key]) for key in ("mean", "std")):
        return recorded or dataset_normalization, lambda images: images

    def convert(images):
        return None if images is None else from_pixels(
            to_pixels(images, dataset_normalization), recorded)

    return recorded, convert


def main(argv):
    del argv
    import keras
    from absl import logging

    from byot_keras.backend.export import EXPORT_BACKENDS

    if keras.backend.backend() not in EXPORT_BACKENDS:
        # torch: Keras cannot trace the model into a TensorFlow graph; the .keras file
        # loads on TensorFlow with the same weights, so export there.
        from byot_keras.backend.process import rerun_on_backend

        rerun_on_backend("tensorflow", "byot_keras.export.cli", sys.argv)

    from byot_keras.export import export_tflite
    from byot_keras.export.tflite import (
        CALIBRATED,
        MODEL_INFO_KEYS,
        check_exit_outputs,
        check_quantizations,
    )
    from byot_keras.folders import require_folder_path

    logging.set_verbosity(logging.WARNING)  # SavedModel/converter INFO lines per file

    # Flags first: nothing is loaded or converted for a request that cannot work.
    quantizations = check_quantizations(FLAGS.quantizations, flag="--quantizations")
    calibrated = [q for q in quantizations if q in CALIBRATED]
    if calibrated and FLAGS.dataset == "none":
        raise app.UsageError(f"--quantizations {','.join(calibrated)} needs calibration "
                             "data: pass --dataset digits|cifar10|cifar100.")
    exits = parse_exits(FLAGS.exits)
    exit_outputs = check_exit_outputs(FLAGS.exit_outputs, flag="--exit_outputs")
    model_info = parse_model_info(FLAGS.model_info)
    unknown = sorted(set(model_info) - set(MODEL_INFO_KEYS))
    if unknown:
        raise ValueError(f"--model_info: unknown keys {unknown}; valid: "
                         f"{', '.join(MODEL_INFO_KEYS)}.")
    if FLAGS.output_dir:
        require_folder_path(FLAGS.output_dir)
    if FLAGS.weights and FLAGS.weights_file:
        raise ValueError("Give --weights only (--weights_file is its deprecated name).")
    model = load_trained_model(FLAGS.model_file, FLAGS.model,
                               FLAGS.weights or FLAGS.weights_file,
                               **({"num_classes": FLAGS.num_classes,
                                   "width_multiplier": FLAGS.width_multiplier}
                                  if FLAGS.model else {}))
    representative, eval_data, normalization, labels = load_export_data(
        FLAGS.dataset, FLAGS.data_dir, FLAGS.calibration_examples, FLAGS.eval_examples)
    check_dataset_classes(FLAGS.dataset, eval_data, labels, model.num_classes)
    normalization, in_model_units = model_normalization(model, normalization)
    representative = in_model_units(representative)
    if eval_data is not None:
        eval_data = (in_model_units(eval_data[0]), eval_data[1])
    output_dir = FLAGS.output_dir or os.path.join("tflite", model.name)
    manifest = export_tflite(
        model, output_dir, quantizations=quantizations, int8_io=FLAGS.int8_io,
        representative_data=representative, eval_data=eval_data, labels=labels,
        normalization=normalization, exit_outputs=exit_outputs, cascade=FLAGS.cascade,
        multi_signature=FLAGS.multi_signature, exits=exits,
        max_calibration_examples=FLAGS.calibration_examples,
        int8_float_classifier=FLAGS.int8_float_classifier, int8_equalize=FLAGS.int8_equalize,
        int8_trunk=FLAGS.int8_trunk, model_info=model_info,
        allow_other_files=FLAGS.allow_other_files,
    )
    print(f"wrote {output_dir}:")
    for entry in manifest["exits"]:
        for info in entry["files"].values():
            accuracy = info.get("accuracy")
            print(f"  {info['file']:<28}{info['bytes']:>10,} bytes"
                  + (f"  top-1 {accuracy:.4f}" if accuracy is not None else ""))
    for info in (manifest["multi_signature"] or {"files": {}})["files"].values():
        print(f"  {info['file']:<28}{info['bytes']:>10,} bytes  (signatures "
              f"{', '.join(manifest['multi_signature']['signatures'])})")
    print(json.dumps({"manifest": os.path.join(output_dir, "manifest.json")}))


def _define_flags():
    # Defined when the command runs, not at import: absl flags are global, and two
    # commands imported into one process (e.g. by tests) would clash.
    flags.DEFINE_string("model_file", None, "A .keras file saved from a byot_keras model.")
    flags.DEFINE_string("model", None, "Or: a registry name, with --weights.")
    flags.DEFINE_string("weights", None, "The trained weights of --model, as "
                        "zoo.<model>(weights=...) takes them: a registered checkpoint name "
                        "(zoo.list_pretrained()) or a .npz, .keras or .weights.h5 file.")
    flags.DEFINE_string("weights_file", None, "Deprecated name of --weights.")
    flags.DEFINE_integer("num_classes", 10, "Classes of --model.")
    flags.DEFINE_float("width_multiplier", 1.0, "Width of --model.")
    flags.DEFINE_string("output_dir", None, "Export folder (default tflite/<model name>). "
                        "An export replaces only what an earlier export wrote there.")
    flags.DEFINE_bool("allow_other_files", False, "Export into an --output_dir that holds "
                      "files no export wrote (they are kept, never overwritten).")
    flags.DEFINE_list("quantizations", ["float32"],
                      "Any of float32, float16, dynamic_int8, int8 (full integer) and the "
                      "experimental int16x8 (int16 activations: closest to float, slow on "
                      "CPU).")
    flags.DEFINE_bool("int8_io", False, "Integer inputs/outputs for the int8 files: uint8 "
                      "image (0..255 pixels) and probabilities, int8 logits and trunk "
                      "tensors.")
    flags.DEFINE_enum("exit_outputs", "probabilities", ["probabilities", "logits"],
                      "What the exit_<k> files and model.tflite return (the cascade "
                      "segments always return logits).")
    flags.DEFINE_list("model_info", [], "Metadata written into every file, key=value: "
                      "version (default: a hash of the weights), author (default "
                      "byot-keras), license (default: none).")
    flags.DEFINE_enum("dataset", "none", ["none", "digits", "cifar10", "cifar100"],
                      "Data for int8 calibration (train split) and accuracy (test split). "
                      "Its normalisation is built into the files only for a model that "
                      "records none (models from byot-train / byot-quickstart do).")
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir for cifar10/100.")
    flags.DEFINE_integer("calibration_examples", 200,
                         "Training images for int8 / int16x8 calibration.", lower_bound=1)
    flags.DEFINE_integer("eval_examples", 1000, "Test images for the manifest's accuracy.",
                         lower_bound=1)
    flags.DEFINE_list("exits", [], "Exits that get their own file (default all).")
    flags.DEFINE_bool("cascade", None, "Also write the cascade segments (default: yes, "
                      "unless the model's exits are side-by-side branches: method 'one').")
    flags.DEFINE_bool("multi_signature", True, "Also write model[_q].tflite: one signature "
                      "per exit (exit_1 ... exit_N), shared weights.")
    flags.DEFINE_bool("int8_float_classifier", True, "int8 files (without --int8_io) "
                      "compute each exit's final Dense layer in float (no tied logits).")
    flags.DEFINE_bool("int8_equalize", True, "Rescale depthwise -> 1x1 convolution pairs "
                      "before int8 calibration (same float function, less int8 error).")
    flags.DEFINE_bool("int8_trunk", True, "int8 cascade segments pass trunk_out -> trunk_in "
                      "as int8 with one scale (no float round trip between segments).")


def run():
    """Console-script entry point (`byot-export`)."""
    from byot_keras import commands

    commands.run("byot-export", __doc__, _define_flags, main, errors=(RuntimeError,))


if __name__ == "__main__":
    run()
