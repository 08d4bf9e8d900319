"""MediaPipe Tasks' `ImageClassifier` on the exit files of a trained model: per exit and
file variant (float32, int8 with float I/O, int8 with uint8 I/O), the top-1 agreement
with the Keras exit and both top-1 accuracies, on real CIFAR-10 test images given as
plain uint8 RGB.

    python -m benchmarks.mediapipe_agreement --model_file runs/r18w025_ce_s0/model.keras \\
        --mediapipe_python .venv-mediapipe/bin/python --data_dir ../shared/data/tfds

The files are written by `byot-export` itself (default options: probabilities, metadata,
pixels in) into a fresh temporary folder; MediaPipe runs in its own environment (see
.ci/run) through tests/mediapipe_classify.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLASSIFY = os.path.join(ROOT, "tests", "mediapipe_classify.py")
VARIANTS = {"float32": ("float32", []), "int8": ("int8", []),
            "int8 uint8 I/O": ("int8", ["--int8_io"])}


def export(model_file: str, folder: str, quantization: str, extra: list[str],
           data_dir: str) -> dict:
    """Runs byot-export; returns {exit name: file path} of the `quantization` files."""
    command = [sys.executable, os.path.join(ROOT, "recipes", "export_tflite.py"),
               "--model_file", model_file, "--dataset", "cifar10", "--data_dir", data_dir,
               "--nocascade", "--nomulti_signature", "--quantizations", quantization,
               "--output_dir", folder, *extra]
    subprocess.run(command, check=True, capture_output=True, text=True)
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    return {e["exit"]: os.path.join(folder, e["files"][quantization]["file"])
            for e in manifest["exits"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_file", required=True)
    parser.add_argument("--mediapipe_python", required=True)
    parser.add_argument("--data_dir", default=os.path.join(os.path.dirname(ROOT), "shared",
                                                           "data", "tfds"))
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--output", default=os.path.join(HERE, "results",
                                                         "mediapipe_agreement"))
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow_datasets as tfds

    from byot_keras.data import normalize_cifar
    from byot_keras.saving import load_model, write_text_atomically

    images, labels = tfds.as_numpy(tfds.load(
        "cifar10", split=f"test[:{args.examples}]", data_dir=args.data_dir, download=False,
        as_supervised=True, batch_size=-1))
    images = images.astype(np.uint8)
    model = load_model(args.model_file)
    keras_top1 = {name: np.asarray(logits).argmax(-1) for name, logits in
                  model.predict(normalize_cifar(images), verbose=0).items()}
    rows = []
    with tempfile.TemporaryDirectory() as work:
        files = {}
        for variant, (quantization, extra) in VARIANTS.items():
            exported = export(args.model_file, os.path.join(work, variant.replace(" ", "_")),
                              quantization, extra, args.data_dir)
            files.update({(variant, name): path for name, path in exported.items()})
        np.save(os.path.join(work, "images.npy"), images)
        result_file = os.path.join(work, "result.json")
        subprocess.run([args.mediapipe_python, CLASSIFY, os.path.join(work, "images.npy"),
                        result_file, *files.values()], check=True, capture_output=True)
        with open(result_file) as f:
            result = json.load(f)
        for (variant, name), path in files.items():
            if "error" in result[path]:
                raise SystemExit(f"MediaPipe refused {variant} {name}: {result[path]['error']}")
            top1 = np.array([c[0] for c in result[path]["categories"]])
            rows.append({"exit": name, "variant": variant,
                         "agreement": round(100 * float(np.mean(top1 == keras_top1[name])), 2),
                         "mediapipe_top1": round(100 * float(np.mean(top1 == labels)), 2),
                         "keras_top1": round(100 * float(np.mean(keras_top1[name] == labels)),
                                             2)})
    lines = [f"# MediaPipe ImageClassifier on byot-export's files: {args.model_file}", "",
             f"{len(labels)} CIFAR-10 test images as uint8 RGB, default options; top-1 (%).",
             "", "| exit | file | agreement with Keras | MediaPipe top-1 | Keras top-1 |",
             "|---|---|---:|---:|---:|"]
    lines += [f"| {r['exit']} | {r['variant']} | {r['agreement']:.2f} | "
              f"{r['mediapipe_top1']:.2f} | {r['keras_top1']:.2f} |" for r in rows]
    lines += ["", "    python -m benchmarks.mediapipe_agreement --model_file "
              f"{args.model_file} --examples {args.examples} --mediapipe_python <python>"]
    write_text_atomically(args.output + ".json", json.dumps(
        {"model_file": args.model_file, "examples": len(labels), "rows": rows}, indent=2))
    write_text_atomically(args.output + ".md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
