"""`byot-eval`: evaluate a saved multi-exit model the way `byot-train` reports it.

    byot-eval --model_file runs/r18/model.keras --dataset cifar100 --data_dir ~/tensorflow_datasets

writes `<output_dir>/eval_report.json` and `eval_report.png` (default: beside the model
file) and prints the one-line summary.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS


def evaluate_model_file(model_file: str, dataset: str, data_dir: str | None = None, *,
                        image_size: int | None = None, test_examples: int | None = None,
                        batch_size: int = 256, output_dir: str | None = None,
                        baseline_accuracy: float | None = None, seed: int = 0,
                        name: str = "eval_report") -> dict:
    """Evaluates `model_file` on the test split of `dataset`; writes and returns the
    report (per-exit and ensemble accuracy, params, FLOPs, early-exit table).

    Example:
        >>> report = evaluate_model_file("runs/digits/model.keras", "digits")
        >>> report["accuracy"]["ensemble"] > 0.1
        True
    """
    from byot_keras.data import pipeline
    from byot_keras.export.cli import load_trained_model
    from byot_keras.train import report as report_lib
    from byot_keras.train.trainer import evaluate_exits

    folder = output_dir or os.path.dirname(os.path.abspath(model_file))
    check_report_files(folder, name)
    model = load_trained_model(model_file)
    source = pipeline.load_source(dataset, data_dir, image_size=image_size,
                                  test_examples=test_examples, train_examples=1, seed=seed,
                                  verify_images=False)
    expected = tuple(model.network.input.shape[1:])
    if tuple(source.image_shape) != expected:
        raise ValueError(f"{model_file} takes images of shape {expected}; {dataset} gives "
                         f"{tuple(source.image_shape)} (set --image_size for image folders).")
    if model.num_classes != source.num_classes:
        raise ValueError(f"{model_file} has {model.num_classes} classes; {dataset} has "
                         f"{source.num_classes}.")
    evaluation = evaluate_exits(model, pipeline.evaluation_dataset(source, batch_size))
    training_config = _training_config(model_file)
    config = {"model": training_config.get("model", model.name),
              "method": training_config.get("method") or getattr(
                  getattr(model, "objective", None), "method", None),
              "baseline_accuracy": baseline_accuracy, "model_file": model_file,
              "dataset": dataset, "data_dir": data_dir, "test_examples": test_examples}
    report = report_lib.build_report(model=model, config=config, data=source.describe(),
                                     evaluation=evaluation, training=None,
                                     model_file=model_file)
    report["training_config"] = training_config or None
    report["written_by"] = "byot-eval"
    report_lib.write_report(report, folder, name=name)
    return report


def check_report_files(folder: str, name: str = "eval_report") -> None:
    """byot-eval writes `<name>.json` and `<name>.png`: it replaces those of an earlier
    byot-eval and refuses to overwrite files of the same names that it did not write."""
    from byot_keras.folders import OutputFolderError, require_folder_path

    require_folder_path(folder)
    files = [os.path.join(folder, f"{name}.{suffix}") for suffix in ("json", "png")]
    present = [path for path in files if os.path.lexists(path)]
    if not present:
        return
    try:
        with open(files[0]) as f:
            ours = json.load(f).get("written_by") == "byot-eval"
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise OutputFolderError(
            f"{' and '.join(present)} exist{'s' if len(present) == 1 else ''} and "
            f"{'was' if len(present) == 1 else 'were'} not written by byot-eval: move "
            f"{'it' if len(present) == 1 else 'them'} away or choose another --output_dir.")


def _training_config(model_file: str) -> dict:
    """The config.json byot-train wrote beside the model file, if any."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_file)), "config.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _quiet_absl_logging() -> None:
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # tensorflow-datasets' INFO lines


def main(argv):
    del argv
    _quiet_absl_logging()
    try:
        report = evaluate_model_file(
            FLAGS.model_file, FLAGS.dataset, FLAGS.data_dir, image_size=FLAGS.image_size,
            test_examples=FLAGS.test_examples, batch_size=FLAGS.batch_size,
            output_dir=FLAGS.output_dir, baseline_accuracy=FLAGS.baseline_accuracy)
    except ValueError as error:
        print(f"byot-eval: error: {error}", file=sys.stderr)
        sys.exit(1)
    print(report["summary"])


def _define_flags():
    from byot_keras.data.pipeline import DATASETS

    flags.DEFINE_string("model_file", None, "A .keras file saved by byot-train.", required=True)
    flags.DEFINE_enum("dataset", "cifar100", list(DATASETS), "Data set (its test split).")
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir or image folder.")
    flags.DEFINE_integer("image_size", None, "Input size for imagenet2012 / image_folder.")
    flags.DEFINE_integer("test_examples", None, "Use only the first N test examples.")
    flags.DEFINE_integer("batch_size", 256, "Evaluation batch size.")
    flags.DEFINE_string("output_dir", None, "Where eval_report.json/png go (default: beside "
                        "the model file); an earlier byot-eval's report is replaced, other "
                        "files of those names are refused.")
    flags.DEFINE_float("baseline_accuracy", None, "Baseline accuracy (0-1) for the plot.")


def run():
    """Console-script entry point (`byot-eval`)."""
    from byot_keras import commands

    commands.run("byot-eval", __doc__, _define_flags, main)


if __name__ == "__main__":
    run()
