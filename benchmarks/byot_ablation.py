"""The short-budget ablation of the BYOT loss (issue 15): which term costs the deepest exit?

Each variant is `byot-train` with the `byot_cifar` preset on resnet18_byot x0.25, the first
10,000 CIFAR-10 training images, 15 epochs, one run folder per variant and seed named
`<variant>_s<seed>` under `--runs_dir` (the variants and their options: `VARIANTS`;
`--print_commands` lists the runs). This script only reads the finished folders:

    python -m benchmarks.byot_ablation --runs_dir /work/runs/ablation \\
        --output benchmarks/results/byot_ablation_cifar10
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from benchmarks.study_cifar10 import read_run, summarize

#: variant -> (method, method options, what it tests)
VARIANTS = {
    "ce": ("ce", "", "plain training, one exit"),
    "byot": ("byot", "", "the full loss (official weights)"),
    "nofeature": ("byot", "feature_weight=0", "without the feature term"),
    "nokd": ("byot", "kd_weight=0", "without the soft CE to the deepest exit"),
    "deeponly": ("byot", "shallow_ce_weight=0", "no CE on the shallow exits (KD only)"),
    "paper": ("byot", "objective=paper", "the paper's loss form"),
    "msd": ("msd", "", "another method, for choosing the study's third"),
    "eed": ("eed", "", "another method, for choosing the study's third"),
    "deep_supervision": ("deep_supervision", "", "CE on every exit, no distillation"),
}
BUDGET = dict(train_examples=10000, epochs=15)


def planned_commands(runs_dir: str, data_dir: str, seeds=(0, 1)) -> list[str]:
    commands = []
    for variant, (method, options, _) in VARIANTS.items():
        for seed in seeds:
            commands.append(
                f"byot-train --preset byot_cifar --method {method}"
                + (f" --method_options {options}" if options else "")
                + f" --width_multiplier 0.25 --dataset cifar10 --data_dir {data_dir}"
                f" --train_examples {BUDGET['train_examples']} --epochs {BUDGET['epochs']}"
                f" --seed {seed} --output_dir {os.path.join(runs_dir, f'{variant}_s{seed}')}")
    return commands


def read_runs(runs_dir: str) -> tuple[list[dict], list[str]]:
    """The finished runs (each with its `name`, the variant) and the unfinished folders."""
    runs, unfinished = [], []
    for entry in sorted(os.listdir(runs_dir)):
        match = re.fullmatch(r"(.+)_s(\d+)", entry)
        if not match or match.group(1) not in VARIANTS:
            continue
        run = read_run(os.path.join(runs_dir, entry))
        if run is None:
            unfinished.append(entry)
            continue
        run["name"] = match.group(1)
        runs.append(run)
    return runs, unfinished


def render(runs: list[dict], summary: dict, unfinished: list[str], note: str = "") -> str:
    def exits(values):
        return " / ".join(f"{v:.2f}" for v in values)

    seeds = sorted({r["seed"] for r in runs})
    lines = ["# Short-budget ablation of the BYOT loss (issue 15)", "",
             "resnet18_byot x0.25 (`byot_cifar` preset: SGD 0.9, lr 0.1 /10 at 1/3, 2/3 and "
             "epochs-10, wd 5e-4, batch 128, pad-crop + flip), the first "
             f"{BUDGET['train_examples']:,} CIFAR-10 training images, {BUDGET['epochs']} "
             f"epochs, seeds {', '.join(map(str, seeds))}; top-1 (%) on all 10,000 test "
             "images. Spread: half the difference between the seeds (0 for one seed: no "
             "estimate of the noise).", ""]
    if unfinished:
        lines += [f"**In progress** (not in the tables): {', '.join(unfinished)}.", ""]
    lines += ["## Per variant (mean +- spread over seeds)", "",
              "| variant | method, options | what | seeds | exits, shallow to deep | "
              "ensemble | deepest - ce |", "|---|---|---|---:|---|---:|---:|"]
    for name in (v for v in VARIANTS if v in summary):
        method, options, what = VARIANTS[name]
        entry = summary[name]
        cells = " / ".join(f"{m:.2f} +- {s:.2f}" for m, s in
                           zip(entry["exits_mean"], entry["exits_spread"]))
        ensemble = (f"{entry['ensemble_mean']:.2f} +- {entry['ensemble_spread']:.2f}"
                    if len(entry["exits_mean"]) > 1 else "-")
        lines.append(f"| {name} | {method}{', ' + options if options else ''} | {what} | "
                     f"{len(entry['seeds'])} | {cells} | {ensemble} | "
                     f"{entry.get('deepest_minus_ce', 0):+.2f} |")
    if note:
        lines += ["", note]
    lines += ["", "## Per run", "", "| variant | seed | exits, shallow to deep | ensemble | "
              "last three evaluations (deepest) |", "|---|---:|---|---:|---|"]
    order = list(VARIANTS)
    for run in sorted(runs, key=lambda r: (order.index(r["name"]), r["seed"])):
        ensemble = f"{run['ensemble']:.2f}" if len(run["exits"]) > 1 else "-"
        lines.append(f"| {run['name']} | {run['seed']} | {exits(run['exits'])} | {ensemble} | "
                     f"{exits(run['last_three_deepest'])} |")
    lines += ["", "## Commands", ""] + [
        f"    {run['command']}" for run in
        sorted(runs, key=lambda r: (order.index(r["name"]), r["seed"]))]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs_dir", required=True)
    parser.add_argument("--output", default="benchmarks/results/byot_ablation_cifar10")
    parser.add_argument("--data_dir", default="../shared/data/tfds")
    parser.add_argument("--print_commands", action="store_true")
    parser.add_argument("--note", default="", help="What the table shows, printed under it.")
    args = parser.parse_args(argv)
    if args.print_commands:
        print("\n".join(planned_commands(args.runs_dir, args.data_dir)))
        return 0
    runs, unfinished = read_runs(args.runs_dir)
    if not runs:
        print(f"No finished run in {args.runs_dir}.", file=sys.stderr)
        return 1
    summary = summarize(runs, key="name")
    text = render(runs, summary, unfinished, args.note)
    for suffix, content in ((".md", text), (".json", json.dumps(
            {"budget": BUDGET, "variants": VARIANTS, "summary": summary, "runs": runs,
             "unfinished": unfinished, "note": args.note}, indent=1) + "\n")):
        temporary = args.output + suffix + ".tmp"
        with open(temporary, "w") as f:
            f.write(content)
        os.replace(temporary, args.output + suffix)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
