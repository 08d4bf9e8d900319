"""`byot-qat` and `byot-prune`: quantization-aware training or magnitude pruning of a
trained multi-exit model with tfmot, then per-exit and cascade TFLite files.

    byot-qat --model_file runs/quickstart/model.keras --dataset digits \\
        --output_dir tflite/quickstart_qat
    byot-prune --model_file runs/quickstart/model.keras --dataset digits \\
        --target_sparsity 0.5 --output_dir tflite/quickstart_pruned

Each runs in its own process: importing tfmot switches TensorFlow to legacy Keras, so
it must not share a process with Keras 3 work (see `byot_keras.compress`).
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def load_training_data(dataset: str, data_dir: str | None, train_examples: int,
                       calibration: int, evaluation: int):
    """(train images, train labels, representative images, (eval images, eval labels),
    normalization, class names) of `dataset` ("digits", "cifar10", "cifar100")."""
    from byot_keras import data

    if dataset == "digits":
        (x_train, y_train), (x_test, y_test) = data.load_digits()
        x_train, y_train = x_train[:train_examples or None], y_train[:train_examples or None]
        return (x_train, y_train, x_train[:calibration], (x_test[:evaluation],
                y_test[:evaluation]), data.DIGITS_NORMALIZATION, data.DIGITS_CLASSES)
    split = f"train[:{train_examples}]" if train_examples else "train"
    x_train, y_train = data.load_cifar(dataset, split, data_dir)
    eval_data = data.load_cifar(dataset, f"test[:{evaluation}]", data_dir)
    return (x_train, y_train, x_train[:calibration], eval_data, data.CIFAR_NORMALIZATION,
            data.cifar_class_names(dataset, data_dir))


def _builder_kwargs() -> dict:
    try:
        kwargs = json.loads(FLAGS.builder_kwargs) if FLAGS.builder_kwargs else {}
    except ValueError as error:
        raise app.UsageError(f"--builder_kwargs is not valid JSON ({error}); give a JSON "
                             "object, e.g. '{\"stem_type\": \"imagenet\"}'.") from None
    if not isinstance(kwargs, dict):
        raise app.UsageError(f"--builder_kwargs must be a JSON object, got {kwargs!r}.")
    if FLAGS.width_multiplier is not None:
        kwargs["width_multiplier"] = FLAGS.width_multiplier
    return kwargs


def _prepare():
    """Checks the extra first (a clear message, before anything slow), then loads."""
    from byot_keras.compress import extra
    from byot_keras.export.cli import load_trained_model

    extra.require()
    model = load_trained_model(FLAGS.model_file)
    data = load_training_data(FLAGS.dataset, FLAGS.data_dir, FLAGS.train_examples,
                              FLAGS.calibration_examples, FLAGS.eval_examples)
    return model, data


def _report(manifest: dict, output_dir: str) -> None:
    compression = manifest["compression"]
    float_accuracy = compression.get("float_keras_accuracy", {})
    print(f"wrote {output_dir} ({compression['method']}):")
    print(f"  {'file':<30}{'bytes':>10}{'gzip':>10}{'float':>8}{'keras':>8}{'file':>8}")
    for entry in manifest["exits"]:
        for info in entry["files"].values():
            row = f"  {info['file']:<30}{info['bytes']:>10,}{info['gzip_bytes']:>10,}"
            if "accuracy" in info:
                row += (f"{float_accuracy.get(entry['exit'], float('nan')):>8.4f}"
                        f"{entry['keras_accuracy']:>8.4f}{info['accuracy']:>8.4f}")
            print(row)
    if "kernel_sparsity" in compression:
        print(f"  kernel sparsity {compression['kernel_sparsity']:.4f} "
              f"(target {compression['target_sparsity']})")
    print(json.dumps({"manifest": os.path.join(output_dir, "manifest.json")}))


def _compress(module: str, function: str, suffix: str, **options) -> None:
    """Loads the model and data, runs `byot_keras.compress.<module>.<function>` (imported
    only after the extra is checked) with the flags both commands share plus `options`,
    and prints the report."""

    def job():
        import importlib

        from absl import logging

        from byot_keras.export.cli import model_normalization
        from byot_keras.folders import require_folder_path
        from byot_keras.options import POSITIVE

        builder_kwargs = _builder_kwargs()  # flags first, before anything is loaded
        POSITIVE.check("learning_rate", FLAGS.learning_rate)
        if FLAGS.output_dir:
            require_folder_path(FLAGS.output_dir)
        model, (x, y, representative, eval_data, normalization, labels) = _prepare()
        # The model's recorded normalisation wins; the data follows it.
        normalization, in_model_units = model_normalization(model, normalization)
        x, representative = in_model_units(x), in_model_units(representative)
        if eval_data is not None:
            eval_data = (in_model_units(eval_data[0]), eval_data[1])
        compress = getattr(importlib.import_module(f"byot_keras.compress.{module}"), function)
        logging.set_verbosity(logging.WARNING)
        output_dir = FLAGS.output_dir or os.path.join("tflite", f"{model.name}_{suffix}")
        manifest = compress(
            model, x, y, output_dir, model_name=FLAGS.model, builder_kwargs=builder_kwargs,
            epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
            learning_rate=FLAGS.learning_rate, eval_data=eval_data,
            representative_data=representative, class_names=labels,
            normalization=normalization, int8_io=FLAGS.int8_io, cascade=FLAGS.cascade,
            seed=FLAGS.seed, verbose=2, allow_other_files=FLAGS.allow_other_files,
            **options,
        )
        _report(manifest, output_dir)

    job()


def qat_main(argv):
    del argv
    _compress("qat", "quantization_aware_training", "qat")


def prune_main(argv):
    del argv
    _compress("prune", "magnitude_pruning", "pruned", target_sparsity=FLAGS.target_sparsity,
              quantizations=FLAGS.quantizations)


def _define_common_flags(epochs: int, learning_rate: float):
    # Defined when the command runs, not at import: absl flags are global, and two
    # commands imported into one process (e.g. by tests) would clash.
    flags.DEFINE_string("model_file", None, "A .keras file saved from a byot_keras model.",
                        required=True)
    flags.DEFINE_string("model", None, "Registry name of its builder (default: the saved "
                        "model's name).")
    flags.DEFINE_float("width_multiplier", None, "Its width (default: inferred).")
    flags.DEFINE_string("builder_kwargs", None, "More builder keywords as a JSON object, "
                        "e.g. '{\"stem_type\": \"imagenet\"}'.")
    flags.DEFINE_enum("dataset", "digits", ["digits", "cifar10", "cifar100"],
                      "Fine-tuning (train split), calibration and evaluation (test) data.")
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir for cifar10/100.")
    flags.DEFINE_integer("train_examples", 0, "Training images to fine-tune on (0: all).",
                         lower_bound=0)
    flags.DEFINE_integer("epochs", epochs, "Fine-tuning epochs.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 64, "Batch size.", lower_bound=1)
    flags.DEFINE_float("learning_rate", learning_rate, "Peak SGD learning rate (cosine "
                       "decay to 0; a fraction of the training one).")
    flags.DEFINE_integer("calibration_examples", 200, "Training images for int8 ranges "
                         "a file still lacks after QAT, and for pruned int8 files.")
    flags.DEFINE_integer("eval_examples", 1000, "Test images for the manifest's accuracy.")
    flags.DEFINE_bool("int8_io", False, "int8 inputs/outputs for the int8 files.")
    flags.DEFINE_bool("cascade", True, "Also write the cascade segments.")
    flags.DEFINE_integer("seed", 0, "Random seed for the fine-tuning order.")
    flags.DEFINE_string("output_dir", None, "Export folder (default tflite/<model name>_"
                        "<qat|pruned>). An export replaces only what an earlier export wrote "
                        "there.")
    flags.DEFINE_bool("allow_other_files", False, "Export into an --output_dir that holds "
                      "files no export wrote (they are kept, never overwritten).")


def _expected_errors() -> tuple:
    from byot_keras.compress.extra import MissingExtraError
    from byot_keras.compress.qat import UnsupportedLayersError

    return (MissingExtraError, UnsupportedLayersError, RuntimeError)


def run_qat():
    """Console-script entry point (`byot-qat`)."""
    from byot_keras import commands

    commands.run("byot-qat", __doc__, lambda: _define_common_flags(epochs=1,
                                                                   learning_rate=0.002),
                 qat_main, errors=_expected_errors())


def _define_prune_flags():
    _define_common_flags(epochs=2, learning_rate=0.005)
    flags.DEFINE_float("target_sparsity", 0.5, "Share of every Conv2D/Dense kernel set to "
                       "zero.", lower_bound=0.01, upper_bound=0.99)
    flags.DEFINE_list("quantizations", ["float32", "int8"],
                      "Files to write of the pruned model: float32, float16, dynamic_int8, "
                      "int8.")


def run_prune():
    """Console-script entry point (`byot-prune`)."""
    from byot_keras import commands

    commands.run("byot-prune", __doc__, _define_prune_flags, prune_main,
                 errors=_expected_errors())
