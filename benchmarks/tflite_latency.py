"""Latency of an export's TFLite files on this machine, against the deployment targets.

    python -m benchmarks.tflite_latency --export_dir /tmp/kit/export_w1

For every quantization in the export and each thread count: every `exit_<k>` file, every
cascade segment alone, the cascade chained up to each exit (segments 1..k) and each
signature of the multi-signature `model[_q].tflite`, timed on single images (batch 1)
after warm-up; each figure is the median of all timed runs, which are interleaved over
several rounds so that a change in machine load hits every file alike. 1-thread runs are
also reported in thread CPU time, which a busy shared machine disturbs much less. The
numbers go into the export's `manifest.json` under "latency" (rewritten atomically) and
a Markdown table (default `benchmarks/results/tflite_latency.md`) with the
targets:

- exit k's latency within 1.2x of its FLOPs share of the deepest exit's latency;
- full-int8 at least 2x faster than float32 (per exit file);
- the cascade run to exit N at most 1.1x the single deepest file.

This is a measurement, not a test: nothing fails when a target is missed.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import tempfile
import time
from collections.abc import Sequence

from benchmarks.host import cpu_name

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

FLOPS_SHARE_LIMIT = 1.2
INT8_SPEEDUP_TARGET = 2.0
CASCADE_OVERHEAD_LIMIT = 1.1
DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                              "tflite_latency.md")


def _litert_version() -> str:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # pragma: no cover - depends on the environment
        return "unknown"


def _chain(segments, image, upto: int):
    """Runs segments 1..upto on one image, as the cascade does when exit `upto` answers:
    every segment's logits as float, trunk tensors handed on as the files store them."""
    from byot_keras.export.cascade import IMAGE, LOGITS, TRUNK_IN, TRUNK_OUT

    feed = {IMAGE: image}
    logits = None
    for k in range(upto):
        outputs = segments[k].raw(**feed)
        logits = segments[k].to_float(LOGITS, outputs[LOGITS])
        if k + 1 < upto:
            feed = {TRUNK_IN: outputs[TRUNK_OUT]}
    return logits


def measure(export_dir: str, threads: Sequence[int] = (1, 2), repeats: int = 60,
            rounds: int = 5, warmup: int = 10, quantizations: Sequence[str] | None = None,
            seed: int = 0) -> dict:
    """Median single-image latency (ms) per file, quantization and thread count.

    Returns `{q: {"threads_<t>": {"exit_ms": [...], "segment_ms": [...],
    "cascade_ms": [...], "multi_signature_ms": [...]}}}`; `cascade_ms[k-1]` is segments
    1..k chained, `multi_signature_ms[k-1]` signature `exit_k` of `model[_q].tflite`. Each
    figure is the median of `repeats` timed runs, split into `rounds` rounds that visit
    every measurement in turn. With 1 thread the interpreter runs on the calling thread, so
    `threads_1` also holds the same figures in thread CPU time (`exit_cpu_ms`, ...): time
    the process was not scheduled does not count. `cascade_paired_ratio`: see
    `_measure_cascade_pairs`."""
    from byot_keras.export.cascade import IMAGE, TRUNK_IN, TRUNK_OUT
    from byot_keras.export.litert import LiteRTModel
    from byot_keras.export.runtime import read_manifest

    if repeats < 1 or rounds < 1 or warmup < 0:
        raise ValueError("repeats and rounds must be >= 1 and warmup >= 0.")
    manifest = read_manifest(export_dir)
    quantizations = list(quantizations or manifest["quantizations"])
    missing = [q for q in quantizations if q not in manifest["quantizations"]]
    if missing:
        raise ValueError(f"The export has no {missing} files; it has "
                         f"{manifest['quantizations']}.")
    num_exits = manifest["num_exits"]
    has_cascade = bool(manifest.get("cascade"))
    shape = [1, *manifest["input"]["shape"][1:]]
    rng = np.random.default_rng(seed)
    # What the files take: 0..255 pixels, or the network's input when the export records
    # no normalisation.
    image = (rng.integers(0, 256, size=shape) if manifest["input"].get("pixels")
             else rng.normal(size=shape)).astype(np.float32)

    jobs = []  # (quantization, threads, kind, index, callable)
    for q in quantizations:
        for t in threads:
            for k, entry in enumerate(manifest["exits"]):
                if q not in entry["files"]:
                    continue  # exported without this exit's own file
                model = LiteRTModel(os.path.join(export_dir, entry["files"][q]["file"]), t)
                jobs.append((q, t, "exit_ms", k, lambda m=model: m(**{IMAGE: image})))
            if not has_cascade:
                continue
            segments = [LiteRTModel(os.path.join(export_dir, e["segment"][q]["file"]), t)
                        for e in manifest["exits"]]
            feed = {IMAGE: image}
            for k, segment in enumerate(segments):  # each segment on a real trunk input
                jobs.append((q, t, "segment_ms", k, lambda s=segment, f=feed: s.raw(**f)))
                if k + 1 < num_exits:
                    feed = {TRUNK_IN: segment.raw(**feed)[TRUNK_OUT]}
            for k in range(num_exits):
                jobs.append((q, t, "cascade_ms", k,
                             lambda s=segments, u=k + 1: _chain(s, image, u)))
        multi = (manifest.get("multi_signature") or {"files": {}})["files"].get(q)
        for t in threads if multi else ():
            path = os.path.join(export_dir, multi["file"])
            for k, name in enumerate(manifest["multi_signature"]["signatures"]):
                model = LiteRTModel(path, t, signature=name)
                jobs.append((q, t, "multi_signature_ms", k,
                             lambda m=model: m(**{IMAGE: image})))

    for *_, run in jobs:
        for _ in range(warmup):
            run()
    samples: list[list[float]] = [[] for _ in jobs]
    cpu_samples: list[list[float]] = [[] for _ in jobs]
    per_round = [repeats // rounds + (1 if r < repeats % rounds else 0) for r in range(rounds)]
    for count in per_round:
        for times, cpu_times, (*_, run) in zip(samples, cpu_samples, jobs):
            for _ in range(count):
                start, cpu_start = time.perf_counter(), time.thread_time()
                run()
                cpu_times.append((time.thread_time() - cpu_start) * 1e3)
                times.append((time.perf_counter() - start) * 1e3)

    results: dict = {}
    for times, cpu_times, (q, t, kind, k, _) in zip(samples, cpu_samples, jobs):
        entry = results.setdefault(q, {}).setdefault(f"threads_{t}", {})
        entry.setdefault(kind, [None] * num_exits)[k] = float(np.median(times))
        if t == 1:
            cpu_kind = kind.replace("_ms", "_cpu_ms")
            entry.setdefault(cpu_kind, [None] * num_exits)[k] = float(np.median(cpu_times))
    _measure_cascade_pairs(jobs, results, repeats, num_exits)
    return results


def _measure_cascade_pairs(jobs, results, repeats: int, num_exits: int) -> None:
    """`cascade_paired_ratio`: the deepest exit's file and the full cascade run back to
    back `repeats` times; the median of the per-pair ratios cascade / file. Load that
    changes over seconds hits both runs of a pair alike, so this ratio is far steadier on
    a shared machine than the ratio of two medians taken at different moments."""
    runs: dict = {}
    for q, t, kind, k, run in jobs:
        if k == num_exits - 1 and kind in ("exit_ms", "cascade_ms"):
            runs.setdefault((q, t), {})[kind] = run
    for (q, t), pair in runs.items():
        if len(pair) < 2:
            continue
        ratios = []
        for i in range(repeats):
            order = ("exit_ms", "cascade_ms") if i % 2 == 0 else ("cascade_ms", "exit_ms")
            spent = {}
            for kind in order:
                start = time.perf_counter()
                pair[kind]()
                spent[kind] = time.perf_counter() - start
            ratios.append(spent["cascade_ms"] / spent["exit_ms"])
        results[q][f"threads_{t}"]["cascade_paired_ratio"] = float(np.median(ratios))


def check_targets(manifest: dict, results: dict) -> list[dict]:
    """The deployment targets against measured latencies: one row per check with the
    measured ratio, the limit and whether it is met."""
    flops = [entry["flops"] for entry in manifest["exits"]]
    n = len(flops)
    rows = []
    for q, by_threads in results.items():
        for threads_key, figures in by_threads.items():
            threads = int(threads_key.split("_")[1])
            exit_ms = figures.get("exit_ms") or [None] * n
            if exit_ms[-1] is None:
                continue  # no deepest exit file to compare with
            for k in range(n - 1):
                if exit_ms[k] is None:
                    continue
                expected = exit_ms[-1] * flops[k] / flops[-1]
                ratio = exit_ms[k] / expected
                rows.append({
                    "target": "exit latency / FLOPs share of deepest exit's latency",
                    "quantization": q, "threads": threads, "item": f"exit_{k + 1}",
                    "measured": ratio, "limit": f"<= {FLOPS_SHARE_LIMIT}",
                    "met": bool(ratio <= FLOPS_SHARE_LIMIT),
                    "detail": f"{exit_ms[k]:.3f} ms vs {expected:.3f} ms "
                              f"({100 * flops[k] / flops[-1]:.1f}% of the FLOPs)",
                })
            for suffix, clock in (("ms", ""), ("cpu_ms", " (thread CPU time)")):
                cascade, single = figures.get(f"cascade_{suffix}"), figures.get(f"exit_{suffix}")
                if not cascade or not single or single[-1] is None:
                    continue
                ratio = cascade[-1] / single[-1]
                rows.append({
                    "target": f"cascade to exit N / single deepest file{clock}",
                    "quantization": q, "threads": threads, "item": f"exit_{n}",
                    "measured": ratio, "limit": f"<= {CASCADE_OVERHEAD_LIMIT}",
                    "met": bool(ratio <= CASCADE_OVERHEAD_LIMIT),
                    "detail": f"{cascade[-1]:.3f} ms vs {single[-1]:.3f} ms",
                })
            if "cascade_paired_ratio" in figures:
                ratio = figures["cascade_paired_ratio"]
                rows.append({
                    "target": "cascade to exit N / single deepest file (paired runs)",
                    "quantization": q, "threads": threads, "item": f"exit_{n}",
                    "measured": ratio, "limit": f"<= {CASCADE_OVERHEAD_LIMIT}",
                    "met": bool(ratio <= CASCADE_OVERHEAD_LIMIT),
                    "detail": "median of per-pair ratios, runs back to back",
                })
    if "float32" in results and "int8" in results:
        for threads_key, figures in results["float32"].items():
            if threads_key not in results["int8"]:
                continue
            int8 = results["int8"][threads_key]
            for k in range(n):
                if None in (figures.get("exit_ms", [None] * n)[k],
                            int8.get("exit_ms", [None] * n)[k]):
                    continue
                speedup = figures["exit_ms"][k] / int8["exit_ms"][k]
                rows.append({
                    "target": "int8 speed-up over float32",
                    "quantization": "int8", "threads": int(threads_key.split("_")[1]),
                    "item": f"exit_{k + 1}", "measured": speedup,
                    "limit": f">= {INT8_SPEEDUP_TARGET}",
                    "met": bool(speedup >= INT8_SPEEDUP_TARGET),
                    "detail": f"{figures['exit_ms'][k]:.3f} ms -> {int8['exit_ms'][k]:.3f} ms",
                })
    order = {"exit latency": 0, "int8 speed-up": 1, "cascade to": 2}
    return sorted(rows, key=lambda r: next(v for k, v in order.items()
                                          if r["target"].startswith(k)))


def write_latency(export_dir: str, latency: dict) -> str:
    """Sets manifest["latency"]: writes a temporary file beside it, then os.replace."""
    path = os.path.join(export_dir, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    manifest["latency"] = latency
    handle, temporary = tempfile.mkstemp(prefix=".manifest-", suffix=".json", dir=export_dir)
    try:
        with os.fdopen(handle, "w") as f:
            json.dump(manifest, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def format_markdown(manifest: dict, latency: dict) -> str:
    """The latency table and the target checks as Markdown."""
    results, host = latency["results"], latency["host"]
    title = latency.get("title", "")
    exits = manifest["exits"]
    n = len(exits)
    # One column per quantization and thread count (wall time), plus thread CPU time for
    # the 1-thread runs that have it.
    configs = []
    for q, by_threads in results.items():
        for key, figures in by_threads.items():
            configs.append((q, key, "ms", f"{q} {key.split('_')[1]} thr"))
            if "exit_cpu_ms" in figures or "cascade_cpu_ms" in figures:
                configs.append((q, key, "cpu_ms", f"{q} {key.split('_')[1]} thr CPU"))
    lines = [
        f"# TFLite latency: {title or manifest['model']}",
        "",
        f"- export: `{manifest['model']}`, {manifest['num_classes']} classes, input "
        f"{manifest['input']['shape'][1:]}, {n} exits; deepest exit "
        f"{exits[-1]['params']:,} parameters, {exits[-1]['flops'] / 1e6:.1f} MFLOPs",
        f"- host: {host['cpu']} ({host['cpus']} logical CPUs), {host['platform']}, "
        f"ai-edge-litert {host['ai_edge_litert']}; load average {host['load_before']} "
        f"before, {host['load_after']} after",
        f"- method: batch 1, {latency['warmup']} warm-up runs, then the median of "
        f"{latency['repeats']} timed runs per figure, interleaved over {latency['rounds']} "
        f"rounds; measured {latency['measured_at']}",
        *([f"- note: {latency['note']}"] if latency.get("note") else []),
        "",
        "## Median latency (ms)",
        "",
        "| file | MFLOPs | " + " | ".join(title for *_, title in configs) + " |",
        "|---|---:|" + "---:|" * len(configs),
    ]
    cascade_flops = [2 * e["cascade_macs"] for e in exits]

    def add(label, kind, k, mflops):
        cells = []
        for q, key, suffix, _ in configs:
            values = results[q][key].get(f"{kind}_{suffix}") or [None] * n
            cells.append("-" if values[k] is None else f"{values[k]:.3f}")
        lines.append(f"| {label} | {mflops:.1f} | " + " | ".join(cells) + " |")

    for k in range(n):
        file = exits[k]["files"].get("float32", {}).get("file", f"exit_{k + 1} file")
        add(f"`{file}`", "exit", k, exits[k]["flops"] / 1e6)
    if manifest.get("cascade"):
        for k in range(n):
            previous = cascade_flops[k - 1] if k else 0
            add(f"segment {k + 1} alone", "segment", k, (cascade_flops[k] - previous) / 1e6)
        for k in range(n):
            add(f"cascade to exit {k + 1} (segments 1..{k + 1})", "cascade", k,
                cascade_flops[k] / 1e6)
    if manifest.get("multi_signature"):
        for k, name in enumerate(manifest["multi_signature"]["signatures"]):
            add(f"`model.tflite` signature `{name}`", "multi_signature", k,
                exits[k]["flops"] / 1e6)
    lines += [
        "",
        "File names are the float32 ones; the other quantizations' files carry their "
        "suffix (`exit_1_int8.tflite`, ...). \"CPU\" columns: thread CPU time of the "
        "same 1-thread runs (time the process waited for a core does not count).",
        "",
        "## Targets",
        "",
        "| target | quantization | threads | item | measured | target | met | detail |",
        "|---|---|---:|---|---:|---|---|---|",
    ]
    for row in latency["targets"]:
        lines.append(f"| {row['target']} | {row['quantization']} | {row['threads']} | "
                     f"{row['item']} | {row['measured']:.2f} | {row['limit']} | "
                     f"{'met' if row['met'] else 'missed'} | {row['detail']} |")
    met = sum(row["met"] for row in latency["targets"])
    lines += ["", f"{met} of {len(latency['targets'])} checks met.", ""]
    return "\n".join(lines)


def write_markdown(path: str, manifest: dict, latency: dict) -> str:
    """The Markdown table at `path`, and the raw "latency" entry beside it (.json)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(format_markdown(manifest, latency))
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump({"model": manifest["model"], "latency": latency}, f, indent=2)
    return path


def run_benchmark(export_dir: str, output_md: str | None = DEFAULT_OUTPUT,
                  threads: Sequence[int] = (1, 2), repeats: int = 60, rounds: int = 5,
                  warmup: int = 10, quantizations: Sequence[str] | None = None,
                  title: str = "", note: str = "") -> dict:
    """Measures, checks the targets, writes manifest["latency"] and the Markdown table
    (unless `output_md` is None); returns the "latency" entry."""
    from byot_keras.export.runtime import read_manifest

    manifest = read_manifest(export_dir)
    load_before = [round(x, 2) for x in os.getloadavg()]
    results = measure(export_dir, threads, repeats, rounds, warmup, quantizations)
    latency = {
        "title": title,
        "note": note,
        "unit": "ms",
        "statistic": "median of single-image (batch 1) runs after warm-up",
        "repeats": repeats,
        "rounds": rounds,
        "warmup": warmup,
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
        "host": {
            "cpu": cpu_name(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(terse=True),
            "ai_edge_litert": _litert_version(),
            "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
        },
        "results": results,
        "targets": check_targets(manifest, results),
    }
    write_latency(export_dir, latency)
    if output_md:
        write_markdown(output_md, manifest, latency)
    return latency


def main(argv):
    del argv
    from absl import flags

    from byot_keras.export.runtime import read_manifest

    config = flags.FLAGS
    if config.render_only:  # the table again from the manifest's stored figures
        manifest = read_manifest(config.export_dir)
        if "latency" not in manifest:
            raise SystemExit(f"No 'latency' in {config.export_dir}/manifest.json yet.")
        latency = manifest["latency"]
        for key in ("title", "note"):
            if getattr(config, key):
                latency[key] = getattr(config, key)
        write_latency(config.export_dir, latency)
        if config.output_md:
            write_markdown(config.output_md, manifest, latency)
    else:
        latency = run_benchmark(
            config.export_dir, config.output_md or None, [int(t) for t in config.threads],
            config.repeats, config.rounds, config.warmup, config.quantizations or None,
            config.title, config.note,
        )
    print(format_markdown(read_manifest(config.export_dir), latency))
    print(f"wrote manifest.json 'latency' in {config.export_dir}"
          + (f" and {config.output_md}" if config.output_md else ""))


def _define_flags():
    from absl import flags

    flags.DEFINE_string("export_dir", None, "Folder written by export_tflite.")
    flags.DEFINE_list("threads", ["1", "2"], "Interpreter thread counts to measure.")
    flags.DEFINE_integer("repeats", 60, "Timed runs per figure (the median is kept).",
                         lower_bound=1)
    flags.DEFINE_integer("rounds", 5, "Rounds the timed runs are spread over.", lower_bound=1)
    flags.DEFINE_integer("warmup", 10, "Untimed runs per file first.", lower_bound=0)
    flags.DEFINE_list("quantizations", [], "Quantizations to measure (default: all).")
    flags.DEFINE_string("output_md", DEFAULT_OUTPUT, "Markdown table ('' to skip).")
    flags.DEFINE_string("title", "", "Title of the table (default: the model name).")
    flags.DEFINE_string("note", "", "A remark printed under the header (e.g. host load).")
    flags.DEFINE_bool("render_only", False, "Measure nothing: write the table from the "
                      "manifest's stored 'latency' (updating its --title / --note).")
    flags.mark_flag_as_required("export_dir")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
