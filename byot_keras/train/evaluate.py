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
        >>> from byot_keras import zoo
        >>> model = zoo.alexnet_byot(num_classes=10, width_multiplier=0.125)
        >>> model.save("model.keras")  # yours: trained, e.g. by byot-train
        >>> report = evaluate_model_file("model.keras", "digits", test_examples=64)
        >>> sorted(report["accuracy"])  # also written to eval_report.json
        ['ensemble', 'exit_1', 'exit_2', 'exit_3']
    """
    from byot_keras.data import pipeline
    from byot_keras.export.cli import load_trained_model
    from byot_keras.options import FRACTION, integer_at_least
    from byot_keras.saving import check_model_file
    from byot_keras.train import report as report_lib
    from byot_keras.train.trainer import evaluate_exits

    # The arguments first: nothing is loaded for a request that cannot work.
    integer_at_least(1).check("batch_size", batch_size)
    if baseline_accuracy is not None:
        FRACTION.check("baseline_accuracy", baseline_accuracy)
    check_model_file(model_file)  # a folder or a damaged file is named as such, first
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
    byot-eval and refuses to overwrite files of the same names that it did not write
    (nor a PNG the user put in place of an earlier byot-eval's: the JSON records its
    SHA-256)."""
    from byot_keras.folders import (
        OutputFolderError,
        changed_since_written,
        recorded_hashes,
        require_folder_path,
    )

    require_folder_path(folder)
    files = [os.path.join(folder, f"{name}.{suffix}") for suffix in ("json", "png")]
    present = [path for path in files if os.path.lexists(path)]
    if not present:
        return
    try:
        with open(files[0]) as f:
            report = json.load(f)
        ours = report.get("written_by") == "byot-eval"
    except (OSError, ValueError, AttributeError):
        ours = False
    if ours:
        hashes = recorded_hashes(report.get("file_sha256"))
        # A report written before the hashes was written before its PNG: not datable.
        changed = changed_since_written(folder, [f"{name}.png"], f"{name}.json",
                                        hashes) if hashes is not None else []
        present = [os.path.join(folder, f) for f in changed]
        if not present:
            return
    raise OutputFolderError(
        f"{' and '.join(present)} exist{'s' if len(present) == 1 else ''} and "
        f"{'was' if len(present) == 1 else 'were'} not written by byot-eval: move "
        f"{'it' if len(present) == 1 else 'them'} away or choose another --output_dir.")


def _training_config(model_file: str) -> dict:
    """The settings of the byot-train run beside the model file, if any (a config.json
    that is not a run's is ignored)."""
    from byot_keras.train.run_folder import WRITTEN_BY, is_run_config

    path = os.path.join(os.path.dirname(os.path.abspath(model_file)), "config.json")
    try:
        with open(path) as f:
            values = json.load(f)
    except (OSError, ValueError):
        return {}
    if not is_run_config(values):
        return {}
    return {k: v for k, v in values.items() if k != WRITTEN_BY}


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
    flags.DEFINE_integer("batch_size", 256, "Evaluation batch size.", lower_bound=1)
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
