"""Post-training int8 vs quantization-aware training vs pruning, per exit, on real
CIFAR-10 (the offline tfds copy).

    python -m benchmarks.compress_cifar10 --data_dir ../shared/data/tfds

1. trains a narrow multi-exit ResNet-18 briefly on CIFAR-10 (Keras 3, BYOT loss) and
   saves it;
2. post-training quantization: `byot_keras.export.export_tflite` writes float32 and
   full-int8 files per exit (int8 calibrated on 200 training images);
3. QAT: `recipes/qat.py` fine-tunes the model's tf_keras twin with fake quantization
   and the same BYOT loss, and writes int8 files;
4. pruning: `recipes/prune.py` prunes every Conv2D/Dense kernel to 50% with the BYOT
   loss, and writes float32 and int8 files;
5. writes the per-exit table (top-1 of every file on the same test images, file sizes,
   gzip sizes) to `benchmarks/results/compress_cifar10.md` and `.json`.

Steps 3 and 4 run in their own processes (tfmot switches TensorFlow to legacy Keras),
at the same time. QAT and pruning fine-tune for a few more epochs on the same training
images, so part of their difference to post-training int8 is that extra training: the
table also shows their fine-tuned Keras models' accuracy. This is a measurement, not a
test: nothing fails when a number is poor.
"""

from __future__ import annotations

import datetime
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
DEFAULT_DATA_DIR = os.environ.get("BYOT_TFDS_DIR",
                                  os.path.join(os.path.dirname(ROOT), "shared", "data", "tfds"))


def train(settings: dict, work_dir: str):
    """Step 1: the briefly trained Keras 3 model (saved to work_dir/model.keras)."""
    import keras
    import numpy as np

    from byot_keras import zoo
    from byot_keras.data import load_cifar
    from byot_keras.saving import save_model_atomically

    keras.utils.set_random_seed(settings["seed"])
    x_train, y_train = load_cifar("cifar10", f"train[:{settings['train_examples']}]",
                                  settings["data_dir"])
    x_test, y_test = load_cifar("cifar10", f"test[:{settings['test_examples']}]",
                                settings["data_dir"])
    model = zoo.create_model(settings["model"], num_classes=10,
                             width_multiplier=settings["width_multiplier"])
    steps = settings["epochs"] * int(np.ceil(len(x_train) / settings["batch_size"]))
    schedule = keras.optimizers.schedules.CosineDecay(settings["learning_rate"], steps)
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9))
    model.fit(x_train, y_train, batch_size=settings["batch_size"], epochs=settings["epochs"],
              verbose=2)
    path = save_model_atomically(model, os.path.join(work_dir, "model.keras"))
    return model, path, (x_train, y_train), (x_test, y_test)


def post_training(model, x_train, eval_data, work_dir: str) -> dict:
    """Step 2: float32 and full-int8 files per exit (no cascade: the table is per exit)."""
    from byot_keras.export import export_tflite

    return export_tflite(model, os.path.join(work_dir, "ptq"),
                         quantizations=["float32", "int8"], representative_data=x_train[:200],
                         eval_data=eval_data, cascade=False)


def _compress_command(recipe: str, model_file: str, settings: dict, output_dir: str,
                      extra: list) -> list:
    return [sys.executable, os.path.join(ROOT, "recipes", recipe), "--model_file", model_file,
            "--dataset", "cifar10", "--data_dir", settings["data_dir"],
            "--train_examples", str(settings["train_examples"]),
            "--eval_examples", str(settings["test_examples"]),
            "--batch_size", str(settings["batch_size"]), "--nocascade",
            "--output_dir", output_dir, *extra]


def compress(model_file: str, settings: dict, work_dir: str) -> dict:
    """Steps 3 and 4, in parallel processes; returns their manifests and run times."""
    commands = {
        "qat": _compress_command("qat.py", model_file, settings, os.path.join(work_dir, "qat"),
                                 ["--epochs", str(settings["qat_epochs"])]),
        "pruned": _compress_command(
            "prune.py", model_file, settings, os.path.join(work_dir, "pruned"),
            ["--epochs", str(settings["prune_epochs"]), "--target_sparsity",
             str(settings["target_sparsity"]), "--quantizations", "float32,int8"]),
    }
    started = time.perf_counter()
    logs = {name: open(os.path.join(work_dir, f"{name}.log"), "w") for name in commands}
    processes = {name: subprocess.Popen(command, cwd=ROOT, stdout=logs[name],
                                        stderr=subprocess.STDOUT)
                 for name, command in commands.items()}
    finished = {}
    while len(finished) < len(processes):  # each one's own run time, not the slower one's
        for name, process in processes.items():
            if name not in finished and process.poll() is not None:
                finished[name] = round(time.perf_counter() - started, 1)
        time.sleep(1)
    for log in logs.values():
        log.close()
    results = {}
    for name, process in processes.items():
        if process.returncode:
            with open(os.path.join(work_dir, f"{name}.log")) as f:
                raise RuntimeError(f"{name} failed:\n{f.read()[-5000:]}")
        with open(os.path.join(work_dir, name, "manifest.json")) as f:
            results[name] = json.load(f)
        results[name]["seconds"] = finished[name]
    return results


def _gzip_size(path: str) -> int:
    with open(path, "rb") as f:
        return len(gzip.compress(f.read(), compresslevel=9))


def collect(ptq: dict, compressed: dict, work_dir: str) -> list[dict]:
    """One row per exit with every file's top-1 and size."""
    rows = []
    qat, pruned = compressed["qat"], compressed["pruned"]
    for k, entry in enumerate(ptq["exits"]):
        files = entry["files"]
        qat_entry, pruned_entry = qat["exits"][k], pruned["exits"][k]
        rows.append({
            "exit": entry["exit"],
            "params": entry["params"],
            "mflops": round(entry["flops"] / 1e6, 1),
            "float_keras": entry["keras_accuracy"],
            "float32_file": files["float32"]["accuracy"],
            "ptq_int8": files["int8"]["accuracy"],
            "qat_keras": qat_entry["keras_accuracy"],
            "qat_int8": qat_entry["files"]["int8"]["accuracy"],
            "qat_int8_agreement": qat_entry["files"]["int8"]["agreement_with_keras"],
            "pruned_keras": pruned_entry["keras_accuracy"],
            "pruned_float32": pruned_entry["files"]["float32"]["accuracy"],
            "pruned_int8": pruned_entry["files"]["int8"]["accuracy"],
            "bytes": {
                "float32": files["float32"]["bytes"],
                "ptq_int8": files["int8"]["bytes"],
                "qat_int8": qat_entry["files"]["int8"]["bytes"],
                "pruned_float32": pruned_entry["files"]["float32"]["bytes"],
                "pruned_int8": pruned_entry["files"]["int8"]["bytes"],
            },
            "gzip_bytes": {
                "float32": _gzip_size(os.path.join(work_dir, "ptq", files["float32"]["file"])),
                "ptq_int8": _gzip_size(os.path.join(work_dir, "ptq", files["int8"]["file"])),
                "qat_int8": qat_entry["files"]["int8"]["gzip_bytes"],
                "pruned_float32": pruned_entry["files"]["float32"]["gzip_bytes"],
                "pruned_int8": pruned_entry["files"]["int8"]["gzip_bytes"],
            },
        })
    return rows


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def _kb(n: int) -> str:
    return f"{n / 1024:,.0f}"


def format_markdown(report: dict) -> str:
    s, rows = report["settings"], report["rows"]
    qat, pruned = report["qat"], report["pruned"]
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in report["phase_seconds"].items())
    lines = [
        f"# Post-training int8 vs QAT vs pruning: {s['model']} (width x{s['width_multiplier']}"
        f"), CIFAR-10",
        "",
        f"- model: trained {_epochs(s['epochs'])} on the first {s['train_examples']:,} CIFAR-10 "
        f"training images (BYOT `official` loss, SGD {s['learning_rate']} cosine, batch "
        f"{s['batch_size']}, no augmentation): a briefly trained model, not a converged one",
        f"- top-1 on the first {s['test_examples']:,} test images; every column from the "
        "same images; file columns run the .tflite files in LiteRT",
        "- PTQ int8: `byot-export` full-integer, calibrated on 200 training images",
        f"- QAT int8: `byot-qat`, {_epochs(s['qat_epochs'])} of fake-quantized fine-tuning "
        f"with the BYOT loss (lr {qat['finetune']['learning_rate']}) on the same training "
        f"images, {qat['tool']}",
        f"- pruned: `byot-prune`, every Conv2D/Dense kernel to {s['target_sparsity']:.0%} "
        f"zeros (polynomial schedule, {_epochs(s['prune_epochs'])} with the BYOT loss, lr "
        f"{pruned['finetune']['learning_rate']}); measured kernel sparsity "
        f"{pruned['kernel_sparsity']:.4f}",
        f"- host: {report['host']}; measured {report['date']}; whole run "
        f"{report['seconds']:.0f} s ({phases}; QAT and pruning ran at the same time)",
        "",
        "## Top-1 per exit",
        "",
        "| exit | params | MFLOPs | float (Keras) | float32 file | PTQ int8 | QAT (Keras) "
        "| QAT int8 | pruned float32 | pruned int8 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['exit']} | {r['params']:,} | {r['mflops']} | {r['float_keras']:.4f} | "
            f"{r['float32_file']:.4f} | {r['ptq_int8']:.4f} | {r['qat_keras']:.4f} | "
            f"{r['qat_int8']:.4f} | {r['pruned_float32']:.4f} | {r['pruned_int8']:.4f} |")
    lines += [
        "",
        "## File sizes per exit (KiB; gzip -9 in parentheses)",
        "",
        "| exit | float32 | PTQ int8 | QAT int8 | pruned float32 | pruned int8 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        b, g = r["bytes"], r["gzip_bytes"]
        cells = [f"{_kb(b[key])} ({_kb(g[key])})" for key in
                 ("float32", "ptq_int8", "qat_int8", "pruned_float32", "pruned_int8")]
        lines.append(f"| {r['exit']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Zeros do not shrink a .tflite file, they make it compress: compare the gzip sizes "
        "(what an app download or APK carries). The QAT and pruned runs fine-tune for "
        "extra epochs on the same images, so their differences to PTQ include that "
        "training (the `(Keras)` columns show it without the int8 conversion).",
        "",
        f"Reproduce: `{report['command']}`",
    ]
    return "\n".join(lines) + "\n"


def _host() -> str:
    import platform

    cpus = os.cpu_count()
    return f"{platform.processor() or platform.machine()} ({cpus} logical CPUs), load " \
           f"average {', '.join(f'{v:.1f}' for v in os.getloadavg())} at the end"


def run(settings: dict, work_dir: str, output_stem: str) -> dict:
    started = time.perf_counter()
    os.makedirs(work_dir, exist_ok=True)
    model, model_file, (x_train, _), eval_data = train(settings, work_dir)
    seconds = {"train": round(time.perf_counter() - started, 1)}
    ptq = post_training(model, x_train, eval_data, work_dir)
    seconds["ptq_export"] = round(time.perf_counter() - started - seconds["train"], 1)
    compressed = compress(model_file, settings, work_dir)
    seconds.update({name: compressed[name]["seconds"] for name in ("qat", "pruned")})
    rows = collect(ptq, compressed, work_dir)
    report = {
        "model": settings["model"],  # the model cards link results by this key
        "settings": settings,
        "rows": rows,
        "qat": compressed["qat"]["compression"],
        "pruned": compressed["pruned"]["compression"],
        "host": _host(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "phase_seconds": seconds,
        "command": "python -m benchmarks.compress_cifar10 " + " ".join(
            f"--{k}={v}" for k, v in settings.items() if k != "data_dir"),
    }
    from byot_keras.saving import write_text_atomically

    write_text_atomically(output_stem + ".json", json.dumps(report, indent=2) + "\n")
    write_text_atomically(output_stem + ".md", format_markdown(report))
    return report


def main(argv):
    del argv
    from absl import flags

    f = flags.FLAGS
    settings = {name: getattr(f, name) for name in (
        "model", "width_multiplier", "train_examples", "test_examples", "epochs",
        "batch_size", "learning_rate", "qat_epochs", "prune_epochs", "target_sparsity",
        "seed", "data_dir")}
    report = run(settings, f.work_dir, f.output_stem)
    print(format_markdown(report))


def _define_flags():
    from absl import flags

    flags.DEFINE_string("model", "resnet18_byot", "Registry name.")
    flags.DEFINE_float("width_multiplier", 0.25, "Width of the model.")
    flags.DEFINE_integer("train_examples", 4000, "CIFAR-10 training images.")
    flags.DEFINE_integer("test_examples", 1000, "CIFAR-10 test images for top-1.")
    flags.DEFINE_integer("epochs", 5, "Keras 3 training epochs.")
    flags.DEFINE_integer("batch_size", 64, "Batch size (training and fine-tuning).")
    flags.DEFINE_float("learning_rate", 0.05, "Peak SGD learning rate of the training.")
    flags.DEFINE_integer("qat_epochs", 1, "QAT fine-tuning epochs.")
    flags.DEFINE_integer("prune_epochs", 1, "Pruning fine-tuning epochs.")
    flags.DEFINE_float("target_sparsity", 0.5, "Pruning target.")
    flags.DEFINE_integer("seed", 0, "Random seed.")
    flags.DEFINE_string("data_dir", DEFAULT_DATA_DIR, "tfds data_dir with cifar10.")
    flags.DEFINE_string("work_dir", os.path.join(tempfile.gettempdir(), "byot_compress"),
                        "Where the model and the exports go.")
    flags.DEFINE_string("output_stem", os.path.join(RESULTS, "compress_cifar10"),
                        "The table goes to <stem>.md and <stem>.json.")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
