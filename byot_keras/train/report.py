"""The end-of-run report: `report.json` (accuracy and cost of every exit, the ensemble,
training time, the exact configuration and library versions), `report.png` (each
exit's accuracy against its FLOPs) and a one-line summary."""

from __future__ import annotations

import os
import platform
import sys

import keras

from byot_keras.saving import replace_atomically, write_json_atomically


def library_versions() -> dict:
    """Versions of Python and the libraries that shape a run's result."""
    import numpy
    import tensorflow as tf

    import byot_keras

    versions = {"python": sys.version.split()[0], "platform": platform.platform(),
                "byot_keras": byot_keras.__version__, "tensorflow": tf.__version__,
                "keras": keras.__version__, "keras_backend": keras.backend.backend(),
                "numpy": numpy.__version__}
    if keras.backend.backend() == "jax":
        import jax

        versions["jax"] = jax.__version__
    elif keras.backend.backend() == "torch":
        import torch

        versions["torch"] = torch.__version__
    try:
        import tensorflow_datasets as tfds

        versions["tensorflow_datasets"] = tfds.__version__
    except ImportError:
        pass
    return versions


def build_report(*, model, config: dict, data: dict, evaluation: dict, training: dict,
                 model_file: str | None = None) -> dict:
    """The report as a JSON-ready dict (see the module docstring)."""
    accuracy = evaluation["accuracy"]
    exits = [{**cost, "accuracy": accuracy[cost["exit"]]} for cost in model.exit_costs()]
    report = {
        "model": config.get("model", model.name),
        "method": config.get("method"),
        "dataset": data,
        "accuracy": accuracy,
        "exits": exits,
        "ensemble": {"accuracy": accuracy["ensemble"],
                     # The ensemble runs every exit: the cascade's full cost.
                     "flops": 2 * exits[-1]["cascade_macs"]},
        "params": {"total": int(model.count_params()),
                   "deployed_deepest_exit": exits[-1]["params"]},
        "early_exit": evaluation.get("early_exit"),
        "training": training,
        "config": config,
        "versions": library_versions(),
        "model_file": model_file,
    }
    baseline = config.get("baseline_accuracy")
    if baseline is not None:
        # The deepest exit is the unchanged backbone: the baseline's cost.
        report["baseline"] = {"name": config.get("baseline_name", "baseline"),
                              "accuracy": baseline, "flops": exits[-1]["flops"]}
    report["summary"] = summary_line(report)
    return report


def summary_line(report: dict) -> str:
    """One line: model, method, data, each exit's and the ensemble's accuracy, time.

    Example:
        >>> summary_line({"model": "m", "method": "byot", "dataset": {"name": "digits"},
        ...               "accuracy": {"exit_1": 0.5, "ensemble": 0.75},
        ...               "training": {"epochs_completed": 2, "train_seconds": 3.0}})
        'm (byot) on digits: exits 50.00 %, ensemble 75.00 % after 2 epochs, 3.0 s of training'
    """
    accuracy = report["accuracy"]
    exits = " / ".join(f"{100 * v:.2f}" for k, v in accuracy.items() if k != "ensemble")
    line = (f"{report['model']} ({report['method']}) on {report['dataset']['name']}: exits "
            f"{exits} %, ensemble {100 * accuracy['ensemble']:.2f} %")
    training = report.get("training") or {}
    if "epochs_completed" in training:
        line += (f" after {training['epochs_completed']} epochs, "
                 f"{training.get('train_seconds', 0):.1f} s of training")
    return line


def write_report(report: dict, folder: str, name: str = "report") -> dict:
    """Writes `<name>.png`, then `<name>.json` into `folder` (atomically); returns paths.
    The JSON records the PNG's SHA-256 in `report["file_sha256"]` (beside what the caller
    recorded there), so that a later run replaces the PNG only while it is this one."""
    from byot_keras.folders import file_sha256

    paths = {"png": plot_report(report, os.path.join(folder, f"{name}.png"))}
    report["file_sha256"] = {**(report.get("file_sha256") or {}),
                             f"{name}.png": file_sha256(paths["png"])}
    paths["json"] = write_json_atomically(report, os.path.join(folder, f"{name}.json"))
    return paths


def plot_report(report: dict, path: str) -> str:
    """Accuracy of each exit against its FLOPs (and the ensemble's, and the baseline
    when the report has one), saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4.2), dpi=120)
    flops = [e["flops"] / 1e6 for e in report["exits"]]
    accuracy = [100 * e["accuracy"] for e in report["exits"]]
    axes.plot(flops, accuracy, "o-", color="tab:blue", label="exits")
    for e, x, y in zip(report["exits"], flops, accuracy):
        axes.annotate(e["exit"], (x, y), textcoords="offset points", xytext=(4, -12),
                      fontsize=8)
    ensemble = report["ensemble"]
    axes.plot([ensemble["flops"] / 1e6], [100 * ensemble["accuracy"]], "s",
              color="tab:green", label="ensemble (all exits)")
    if report.get("baseline"):
        baseline = report["baseline"]
        axes.plot([baseline["flops"] / 1e6], [100 * baseline["accuracy"]], "*",
                  markersize=12, color="tab:red", label=baseline["name"])
    axes.set_xlabel("MFLOPs per image")
    axes.set_ylabel(f"top-1 accuracy on {report['dataset']['name']} (%)")
    axes.set_title(f"{report['model']} ({report['method']})", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    try:
        replace_atomically(path, figure.savefig, suffix=".png")
    finally:
        plt.close(figure)
    return path
