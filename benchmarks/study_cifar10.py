"""The converged CIFAR-10 study: every run's per-exit and ensemble top-1, their mean and
spread over seeds, the byot - ce difference, training time, the last evaluations (has
accuracy stopped improving?) and the early-exit curve of the best model.

The runs are ordinary `byot-train` run folders, named `<tag>_<method>_s<seed>` under
`--runs_dir` (they are long: see `--print_commands`, run them in the background and
re-run the same command to resume). This script only reads them:

    python -m benchmarks.study_cifar10 --runs_dir /work/runs/study \\
        --output benchmarks/results/study_cifar10
    python -m benchmarks.study_cifar10 --print_commands --runs_dir runs/study
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys

METHODS = ("ce", "byot", "msd", "eed", "deep_supervision")
STUDY = dict(preset="byot_cifar", dataset="cifar10", width_multiplier=0.25, epochs=40)
SEEDS = (0, 1)
TAG = "r18w025"


def run_command(config: dict, data_dir: str | None = None) -> str:
    """The `byot-train` command that reproduces the run of `config` (a config.json): the
    preset plus every setting that differs from it."""
    from byot_keras.train import make_config
    from byot_keras.train.cli import flags_for

    preset = config.get("preset")
    base = make_config(preset).to_dict() if preset else make_config().to_dict()
    differing = {}
    for key, value in config.items():
        if key in ("preset", "verbose", "overwrite") or base.get(key) == value:
            continue
        if key == "data_dir" and data_dir is not None:
            value = data_dir
        if key == "output_dir":  # where the study kept it is no business of the reader's
            value = f"runs/{os.path.basename(str(value).rstrip('/'))}"
        differing[key] = value
    return " ".join(["byot-train", *([f"--preset {preset}"] if preset else []),
                     *flags_for(differing)])


def planned_commands(runs_dir: str, data_dir: str, methods=METHODS) -> list[str]:
    return [(f"byot-train --preset {STUDY['preset']} --dataset {STUDY['dataset']} "
             f"--data_dir {data_dir} --method {method} --width_multiplier "
             f"{STUDY['width_multiplier']} --epochs {STUDY['epochs']} --seed {seed} "
             f"--output_dir {os.path.join(runs_dir, f'{TAG}_{method}_s{seed}')} --verbose 2")
            for method in methods for seed in SEEDS]


def read_history(folder: str) -> list[dict]:
    """The run's per-epoch test accuracies (%), in epoch order: one dict per epoch with
    "epoch" (1-based) and every `exit_<i>` / `ensemble` the log has."""
    path = os.path.join(folder, "log.csv")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    history = []
    for row in sorted(rows, key=lambda r: int(r["epoch"])):
        entry = {"epoch": int(row["epoch"]) + 1}  # Keras' CSVLogger counts from 0
        for key, value in row.items():
            if key.startswith("val_") and key.endswith("_accuracy") and value:
                entry[key[4:-9]] = round(100 * float(value), 2)
        history.append(entry)
    return history


def _exit_keys(accuracy: dict) -> list[str]:
    return sorted((k for k in accuracy if k.startswith("exit_")), key=lambda k: int(k[5:]))


def read_run(folder: str) -> dict | None:
    """A finished run's figures (None while it has no report)."""
    report_path = os.path.join(folder, "report.json")
    if not os.path.exists(report_path):
        return None
    with open(report_path) as f:
        report = json.load(f)
    history = read_history(folder)
    accuracy = report["accuracy"]
    exits = _exit_keys(accuracy)
    deepest = exits[-1]
    last = [row[deepest] for row in history[-3:]]
    options = report["config"].get("method_options") or {}
    method = report["config"]["method"]
    return {
        "folder": folder,
        "method": method,
        # A method with non-default options is another variant (e.g. byot without its
        # feature term), compared as its own row.
        "variant": method + "".join(f" {k}={v}" for k, v in sorted(options.items())),
        "seed": report["config"]["seed"],
        "exits": [round(100 * accuracy[k], 2) for k in exits],
        "ensemble": round(100 * accuracy["ensemble"], 2),
        "last_three_deepest": last,
        "deepest_by_epoch": [row[deepest] for row in history],
        "epochs": report["training"]["epochs_completed"],
        "train_seconds": report["training"]["train_seconds"],
        "train_seconds_per_epoch": round(report["training"]["train_seconds"]
                                         / max(1, report["training"]["epochs_completed"]), 1),
        "exit_mflops": [round(e["flops"] / 1e6, 2) for e in report["exits"]],
        "early_exit": report.get("early_exit"),
        "test_examples": report["dataset"]["num_test"],
        "train_examples": report["dataset"]["num_train"],
        "command": run_command(report["config"], "../shared/data/tfds"),
    }


def summarize(runs: list[dict], key: str = "variant") -> dict:
    """Per variant (or other `key` of the runs): mean and half-range (the spread of two
    seeds) per exit and ensemble, and the difference to `ce`."""
    by_method = {}
    for run in runs:
        by_method.setdefault(run[key], []).append(run)
    summary = {}
    for method, group in by_method.items():
        group.sort(key=lambda r: r["seed"])
        columns = list(zip(*[r["exits"] for r in group]))
        ensembles = [r["ensemble"] for r in group]
        summary[method] = {
            "seeds": [r["seed"] for r in group],
            "exits_mean": [round(statistics.mean(c), 2) for c in columns],
            "exits_spread": [round((max(c) - min(c)) / 2, 2) for c in columns],
            "ensemble_mean": round(statistics.mean(ensembles), 2),
            "ensemble_spread": round((max(ensembles) - min(ensembles)) / 2, 2),
            "train_seconds_per_epoch": round(statistics.mean(
                r["train_seconds_per_epoch"] for r in group), 1),
        }
    if "ce" in summary:
        ce = summary["ce"]
        for method, entry in summary.items():
            if method != "ce":
                entry["deepest_minus_ce"] = round(entry["exits_mean"][-1]
                                                  - ce["exits_mean"][-1], 2)
                entry["ensemble_minus_ce"] = round(entry["ensemble_mean"]
                                                   - ce["exits_mean"][-1], 2)
    return summary


def unfinished_runs(runs_dir: str) -> list[dict]:
    """The study's run folders without a report yet: their completed epochs and the test
    accuracies of the last one."""
    found = []
    for name in sorted(os.listdir(runs_dir)):
        folder = os.path.join(runs_dir, name)
        if name.startswith(TAG + "_") and not os.path.exists(os.path.join(folder,
                                                                            "report.json")):
            history = read_history(folder)
            last = history[-1] if history else {}
            found.append({"name": name, "epochs": last.get("epoch", 0),
                          "exits": [last[k] for k in _exit_keys(last)],
                          "ensemble": last.get("ensemble")})
    return found


def at_same_epoch(runs: list[dict], variant: str, epoch: int) -> float | None:
    """The mean deepest-exit accuracy of `variant`'s finished runs after `epoch` epochs,
    so that a run in progress can be compared with them on the same schedule."""
    if epoch < 1:
        return None
    values = [run["deepest_by_epoch"][epoch - 1] for run in runs
              if run["variant"] == variant and len(run["deepest_by_epoch"]) >= epoch]
    return round(statistics.mean(values), 2) if values else None


def _order(run: dict) -> tuple:
    """Methods in METHODS' order (others after), each method's plain variant first."""
    method = run["method"]
    return (METHODS.index(method) if method in METHODS else len(METHODS), method,
            run["variant"] != method, run["variant"])


def early_exit_section(runs: list[dict]) -> list[str]:
    """The early-exit curve of each multi-exit variant's best run (highest deepest exit),
    side by side: what a threshold buys with each method's weights."""
    best = {}
    for run in runs:
        if len(run["exits"]) > 1 and run["early_exit"] and (
                run["variant"] not in best
                or run["exits"][-1] > best[run["variant"]]["exits"][-1]):
            best[run["variant"]] = run
    if not best:
        return []
    chosen = [best[v] for v in sorted(best, key=lambda v: _order(best[v]))]

    def costs(run):
        return " / ".join(f"{m:.1f}" for m in run["exit_mflops"])

    if len({costs(run) for run in chosen}) == 1:
        cost_text = costs(chosen[0])
    else:  # methods whose heads differ (msd's are backbone blocks)
        cost_text = "; ".join(f"{run['variant']} {costs(run)}" for run in chosen)
    lines = ["", "## Early exit: the best run of each multi-exit method", "",
             "Answer at the first exit whose softmax confidence reaches the threshold; "
             "top-1 (%) and MFLOPs per image. Each exit alone costs (MFLOPs, shallow to "
             f"deep) {cost_text}.", "",
             "| threshold | " + " | ".join(f"{r['variant']} seed {r['seed']}" for r in chosen)
             + " |", "|---:|" + "---:|" * len(chosen)]
    for i, row in enumerate(chosen[0]["early_exit"]):
        cells = []
        for run in chosen:
            point = run["early_exit"][i]
            if point["threshold"] != row["threshold"]:
                raise ValueError(f"{run['folder']}: its early-exit thresholds differ from "
                                 f"{chosen[0]['folder']}'s; re-run them alike to compare.")
            cells.append(f"{100 * point['accuracy']:.2f} at {2 * point['mean_cost'] / 1e6:.1f}")
        lines.append(f"| {row['threshold']:g} | " + " | ".join(cells) + " |")
    return lines


def render(runs: list[dict], summary: dict, unfinished: list[dict] = (),
           note: str = "") -> str:
    def pm(mean, spread, seeds):
        # One seed has no spread to show: no "+- 0.00" that reads as a measured one.
        return f"{mean:.2f} +- {spread:.2f}" if seeds > 1 else f"{mean:.2f}"

    lines = ["# Converged study: resnet18_byot x0.25 on the full CIFAR-10", "",
             "Every run: the `byot_cifar` preset (SGD 0.9, lr 0.1 /10 at 1/3, 2/3 and "
             "epochs-10, wd 5e-4, batch 128, pad-crop + flip) for "
             f"{STUDY['epochs']} epochs on all 50,000 training images; top-1 (%) on all "
             "10,000 test images. Spread: half the difference between the two seeds.", ""]
    if note:
        lines += ["## What the numbers show", "", note, ""]
    lines += ["## Per run", "",
             "| method | seed | exits, shallow to deep | ensemble | last three evaluations "
             "(deepest) | s / epoch |", "|---|---:|---|---:|---|---:|"]
    for run in sorted(runs, key=lambda r: (_order(r), r["seed"])):
        lines.append(f"| {run['variant']} | {run['seed']} | "
                     f"{' / '.join(f'{a:.2f}' for a in run['exits'])} | "
                     f"{run['ensemble']:.2f} | "
                     f"{' / '.join(f'{a:.2f}' for a in run['last_three_deepest'])} | "
                     f"{run['train_seconds_per_epoch']:.0f} |")
    lines += ["", "## Per method (mean +- spread over seeds)", "",
              "| method | seeds | exits, shallow to deep | ensemble | deepest - ce | "
              "ensemble - ce (deepest) |", "|---|---:|---|---:|---:|---:|"]
    for method in sorted(summary, key=lambda v: _order({"method": v.split()[0], "variant": v})):
        entry = summary[method]
        seeds = len(entry["seeds"])
        exits = " / ".join(pm(m, s, seeds) for m, s in zip(entry["exits_mean"],
                                                           entry["exits_spread"]))
        lines.append(f"| {method} | {seeds} | {exits} | "
                     f"{pm(entry['ensemble_mean'], entry['ensemble_spread'], seeds)} | "
                     f"{entry.get('deepest_minus_ce', 0):+.2f} | "
                     f"{entry.get('ensemble_minus_ce', 0):+.2f} |")
    if unfinished:
        references = [v for v in ("ce", "byot") if v in summary]
        lines += ["", "## In progress (not in the tables above)", "",
                  "Test top-1 after the last completed epoch, beside the finished runs' "
                  "deepest exit (mean of seeds) after the same epoch of the same schedule.",
                  "", "| run | epochs | exits, shallow to deep | ensemble | "
                  + " | ".join(f"{v} deepest, same epoch" for v in references) + " |",
                  "|---|---:|---|---:|" + "---:|" * len(references)]
        for run in unfinished:
            same = [at_same_epoch(runs, v, run["epochs"]) for v in references]
            ensemble = "-" if run["ensemble"] is None else f"{run['ensemble']:.2f}"
            lines.append(f"| {run['name']} | {run['epochs']} of {STUDY['epochs']} | "
                         f"{' / '.join(f'{a:.2f}' for a in run['exits']) or '-'} | "
                         f"{ensemble} | "
                         + " | ".join("-" if v is None else f"{v:.2f}" for v in same) + " |")
    lines += early_exit_section(runs)
    lines += ["", "## Commands", ""] + [f"    {run['command']}" for run in
                                         sorted(runs, key=lambda r: (_order(r), r["seed"]))]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs_dir", required=True)
    parser.add_argument("--output", default="benchmarks/results/study_cifar10")
    parser.add_argument("--print_commands", action="store_true")
    parser.add_argument("--data_dir", default="../shared/data/tfds")
    parser.add_argument("--note", default="", help="What the tables show, printed above "
                        "them (kept in the JSON).")
    args = parser.parse_args(argv)
    if args.print_commands:
        print("\n".join(planned_commands(args.runs_dir, args.data_dir)))
        return 0
    runs = [run for name in sorted(os.listdir(args.runs_dir))
            if name.startswith(TAG + "_") and (run := read_run(os.path.join(args.runs_dir,
                                                                             name)))]
    if not runs:
        print(f"No finished run under {args.runs_dir}.", file=sys.stderr)
        return 1
    summary = summarize(runs)
    unfinished = unfinished_runs(args.runs_dir)
    from byot_keras.saving import write_text_atomically

    text = render(runs, summary, unfinished, args.note)
    write_text_atomically(args.output + ".json", json.dumps(
        {"study": STUDY, "runs": runs, "summary": summary, "unfinished": unfinished,
         "note": args.note}, indent=2))
    write_text_atomically(args.output + ".md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
