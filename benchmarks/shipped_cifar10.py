"""The shipped CIFAR-10 weights as a phone gets them: one export command, every file's
accuracy and agreement with Keras, and the early-exit cascade's trade-off.

    python -m benchmarks.shipped_cifar10 --data_dir ../shared/data/tfds [--latency]

1. Exports `resnet18_byot(num_classes=10, width_multiplier=0.25, weights="cifar10")` with
   the command the README shows (`byot-export ... --weights cifar10`), float32 and int8,
   evaluated on all 10,000 test images (the manifest's `accuracy` and
   `agreement_with_keras`).
2. Runs the float32 and the int8 cascade (`byot_keras.export.CascadeRuntime`, 1 thread)
   on all 10,000 test images at each threshold: accuracy, mean exit, MFLOPs per image and
   the share of images each exit answers (not timed: one run per image).
3. With `--latency` (an idle machine: it times): the cascade again on the first 2,000
   test images at a few thresholds, each image's latency the median of 3 runs, and
   `benchmarks.tflite_latency` on every file (`benchmarks/results/
   tflite_latency_shipped.md`).

Writes `benchmarks/results/shipped_cifar10.{md,json}` and keeps the export in
`--work_dir` (default: a new temporary folder).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "resnet18_byot"
CONFIG = {"num_classes": 10, "width_multiplier": 0.25}
THRESHOLDS = (0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1)
TIMED_THRESHOLDS = (0, 0.8, 0.9, 0.99, 1)
TIMED_IMAGES = 2000
QUANTIZATIONS = ("float32", "int8")


def export_command(data_dir: str, output_dir: str) -> list[str]:
    return ["byot-export", "--model", MODEL, "--num_classes", str(CONFIG["num_classes"]),
            "--width_multiplier", str(CONFIG["width_multiplier"]), "--weights", "cifar10",
            "--dataset", "cifar10", "--data_dir", data_dir,
            "--quantizations", ",".join(QUANTIZATIONS), "--eval_examples", "10000",
            "--output_dir", output_dir]


def file_rows(manifest: dict) -> list[dict]:
    """Per exit and quantization: the file, its size, top-1 and agreement with Keras."""
    return [{"exit": entry["exit"], "quantization": q, "file": f["file"], "bytes": f["bytes"],
             "accuracy": f["accuracy"], "agreement_with_keras": f["agreement_with_keras"]}
            for entry in manifest["exits"] for q, f in entry["files"].items()]


def sweep(export_dir: str, data_dir: str, timed: bool = False) -> dict:
    """Per quantization, the cascade's rows (`sweep_thresholds`) on all test images at
    THRESHOLDS, or `timed`: on the first TIMED_IMAGES at TIMED_THRESHOLDS, 3 runs each."""
    from byot_keras.export.runtime import (
        CascadeRuntime,
        export_inputs,
        load_labelled_split,
        read_manifest,
        sweep_thresholds,
    )

    manifest = read_manifest(export_dir)
    images, labels, applied = load_labelled_split("cifar10", "test", data_dir,
                                                  TIMED_IMAGES if timed else None)
    images, warning = export_inputs(manifest, images, applied)
    assert warning is None, warning  # the export normalises the pixels itself
    results = {}
    for quantization in QUANTIZATIONS:
        runtime = CascadeRuntime(export_dir, quantization=quantization, num_threads=1)
        rows = sweep_thresholds(runtime, images, labels,
                                TIMED_THRESHOLDS if timed else THRESHOLDS,
                                repeats=3 if timed else 1)
        if not timed:  # one run per image, under any load: not a latency figure
            for row in rows:
                del row["mean_latency_ms"], row["p90_latency_ms"]
        results[quantization] = rows
    return results


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"


def _sweep_table(rows: list[dict], timed: bool) -> list[str]:
    header = ["threshold", "top-1", "mean exit", "MFLOPs / image"]
    header += ["ms / image (mean)", "p90 ms"] if timed else []
    header += [f"exit {k}" for k in range(1, len(rows[0]["exit_fractions"]) + 1)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for row in rows:
        cells = [f"{row['threshold']:g}", _percent(row["accuracy"]), f"{row['mean_exit']:.2f}",
                 f"{row['mean_mflops']:.1f}"]
        if timed:
            cells += [f"{row['mean_latency_ms']:.3f}", f"{row['p90_latency_ms']:.3f}"]
        cells += [f"{100 * f:.1f} %" for f in row["exit_fractions"]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def format_markdown(result: dict) -> str:
    lines = [f"# Shipped CIFAR-10 weights on TFLite: `{MODEL}` x{CONFIG['width_multiplier']}, "
             "`weights=\"cifar10\"`", "",
             f"Measured {result['date']} on the whole CIFAR-10 test split (10,000 images, "
             f"as 0..255 RGB pixels). Command: `{result['command']}`. Export: "
             f"`{' '.join(result['export_command'])}`"
             + (f" ({result['export_seconds']:.0f} s)." if result["export_seconds"] else "."),
             "", "## Exit files", "",
             "| exit | float32 KB | float32 top-1 | agreement | int8 KB | int8 top-1 | "
             "agreement |", "|---|---:|---:|---:|---:|---:|---:|"]
    by_exit: dict = {}
    for row in result["files"]:
        by_exit.setdefault(row["exit"], {})[row["quantization"]] = row
    for name, files in by_exit.items():
        cells = []
        for q in QUANTIZATIONS:
            f = files[q]
            cells += [f"{f['bytes'] / 1000:,.1f}", _percent(f["accuracy"]),
                      _percent(f["agreement_with_keras"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Agreement: the share of images on which the file's top-1 class is the "
              "Keras model's.", ""]
    for q in QUANTIZATIONS:
        lines += [f"## Early-exit cascade, {q}", ""] + _sweep_table(result["sweep"][q], False)
    lines.append("A threshold t answers at the first exit whose softmax confidence is >= t "
                 "(tflite/README.md, section 3); MFLOPs / image count what the cascade ran "
                 "(trunk and the heads of every exit it passed). One run per image, not "
                 f"timed here; load average {result['load']} at the start.")
    if "timed_sweep" in result:
        lines += ["", f"## Latency of the cascade (first {TIMED_IMAGES:,} test images)", "",
                  "1 thread; each image's latency is the median of 3 runs; load average "
                  f"{result['timed_load']} at the start. Per-file "
                  "latency: `benchmarks/results/tflite_latency_shipped.md`.", ""]
        for q in QUANTIZATIONS:
            lines += [f"### {q}", ""] + _sweep_table(result["timed_sweep"][q], True)
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--work_dir", help="A new or empty folder for the export "
                        "(default: a new temporary folder).")
    parser.add_argument("--latency", action="store_true", help="Also time (idle machine).")
    parser.add_argument("--export_dir", help="Measure this export of the shipped model "
                        "instead of exporting again (made by the same command).")
    parser.add_argument("--output", default=str(RESULTS / "shipped_cifar10"))
    args = parser.parse_args(argv)
    load = [round(x, 2) for x in os.getloadavg()]
    clock = datetime.datetime.now(datetime.timezone.utc)
    if args.export_dir:
        export_dir, seconds = args.export_dir, None
        command = export_command(args.data_dir, export_dir)
    else:
        work = Path(args.work_dir or tempfile.mkdtemp(prefix="byot-shipped-"))
        export_dir = str(work / "export")
        command = export_command(args.data_dir, export_dir)
        subprocess.run(command, check=True)
        seconds = (datetime.datetime.now(datetime.timezone.utc) - clock).total_seconds()
    from byot_keras.export.runtime import read_manifest

    result = {
        "model": MODEL, "config": CONFIG, "weights": "cifar10",
        "date": clock.date().isoformat(), "load": load,
        "command": " ".join(["python -m benchmarks.shipped_cifar10", *(argv or sys.argv[1:])]),
        "export_command": command, "export_seconds": seconds,
        "files": file_rows(read_manifest(export_dir)),
        "sweep": sweep(export_dir, args.data_dir),
    }
    if args.latency:
        from benchmarks import tflite_latency

        result["timed_load"] = [round(x, 2) for x in os.getloadavg()]
        result["timed_sweep"] = sweep(export_dir, args.data_dir, timed=True)
        tflite_latency.run_benchmark(
            export_dir, str(RESULTS / "tflite_latency_shipped.md"),
            title=f"{MODEL} x{CONFIG['width_multiplier']}, weights='cifar10' (the shipped "
                  "CIFAR-10 model)")
    output = Path(args.output)
    for suffix, text in ((".json", json.dumps(result, indent=1) + "\n"),
                         (".md", format_markdown(result))):
        temporary = output.with_suffix(suffix + ".tmp")
        temporary.write_text(text)
        os.replace(temporary, output.with_suffix(suffix))
    print(format_markdown(result))
    print(f"wrote {output}.md, {output}.json; export in {export_dir}")


if __name__ == "__main__":
    main()
