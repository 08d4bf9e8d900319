"""`byot-reproduce`: the BYOT paper's CIFAR-100 rows, trained with its official recipe,
beside the published numbers.

    byot-reproduce --networks resnet18 --data_dir ~/tensorflow_datasets \\
        --output_dir runs/reproduce --precision mixed_float16        # on a GPU
    byot-reproduce --smoke --output_dir /tmp/reproduce_smoke        # the same code, tiny

For each network two `byot-train` runs go into `<output_dir>/<network>_ce` (the plain
network, cross-entropy: the paper's baseline column) and `<output_dir>/<network>_byot`
(the multi-exit network with BYOT), with the `byot_cifar` preset (250 epochs, SGD 0.9,
lr 0.1 divided by 10 at 1/3, 2/3 and epochs - 10, wd 5e-4, batch 128, crop + flip; the
official code's AutoAugment is not in Keras). Both are resumable: run the same command
again after an interruption. At the end `comparison.md` and `comparison.json` put each
exit's and the ensemble's top-1 next to the paper's (`byot_keras.published`).

`--smoke` runs the same code on tensorflow-datasets' mock CIFAR-100 (random images, a
few steps at 1/8 width): it checks the pipeline end to end, not the numbers.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
COMMAND = "byot-reproduce"
COMPARISON_FILES = ("comparison.json", "comparison.md")
REPRODUCIBLE = ("resnet18", "resnet50", "resnet101", "resnet152")
# The smoke setting: every stage of the real command, a few seconds of training.
SMOKE = dict(epochs=1, train_examples=64, test_examples=32, batch_size=32,
             eval_batch_size=32, width_multiplier=0.125, verbose="0")
SMOKE_MOCK_EXAMPLES = 64


def run_settings(network: str, method: str, data_dir: str | None, output_dir: str,
                 overrides: dict | None = None) -> dict:
    """The `make_config` keywords of one run: the `byot_cifar` preset on CIFAR-100."""
    model = network if method == "ce" else f"{network}_byot"
    return {"preset": "byot_cifar", "dataset": "cifar100", "data_dir": data_dir,
            "model": model, "method": method,
            "output_dir": os.path.join(output_dir, f"{network}_{method}"),
            **(overrides or {})}


def reproduce(networks=("resnet18",), data_dir: str | None = None,
              output_dir: str = "runs/reproduce", *, smoke: bool = False,
              overrides: dict | None = None) -> dict:
    """Trains (or resumes) the baseline and the BYOT run of every network, then writes
    and returns the comparison (`comparison.json`, `comparison.md` in `output_dir`).

    Args:
        networks: any of `REPRODUCIBLE` (the rows whose network is ours exactly).
        data_dir: tensorflow-datasets data_dir holding cifar100.
        smoke: tiny runs on mock data (see the module docstring).
        overrides: more `TrainConfig` settings for every run (e.g. `precision`,
            `epochs`, `strategy`).

    Example:
        >>> import tempfile  # smoke runs train two small networks: ~1 minute
        >>> comparison = reproduce(smoke=True, output_dir=tempfile.mkdtemp())  # doctest: +SKIP
        >>> [row["method"] for row in comparison["rows"]]  # doctest: +SKIP
        ['ce', 'byot']
    """
    from byot_keras.train import make_config, train
    from byot_keras.train.run_folder import inspect_run_dir

    networks = list(networks)
    unknown = [n for n in networks if n not in REPRODUCIBLE]
    if unknown or not networks:
        raise ValueError(f"--networks {unknown or networks}: the published rows this command "
                         f"reproduces are {', '.join(REPRODUCIBLE)}.")
    settings = {**(SMOKE if smoke else {}), **(overrides or {})}
    configs = [make_config(**run_settings(network, method, data_dir, output_dir, settings))
               for network in networks for method in ("ce", "byot")]  # all checked first
    # Every folder before any training: a refusal comes before hours of work.
    check_comparison_files(output_dir)
    for config in configs:
        inspect_run_dir(config.output_dir, config)
    reports = []
    for config in configs:
        if smoke:
            import tensorflow_datasets as tfds

            with tfds.testing.mock_data(num_examples=SMOKE_MOCK_EXAMPLES):
                reports.append(train(config))
        else:
            reports.append(train(config))
    comparison = compare(networks, reports, smoke=smoke)
    write_comparison(comparison, output_dir)
    return comparison


def compare(networks, reports, *, smoke: bool = False) -> dict:
    """Our accuracies (%) beside the published ones, one row per run."""
    from byot_keras.published import BASELINE, published_row

    rows = []
    for network, (ce, byot) in zip(networks, zip(reports[::2], reports[1::2])):
        paper = published_row(f"{network}_byot")
        baseline = published_row(network, BASELINE)
        for method, report, published in (("ce", ce, baseline), ("byot", byot, paper)):
            accuracy = report["accuracy"]
            exits = [round(100 * accuracy[k], 2) for k in sorted(
                (k for k in accuracy if k.startswith("exit_")), key=lambda k: int(k[5:]))]
            ensemble = round(100 * accuracy["ensemble"], 2) if method == "byot" else None
            rows.append({
                "network": network, "method": method, "model": report["config"]["model"],
                "exits": exits, "ensemble": ensemble,
                "published_exits": list(published.classifiers),
                "published_ensemble": published.ensemble,
                "deepest_difference": round(exits[-1] - published.classifiers[-1], 2),
                "epochs": report["training"]["epochs_completed"],
                "train_seconds": report["training"]["train_seconds"],
                "run_dir": report["config"]["output_dir"],
            })
    return {"smoke": smoke, "source": paper.source, "rows": rows}


def check_comparison_files(output_dir: str) -> None:
    """byot-reproduce writes `comparison.json` and `comparison.md` into `output_dir`: it
    replaces those of an earlier byot-reproduce (its comparison.json says so, and
    records comparison.md's SHA-256) and refuses files of those names it did not write.

    Raises:
        OutputFolderError: `output_dir` is a file, or holds such a file.
    """
    from byot_keras.folders import (
        OutputFolderError,
        changed_since_written,
        describe,
        recorded_hashes,
        require_folder_path,
    )

    folder = require_folder_path(output_dir)
    present = [name for name in COMPARISON_FILES if os.path.lexists(os.path.join(folder, name))]
    if not present:
        return
    try:
        with open(os.path.join(folder, "comparison.json")) as f:
            previous = json.load(f)
    except (OSError, ValueError):
        previous = None
    foreign = present
    if isinstance(previous, dict) and previous.get("written_by") == COMMAND:
        foreign = changed_since_written(folder, ["comparison.md"], "comparison.json",
                                        recorded_hashes(previous.get("file_sha256")) or {})
    if foreign:
        them = "it" if len(foreign) == 1 else "them"
        raise OutputFolderError(
            f"--output_dir '{output_dir}' already holds {describe(foreign)}, which {COMMAND} "
            f"did not write and would overwrite: move {them} away or choose another "
            "--output_dir.")


def write_comparison(comparison: dict, output_dir: str) -> dict[str, str]:
    """`comparison.json` and `comparison.md` in `output_dir` (replaced atomically); the
    JSON says who wrote both and records the Markdown's SHA-256 (see
    `check_comparison_files`)."""
    from byot_keras.folders import file_sha256
    from byot_keras.saving import write_text_atomically

    lines = ["# BYOT on CIFAR-100: this run against the paper", ""]
    if comparison["smoke"]:
        lines += ["**Smoke setting** (mock data, a few steps): the numbers are meaningless.",
                  ""]
    lines += ["| network | method | ours: exits, shallow to deep | ours: ensemble | paper: "
              "exits | paper: ensemble | deepest: ours - paper | epochs | training s |",
              "|---|---|---|---:|---|---:|---:|---:|---:|"]
    for row in comparison["rows"]:
        ensemble = "-" if row["ensemble"] is None else f"{row['ensemble']:.2f}"
        paper_ensemble = ("-" if row["published_ensemble"] is None
                          else f"{row['published_ensemble']:.2f}")
        lines.append(
            f"| {row['network']} | {row['method']} | "
            f"{' / '.join(f'{a:.2f}' for a in row['exits'])} | {ensemble} | "
            f"{' / '.join(f'{a:.2f}' for a in row['published_exits'])} | {paper_ensemble} | "
            f"{row['deepest_difference']:+.2f} | {row['epochs']} | {row['train_seconds']:.0f} |")
    lines += ["", f"Paper: {comparison['source']}. The `ce` row's paper column is the "
              "paper's baseline (the plain network).", ""]
    paths = {"json": os.path.join(output_dir, "comparison.json"),
             "md": os.path.join(output_dir, "comparison.md")}
    write_text_atomically(paths["md"], "\n".join(lines))
    record = {"written_by": COMMAND, **comparison,
              "file_sha256": {"comparison.md": file_sha256(paths["md"])}}
    write_text_atomically(paths["json"], json.dumps(record, indent=2))  # the record last
    return paths


def main(argv):
    del argv
    from absl import logging

    logging.set_verbosity(logging.ERROR)  # tensorflow-datasets' deprecation chatter
    overrides = {name: FLAGS[name].value for name in ("precision", "epochs", "batch_size",
                                                      "strategy")
                 if FLAGS[name].present}
    comparison = reproduce(FLAGS.networks, FLAGS.data_dir, FLAGS.output_dir,
                           smoke=FLAGS.smoke, overrides=overrides)
    print(open(os.path.join(FLAGS.output_dir, "comparison.md")).read())
    print(json.dumps({"comparison": os.path.join(FLAGS.output_dir, "comparison.json"),
                      "runs": [row["run_dir"] for row in comparison["rows"]]}))


def _define_flags():
    from byot_keras.train.config import PRECISIONS, STRATEGIES

    flags.DEFINE_list("networks", ["resnet18"], f"Rows to reproduce: {', '.join(REPRODUCIBLE)}.")
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir holding cifar100 "
                        "(tfds.load('cifar100') prepares it where the network allows).")
    flags.DEFINE_string("output_dir", "runs/reproduce", "Folder of the runs and the "
                        "comparison (each run in its own sub-folder; see byot-train's rule).")
    flags.DEFINE_bool("smoke", False, "Tiny runs on mock data: checks the command, not the "
                      "numbers.")
    flags.DEFINE_enum("precision", "float32", list(PRECISIONS), "Compute precision "
                      "(mixed_float16 on GPUs, mixed_bfloat16 on TPUs / recent CPUs).")
    flags.DEFINE_integer("epochs", 250, "Epochs (the paper's 250).", lower_bound=1)
    flags.DEFINE_integer("batch_size", 128, "Global batch size (the paper's 128).",
                         lower_bound=1)
    flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "tf.distribute strategy.")


def run():
    """Console-script entry point (`byot-reproduce`)."""
    from byot_keras import commands
    from byot_keras.train.trainer import TrainingDiverged

    commands.run("byot-reproduce", __doc__, _define_flags, main, errors=(TrainingDiverged,))


if __name__ == "__main__":
    run()
