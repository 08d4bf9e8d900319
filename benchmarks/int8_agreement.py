"""How often does a full-integer int8 file give the float model's answer? Top-1 agreement
of post-training int8 exit files and of the int8 cascade with the Keras model, over
several briefly trained models.

    python -m benchmarks.int8_agreement --data_dir ../shared/data/tfds

Each budget (`train examples:epochs:batch`) trains a multi-exit model from scratch with
the BYOT loss on the first CIFAR-10 training images (SGD 0.9, cosine-decayed learning
rate, no augmentation: the test suite's recipe), exports it with `export_tflite` (float32
and int8, calibrated on 200 training images) and compares, on the first
`--test_examples` test images: each int8 `exit_<k>` file and the chained int8 cascade
against the Keras exit; file sizes; and why answers flip: the int8 logits' RMS error
against the float logits next to the median gap between the float model's two largest
logits. Target (export issue): at least 97 % agreement and about 4x smaller files.
Writes `benchmarks/results/int8_agreement.md` and `.json`. A measurement, not a test.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
import time

from benchmarks.host import host_facts

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

TARGET = 0.97
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
DEFAULT_BUDGETS = ("2500:3:64", "5000:3:64", "5000:3:32", "5000:4:64")


def parse_budget(text: str) -> tuple[int, int, int]:
    """"examples:epochs:batch" -> three positive integers."""
    parts = text.split(":")
    try:
        values = tuple(int(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"Budget '{text}' is not 'examples:epochs:batch' with three "
                         "positive integers, e.g. 5000:3:64.")
    return values


def train(x, y, model_name: str, width_multiplier: float, epochs: int, batch_size: int,
          learning_rate: float, seed: int):
    import keras

    from byot_keras import zoo
    from byot_keras.data import CIFAR_NORMALIZATION

    keras.utils.set_random_seed(seed)
    model = zoo.create_model(model_name, num_classes=10, width_multiplier=width_multiplier)
    model.input_normalization = CIFAR_NORMALIZATION  # as byot-train records it
    steps = epochs * int(np.ceil(len(x) / batch_size))
    model.compile(optimizer=keras.optimizers.SGD(
        keras.optimizers.schedules.CosineDecay(learning_rate, steps), momentum=0.9))
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    return model


def compare(model, calibration, images, labels, folder: str) -> list[dict]:
    """Per exit: float/int8 accuracy, agreement of the int8 file and of the int8 cascade
    with the Keras exit, sizes, int8 logit error and the float top-2 gap."""
    from byot_keras.export import CascadeRuntime, LiteRTModel, export_tflite
    from byot_keras.normalization import to_pixels

    # Logits out, to measure their int8 error; the files take 0..255 pixels.
    manifest = export_tflite(model, folder, quantizations=["float32", "int8"],
                             representative_data=calibration, multi_signature=False,
                             exit_outputs="logits")
    expected = model.predict(images, verbose=0)
    pixels = to_pixels(images, model.input_normalization)
    cascade = CascadeRuntime(folder, quantization="int8").exit_logits(pixels)
    rows = []
    for k, entry in enumerate(manifest["exits"], start=1):
        name = f"exit_{k}"
        float_logits = expected[name]
        int8_logits = LiteRTModel(os.path.join(folder, entry["files"]["int8"]["file"])
                                  ).predict(image=pixels)["logits"]
        top2 = np.sort(float_logits, axis=-1)[:, -2:]
        answer = float_logits.argmax(-1)
        rows.append({
            "exit": name,
            "float_accuracy": float(np.mean(answer == labels)),
            "int8_accuracy": float(np.mean(int8_logits.argmax(-1) == labels)),
            "file_agreement": float(np.mean(int8_logits.argmax(-1) == answer)),
            "cascade_agreement": float(np.mean(cascade[name].argmax(-1) == answer)),
            "float32_bytes": entry["files"]["float32"]["bytes"],
            "int8_bytes": entry["files"]["int8"]["bytes"],
            "int8_logit_rms_error": float(np.sqrt(np.mean((int8_logits - float_logits) ** 2))),
            "median_top2_gap": float(np.median(top2[:, 1] - top2[:, 0])),
        })
    return rows


def run(data_dir: str, budgets, model_name: str = "resnet18_byot",
        width_multiplier: float = 0.25, learning_rate: float = 0.05, seed: int = 0,
        test_examples: int = 5000, calibration_examples: int = 200) -> dict:
    from byot_keras.data import load_cifar

    largest = max(examples for examples, _, _ in budgets)
    x_train, y_train = load_cifar("cifar10", f"train[:{largest}]", data_dir)
    x_test, y_test = load_cifar("cifar10", f"test[:{test_examples}]", data_dir)
    models = []
    for examples, epochs, batch_size in budgets:
        start = time.time()
        model = train(x_train[:examples], y_train[:examples], model_name, width_multiplier,
                      epochs, batch_size, learning_rate, seed)
        with tempfile.TemporaryDirectory(prefix="byot-int8-agreement-") as folder:
            rows = compare(model, x_train[:calibration_examples], x_test, y_test,
                           os.path.join(folder, "export"))
        models.append({"train_examples": examples, "epochs": epochs,
                       "batch_size": batch_size, "exits": rows,
                       "seconds": round(time.time() - start, 1)})
        print(markdown_model(models[-1]), flush=True)
    return {"model": model_name, "width_multiplier": width_multiplier,
            "learning_rate": learning_rate, "seed": seed, "test_examples": len(y_test),
            "calibration_examples": calibration_examples, "target": TARGET,
            "models": models}


def markdown_model(result: dict) -> str:
    lines = [f"### {result['train_examples']:,} images, {result['epochs']} epochs, batch "
             f"{result['batch_size']}", "",
             "| exit | float top-1 | int8 top-1 | agreement: exit file | agreement: int8 "
             "cascade | int8 logit RMS error | median top-2 gap | float32 KiB | int8 KiB "
             "| smaller |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in result["exits"]:
        lines.append(
            f"| {row['exit']} | {row['float_accuracy']:.3f} | {row['int8_accuracy']:.3f} | "
            f"{row['file_agreement']:.4f} | {row['cascade_agreement']:.4f} | "
            f"{row['int8_logit_rms_error']:.3f} | {row['median_top2_gap']:.3f} | "
            f"{row['float32_bytes'] / 1024:,.0f} | {row['int8_bytes'] / 1024:,.0f} | "
            f"{row['float32_bytes'] / row['int8_bytes']:.2f}x |")
    return "\n".join(lines) + "\n"


def markdown(results: dict) -> str:
    agreements = [(row[key], model, row["exit"]) for model in results["models"]
                  for row in model["exits"] for key in ("file_agreement", "cascade_agreement")]
    met = sum(value >= results["target"] for value, _, _ in agreements)
    lines = [
        f"# int8 agreement with the float model: `{results['model']}` "
        f"x{results['width_multiplier']}, CIFAR-10",
        "",
        f"- {len(results['models'])} models, each trained from scratch (BYOT loss, SGD 0.9, "
        f"cosine learning rate from {results['learning_rate']}, no augmentation, seed "
        f"{results['seed']}) on the first N training images",
        f"- int8: full-integer `export_tflite` files calibrated on the first "
        f"{results['calibration_examples']} training images; agreement = same top-1 as the "
        f"Keras exit on the first {results['test_examples']:,} test images",
        f"- host: {results['host']['cpu']} ({results['host']['logical_cpus']} logical CPUs);"
        f" measured {results['date']}",
        "",
        f"**{met} of {len(agreements)}** exit-file and cascade agreements reach the "
        f"{100 * results['target']:.0f} % target; range "
        f"{100 * min(a for a, _, _ in agreements):.2f}-"
        f"{100 * max(a for a, _, _ in agreements):.2f} %.",
        "",
    ]
    lines += [markdown_model(model) for model in results["models"]]
    budgets = ",".join(f"{m['train_examples']}:{m['epochs']}:{m['batch_size']}"
                       for m in results["models"])
    lines.append(
        "Reproduce: `python -m benchmarks.int8_agreement --data_dir ../shared/data/tfds "
        f"--model={results['model']} --width_multiplier={results['width_multiplier']} "
        f"--budgets={budgets} --learning_rate={results['learning_rate']} "
        f"--seed={results['seed']} --test_examples={results['test_examples']} "
        f"--calibration_examples={results['calibration_examples']}`\n")
    lines.append(
        "An answer flips when int8 noise on the logits exceeds the gap between the two "
        "largest ones: compare the RMS error with the median gap. Models with heavier-tailed "
        "activations get larger int8 ranges, hence coarser steps and more noise for the same "
        "data. Quantization-aware training (`byot-qat`) trains the model to the int8 grid.")
    return "\n".join(lines) + "\n"


def main() -> None:
    import argparse

    from byot_keras.saving import write_text_atomically

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="tfds data_dir holding cifar10")
    parser.add_argument("--model", default="resnet18_byot")
    parser.add_argument("--width_multiplier", type=float, default=0.25)
    parser.add_argument("--budgets", default=",".join(DEFAULT_BUDGETS),
                        help="comma-separated examples:epochs:batch, one model each")
    parser.add_argument("--learning_rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test_examples", type=int, default=5000)
    parser.add_argument("--calibration_examples", type=int, default=200)
    parser.add_argument("--output", default=os.path.join(RESULTS, "int8_agreement"),
                        help="path prefix of the .md and .json results")
    args = parser.parse_args()
    budgets = [parse_budget(text) for text in args.budgets.split(",")]
    results = run(args.data_dir, budgets, args.model, args.width_multiplier,
                  args.learning_rate, args.seed, args.test_examples,
                  args.calibration_examples)
    results.update(host=host_facts(), date=datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"))
    text = markdown(results)
    write_text_atomically(args.output + ".json", json.dumps(results, indent=2) + "\n")
    write_text_atomically(args.output + ".md", text)
    print(text)


if __name__ == "__main__":
    main()
