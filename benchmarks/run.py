"""Where byot_keras stands on this machine: one command, every figure side by side.

    python -m benchmarks.run --full    # ~1 hour on 2 CPU cores -> benchmarks/RESULTS.md
    python -m benchmarks.run --quick   # < 3 min -> benchmarks/results/RESULTS_quick.md
    python -m benchmarks.run --smoke --output_dir /tmp/bench   # ~30 s: the code path only
    python -m benchmarks.run --full --render_only   # re-render RESULTS.md + README block

`--full` (without --output_dir) also rewrites README.md's "Performance" block (between
`<!-- performance:start -->` and `<!-- performance:end -->`) from its JSON.

Measures, in one process and interleaved (see benchmarks/training_speed.py):

- training throughput of `ce`, `byot`, `msd`, `eed` per architecture (in-memory data),
  the step-time ratio to `ce` next to the arithmetic limit (training MACs / ce MACs),
  the profile of one step (op time by model part) and its peak memory;
- what the speed options give (XLA, Keras' own batch norm instead of the zoo's fused
  one, steps_per_execution);
- the input pipeline's starvation ratio (CIFAR-10 through byot_keras.data.pipeline vs
  in-memory), from benchmarks/pipeline_starvation.py (run in full mode, its stored
  result otherwise);
- per-exit inference latency of the Keras model, beside the TFLite files' figures from
  benchmarks/tflite_latency.py's last run;
- (full) accuracy at a small fixed budget on the offline CIFAR-10: narrow networks, every
  method, two seeds;
- with `--torch_python` (an environment with torch): the same ResNet-18 training step in
  PyTorch (../shared/bench/byot_torch.py) and ours, alternating fresh processes
  (benchmarks/peer.py).

Writes a Markdown report (tables, the exact command, machine, versions, load) and the raw
figures as JSON, both rewritten atomically after every section, so an interrupted run
still leaves what it measured. These are measurements, not tests: nothing fails when a
target is missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import os
import sys
import time

from benchmarks.host import host_facts

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_DATA_DIR = os.environ.get("BYOT_TFDS_DIR",
                                  os.path.join(os.path.dirname(ROOT), "shared", "data", "tfds"))
README = os.path.join(ROOT, "README.md")
# Hand-written: what was tried for speed and what it gave; ends the --full page.
NOTES = os.path.join(HERE, "what_we_tried.md")
MODES = ("smoke", "quick", "full")
METHODS = ("ce", "byot", "msd", "eed")
# The accuracy section trains every single-network method byot-train knows (the cohort
# and teacher models are compared in tests/test_methods_cifar10.py).
ACCURACY_METHODS = (*METHODS, "sdn", "deep_supervision", "cskd")
SECTIONS = ("speed", "peer", "inference", "starvation", "accuracy")
# byot's step time may exceed its arithmetic limit (the FLOPs ratio) by this factor.
OVERHEAD_TARGET = 1.05
# The groups whose `byot` row the target applies to: ResNet-18 (issue 6), VGG-16 and
# ResNet-50 (issue 17).
TARGET_GROUPS = ("resnet18", "vgg16", "resnet50")


@dataclasses.dataclass
class SpeedGroup:
    """Models of one architecture timed against each other; `variants` are extra
    (label, method, build options) configurations."""

    key: str
    model: str
    width_multiplier: float
    batch_size: int
    methods: tuple = METHODS
    windows: int = 3
    steps_per_window: int = 1
    variants: tuple = ()
    reference: str = "ce"
    profile: bool = True
    note: str = ""


@dataclasses.dataclass
class Plan:
    mode: str
    groups: list
    starvation: dict | None  # benchmarks.pipeline_starvation.run's options; None: read
    inference_model: str  # a byot model of this zoo name and width gives the Keras latency
    inference_width: float
    inference_repeats: int
    accuracy: object | None  # benchmarks.accuracy.AccuracyPlan


def make_plan(mode: str) -> Plan:
    """What each mode measures."""
    from benchmarks.accuracy import AccuracyPlan

    if mode == "smoke":  # the code path on a tiny model, for the test suite
        return Plan(mode, [SpeedGroup("alexnet_tiny", "alexnet_byot", 0.125, 8,
                                      methods=("ce", "byot"), windows=2)],
                    starvation=None, inference_model="alexnet_byot",
                    inference_width=0.125, inference_repeats=4, accuracy=None)
    if mode == "quick":
        return Plan(mode, [SpeedGroup("resnet18_narrow", "resnet18_byot", 0.25, 128,
                                      methods=("ce", "byot"), windows=5,
                                      note="quick mode: width x0.25, ce and byot only")],
                    starvation=None, inference_model="resnet18_byot",
                    inference_width=0.25, inference_repeats=20,
                    accuracy=None)
    byot = "byot"
    return Plan(
        mode,
        [
            SpeedGroup("resnet18", "resnet18_byot", 1.0, 128, windows=6),
            SpeedGroup("vgg16", "vgg16_byot", 1.0, 128, windows=3),
            SpeedGroup("resnet50", "resnet50_byot", 1.0, 64, windows=3,
                       note="batch 64, for time rather than memory: a ResNet-50 step takes "
                            "~2.5x a ResNet-18 step here, and the hour's budget holds 3 "
                            "windows of 4 methods at 64"),
            SpeedGroup(
                "options", "resnet18_byot", 1.0, 64, methods=("ce", byot), windows=3,
                variants=(("byot + XLA", byot, {"jit_compile": True}),
                          ("ce + Keras BN", "ce", {"keras_batchnorm": True}),
                          ("byot + Keras BN", byot, {"keras_batchnorm": True})),
                profile=False, note="speed options on ResNet-18 (batch 64)"),
            SpeedGroup(
                "steps_per_execution", "resnet18_byot", 0.125, 16, methods=(byot,),
                windows=5, steps_per_window=8,
                variants=(("byot, steps_per_execution=8", byot, {"steps_per_execution": 8}),),
                reference=byot, profile=False,
                note="a tiny model (width x0.125, batch 16), where per-step overhead is "
                     "largest"),
        ],
        starvation={"model_name": "resnet18_byot", "width_multiplier": 0.5, "batch_size": 128,
                    "train_examples": 1280, "rounds": 3},
        inference_model="resnet18_byot", inference_width=1.0,
        inference_repeats=30,
        accuracy=AccuracyPlan(models=(("resnet18_byot", 0.125), ("vgg11_byot", 0.25)),
                              methods=ACCURACY_METHODS, seeds=(0, 1), epochs=2,
                              train_examples=6400, test_examples=None),
    )


# --------------------------------------------------------------------------- sections


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp} load {os.getloadavg()[0]:.1f}] {message}", file=sys.stderr, flush=True)


def run_speed_group(group: SpeedGroup) -> tuple[dict, object]:
    """Builds, warms up, times (interleaved), profiles one group; returns its figures and
    its `byot` model (or None), which the inference section may reuse."""
    import keras

    from benchmarks import training_speed as speed

    keras.backend.clear_session()
    gc.collect()
    memory_batches = speed.in_memory_batches(group.batch_size)
    configs = [(m, m, {}) for m in group.methods] + list(group.variants)
    trainees, macs = [], {}
    for label, method, options in configs:
        log(f"{group.key}: building {label}")
        model = speed.build_model(group.model, method, width_multiplier=group.width_multiplier,
                                  **options)
        macs[label] = speed.training_macs(model)
        trainees.append(speed.Trainee(label, model, iter(memory_batches), group.batch_size,
                                      info={"method": method, "options": options,
                                            "train_macs": macs[label]}))
    warmup = {}
    for trainee in trainees:
        warmup[trainee.label] = round(speed.warm_up(trainee, memory_batches), 1)
        log(f"{group.key}: warm-up (tracing) of {trainee.label}: {warmup[trainee.label]} s")
    timing = speed.time_windows(trainees, windows=group.windows,
                                steps_per_window=group.steps_per_window,
                                on_window=lambda m: log(f"{group.key}: {m}"))
    reference = group.reference
    results = speed.summarize(trainees, timing, reference)
    reference_macs = macs.get(reference)
    for trainee in trainees:
        entry = results[trainee.label]
        entry["warmup_s"] = warmup[trainee.label]
        if reference_macs:
            entry["flops_ratio"] = entry["train_macs"] / reference_macs
    if group.profile:
        for trainee in trainees:
            started = time.perf_counter()
            results[trainee.label]["profile"] = speed.profile_trainee(trainee)
            log(f"{group.key}: profiled one step of {trainee.label} "
                f"({time.perf_counter() - started:.1f} s)")
    output = {"group": dataclasses.asdict(group), "load_average_1min":
              timing["load_average_1min"], "results": results}
    inference_model = next((t.model for t in trainees if t.label == "byot"), None)
    del trainees
    return output, inference_model


def run_inference(plan: Plan, model) -> dict:
    from benchmarks import inference

    figures = {"tflite": inference.tflite_summary()}
    if model is not None:
        log("inference: Keras per-exit latency")
        figures["keras"] = inference.keras_exit_latency(
            model, repeats=plan.inference_repeats, rounds=5)
        figures["keras"]["model"] = f"{plan.inference_model} x{plan.inference_width:g}"
        figures["keras"]["exit_macs"] = [c["macs"] for c in model.exit_costs()]
    return figures


def run_starvation(plan: Plan, data_dir: str | None) -> dict:
    """The input pipeline's starvation ratio from the pipeline's own benchmark,
    benchmarks/pipeline_starvation.py (imported lazily; not re-implemented here): run
    with the plan's options in full mode, otherwise its last stored result."""
    stored = os.path.join(HERE, "results", "pipeline_starvation.json")
    if not os.path.exists(os.path.join(HERE, "pipeline_starvation.py")):
        return {"note": "benchmarks/pipeline_starvation.py is not present: not measured."}
    has_data = bool(data_dir) and os.path.isdir(os.path.join(data_dir, "cifar10"))
    if plan.starvation is not None and has_data:
        import importlib

        log("starvation: benchmarks.pipeline_starvation.run "
            + ", ".join(f"{k}={v}" for k, v in plan.starvation.items()))
        module = importlib.import_module("benchmarks.pipeline_starvation")
        load_before = [round(x, 2) for x in os.getloadavg()]
        try:
            figures = module.run(data_dir, **plan.starvation)
        except TypeError as error:  # its signature changed under us
            return {"note": f"benchmarks.pipeline_starvation.run failed: {error}"}
        figures.update(load_before=load_before,
                       load_after=[round(x, 2) for x in os.getloadavg()])
        return {"source": "measured in this run", "figures": figures}
    if os.path.exists(stored):
        with open(stored) as f:
            return {"source": "benchmarks/results/pipeline_starvation.json (its last run, "
                              "not this one)", "figures": json.load(f)}
    return {"note": "no CIFAR-10 and no stored benchmarks/results/pipeline_starvation.json."}


def check_targets(results: dict) -> list[dict]:
    """byot's (and the other methods') step-time ratio to ce against OVERHEAD_TARGET x
    the FLOPs ratio, on wall-clock and CPU time; `byot` on the TARGET_GROUPS (issues 6
    and 17) is the target, the other rows are shown for information."""
    rows = []
    for key, group in results.get("speed", {}).items():
        if group["group"]["reference"] != "ce" or group["group"]["variants"]:
            continue
        for label, entry in group["results"].items():
            if label == "ce" or entry.get("input") == "pipeline" or "flops_ratio" not in entry:
                continue
            limit = OVERHEAD_TARGET * entry["flops_ratio"]
            rows.append({
                "group": key, "model": group["group"]["model"],
                "width_multiplier": group["group"]["width_multiplier"],
                "batch_size": group["group"]["batch_size"], "method": label,
                "flops_ratio": entry["flops_ratio"], "limit": limit,
                "wall_ratio": entry["wall_ratio"], "cpu_ratio": entry["cpu_ratio"],
                "met_wall": entry["wall_ratio"] <= limit, "met_cpu": entry["cpu_ratio"] <= limit,
                "is_target": label == "byot" and key in TARGET_GROUPS,
            })
    return rows


def default_outputs(mode: str, output_dir: str | None) -> tuple[str, str]:
    """(Markdown, JSON) paths: the full run writes benchmarks/RESULTS.md."""
    if output_dir:
        return (os.path.join(output_dir, f"RESULTS_{mode}.md"),
                os.path.join(output_dir, f"benchmarks_{mode}.json"))
    if mode == "full":
        return os.path.join(HERE, "RESULTS.md"), os.path.join(HERE, "results",
                                                             "benchmarks_full.json")
    return (os.path.join(HERE, "results", f"RESULTS_{mode}.md"),
            os.path.join(HERE, "results", f"benchmarks_{mode}.json"))


# --------------------------------------------------------------------------- main


def run(mode: str, *, data_dir: str | None = DEFAULT_DATA_DIR, output_dir: str | None = None,
        sections: tuple = SECTIONS, groups: tuple | None = None, merge: bool = False,
        command: str | None = None, torch_python: str | None = None) -> dict:
    """Runs `mode`'s plan (only `sections`, and of the speed section only the `groups`
    named, default all); writes and returns the results (see the module docstring).
    `merge`: start from the results file already there and replace only what this call
    measures (to complete or redo part of a run)."""
    from benchmarks import report

    if mode not in MODES:
        raise ValueError(f"Unknown mode '{mode}'. Valid: {', '.join(MODES)}.")
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"Unknown sections {unknown}. Valid: {', '.join(SECTIONS)}.")
    plan = make_plan(mode)
    planned = [g.key for g in plan.groups]
    unknown = sorted(set(groups or ()) - set(planned))
    if unknown:
        raise ValueError(f"Unknown speed groups {unknown} for --{mode}. Valid: "
                         f"{', '.join(planned)}.")
    md_path, json_path = default_outputs(mode, output_dir)
    started = time.perf_counter()
    this_run = {
        "command": command or f"python -m benchmarks.run --{mode}",
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "sections": list(sections), "groups": list(groups or planned),
    }
    results = _previous(json_path, mode) if merge else None
    if results is None:
        results = {"mode": mode, "speed": {}, "runs": []}
    # What this mode measures: a section the plan leaves out (quick mode's accuracy) is
    # not reported as missing.
    planned_sections = [s for s in SECTIONS if s != "accuracy" or plan.accuracy is not None]
    results.update(host=host_facts(), data_dir=data_dir,
                   planned={"sections": planned_sections, "groups": planned})
    results["runs"].append(this_run)

    from byot_keras.saving import write_text_atomically

    def save():
        this_run["elapsed_s"] = round(time.perf_counter() - started, 1)
        this_run["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        results["targets"] = check_targets(results)
        write_text_atomically(json_path, json.dumps(results, indent=2, default=_json_default))
        write_text_atomically(md_path, report.render(results, notes=_notes(mode, output_dir)))
        if mode == "full" and not output_dir:
            update_readme(results)

    inference_done = False
    if "peer" in sections and mode != "smoke":
        if torch_python:
            from benchmarks import peer

            log(f"peer: PyTorch ({torch_python}) and ours, alternating")
            results["peer"] = peer.compare(torch_python, batches=(64, 128),
                                           rounds=3 if mode == "full" else 1)
        elif "peer" not in results:
            results["peer"] = {"note": "no torch environment given (--torch_python): the "
                                       "PyTorch peer was not run."}
        save()
    if "speed" in sections:
        for group in plan.groups:
            if groups and group.key not in groups:
                continue
            log(f"speed group {group.key}: {group.model} x{group.width_multiplier:g}, "
                f"batch {group.batch_size}")
            output, model = run_speed_group(group)
            results["speed"][group.key] = output
            save()
            # The inference figures use the byot model of the inference shape built here.
            if ("inference" in sections and not inference_done and model is not None
                    and group.model == plan.inference_model
                    and group.width_multiplier == plan.inference_width):
                results["inference"] = run_inference(plan, model)
                inference_done = True
                save()
            del model
    if "inference" in sections and not inference_done:
        from benchmarks.training_speed import build_model

        results["inference"] = run_inference(plan, build_model(
            plan.inference_model, "byot", width_multiplier=plan.inference_width))
        save()
    if "starvation" in sections:
        results["starvation"] = run_starvation(plan, data_dir)
        save()
    if "accuracy" in sections and plan.accuracy is not None:
        from benchmarks.accuracy import run_accuracy

        if data_dir and os.path.isdir(os.path.join(data_dir, "cifar10")):
            results["accuracy"] = {"plan": dataclasses.asdict(plan.accuracy),
                                   "results": run_accuracy(plan.accuracy, data_dir, log=log)}
        else:
            results["accuracy"] = {"note": f"no offline CIFAR-10 under {data_dir} "
                                           "(set --data_dir): not measured."}
    save()
    log(f"wrote {md_path} and {json_path} ({this_run['elapsed_s']} s)")
    return results


def _previous(json_path: str, mode: str) -> dict | None:
    """The stored results of `mode` at `json_path`, if any (older files without a run
    list get one from their own command)."""
    if not os.path.exists(json_path):
        return None
    with open(json_path) as f:
        stored = json.load(f)
    if stored.get("mode") != mode:
        return None
    if "runs" not in stored:
        stored["runs"] = [{key: stored.get(key) for key in (
            "command", "started_at", "load_average_start", "load_average_end",
            "elapsed_s")}]
    return stored


def render_only(mode: str, output_dir: str | None = None) -> str:
    """Rewrites the Markdown page (and for --full the README's "Performance" block) from
    the stored JSON (after a change of the layout or of the notes)."""
    from benchmarks import report
    from byot_keras.saving import write_text_atomically

    md_path, json_path = default_outputs(mode, output_dir)
    with open(json_path) as f:
        results = json.load(f)
    if "runs" not in results:
        results = _previous(json_path, mode)
    write_text_atomically(md_path, report.render(results, notes=_notes(mode, output_dir)))
    if mode == "full" and not output_dir:
        update_readme(results)
    return md_path


def _notes(mode: str, output_dir: str | None) -> str | None:
    """The hand-written notes that end the --full page (benchmarks/what_we_tried.md)."""
    if mode != "full" or output_dir or not os.path.exists(NOTES):
        return None
    with open(NOTES) as f:
        return f.read()


def update_readme(results: dict, path: str = README) -> None:
    """Rewrites the README's block between `<!-- performance:start -->` and
    `<!-- performance:end -->` from `results` (see report.render_readme)."""
    from benchmarks import report
    from byot_keras.saving import write_text_atomically

    with open(path) as f:
        text = f.read()
    write_text_atomically(path, report.replace_readme_block(
        text, report.render_readme(results)))


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Training/inference speed, memory and small-budget accuracy of "
                    "byot_keras on this machine.")
    modes = parser.add_mutually_exclusive_group(required=True)
    for mode in MODES:
        modes.add_argument(f"--{mode}", dest="mode", action="store_const", const=mode)
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR,
                        help="tensorflow-datasets data_dir holding cifar10/ (offline).")
    parser.add_argument("--output_dir", default=None,
                        help="Write RESULTS_<mode>.md and benchmarks_<mode>.json here "
                             "(default: benchmarks/RESULTS.md for --full, "
                             "benchmarks/results/ otherwise).")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"Comma-separated subset of {','.join(SECTIONS)}.")
    parser.add_argument("--groups", default="",
                        help="Comma-separated speed groups to run (default: all of the mode's).")
    parser.add_argument("--merge", action="store_true",
                        help="Keep the stored results and replace only what this run measures.")
    parser.add_argument("--torch_python", default=None,
                        help="Python of an environment with torch: also run the PyTorch "
                             "peer (section peer), alternating with ours.")
    parser.add_argument("--render_only", action="store_true",
                        help="Measure nothing: rewrite the Markdown page from the stored JSON.")
    return parser.parse_args(argv)


def _names(text: str) -> tuple:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def main(argv=None) -> dict | str:
    """The command line (see the module docstring); returns the results, or with
    --render_only the page's path."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.render_only:
        return render_only(args.mode, args.output_dir)
    return run(args.mode, data_dir=args.data_dir, output_dir=args.output_dir,
               sections=_names(args.sections), groups=_names(args.groups) or None,
               merge=args.merge, command="python -m benchmarks.run " + " ".join(argv),
               torch_python=args.torch_python)


if __name__ == "__main__":
    main()
