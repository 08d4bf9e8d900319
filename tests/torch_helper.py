"""The torch side of tests/test_torch_backend.py, run as a script with KERAS_BACKEND=torch.

The Keras backend is fixed per process, so the tests run this in the Python named by
BYOT_TORCH_PYTHON (a virtual environment that sees this project's TensorFlow and Keras
and adds torch) and check what it reports. The last line of stdout is one JSON object;
`--out DIR` receives the files it writes.

    python tests/torch_helper.py --out DIR [--portability] [--methods] [--train]

--portability: tests/backend_helper.py's ResNet (DIR/resnet.keras, DIR/resnet.npz) and
    its early-exit answers at one threshold (DIR/early_exit.npz), for the TensorFlow side
    to load and compare; also each exit's deployable sub-model against the whole model,
    the exits' costs, and the TFLite export: refused in this process, done by
    `byot-export` started on torch (it restarts on TensorFlow; DIR/export).
--methods: backend_helper.methods (every method, cohort and KD model: fit, evaluate,
    save / load, resume; DIR/<method>.keras and .npz).
--train: byot-train on the embedded digits (tf.data feeding torch): interrupted after
    epoch 1 of 2, then resumed by `byot-train --backend torch`; data-parallel strategies
    are refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from backend_helper import (  # noqa: E402  (what the JAX helper runs alike)
    interrupted_then_resumed,
    main,
    methods,
    refused_strategies,
    train_resnet,
)


def portability(out: Path) -> dict:
    from byot_keras.inference import early_exit_predict

    model, x, logits, trained = train_resnet(out)
    # The median confidence of the first exit: about half the images answer there, the
    # rest further on.
    threshold = float(np.median(np.max(_softmax(logits["exit_1"]), axis=-1)))
    answers = early_exit_predict(model, x, threshold=threshold)
    # Each exit's deployable sub-model (what gets exported) against the whole model.
    sub_model_diff = max(
        float(np.abs(model.exit_model(name).predict(x, verbose=0) - logits[name]).max())
        for name in model.exit_names)
    exported = _export(model, out)
    np.savez(out / "early_exit.npz", predictions=answers.predictions, exits=answers.exits,
             confidences=answers.confidences, threshold=threshold)
    return {**trained, "sub_model_max_abs_diff": sub_model_diff, "costs": model.exit_costs(),
            **exported}


#: The exits byot-export writes files for: the first (its own head) and the deepest (the
#: whole trunk) hold every kind of layer the others do.
EXPORTED_EXITS = (1, 4)


def _export(model, out: Path) -> dict:
    """TFLite export on torch: `export_tflite` in this process is refused (Keras cannot
    trace a torch model into a TensorFlow graph); `byot-export` started on torch restarts
    itself on TensorFlow and exports the saved file (DIR/export)."""
    from byot_keras.export import export_tflite

    try:
        export_tflite(model, out / "refused", exit_outputs="logits", cascade=False,
                      multi_signature=False)
        refused = None
    except ValueError as error:
        refused = str(error)
    command = [sys.executable, "-m", "byot_keras.export.cli",
               "--model_file", str(out / "resnet.keras"), "--output_dir", str(out / "export"),
               "--exit_outputs", "logits", "--nocascade", "--nomulti_signature",
               "--exits", ",".join(map(str, EXPORTED_EXITS))]
    done = subprocess.run(command, env=dict(os.environ, KERAS_BACKEND="torch"),
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"byot-export failed ({done.returncode}): {done.stderr[-3000:]}")
    return {"export_refused": refused, "refused_folder": os.path.exists(out / "refused"),
            "exported": sorted(p.name for p in (out / "export").glob("*.tflite"))}


def _softmax(logits):
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def train_digits(out: Path) -> dict:
    """byot-train on torch with the tf.data pipeline, interrupted and resumed by
    `byot-train --backend torch` (started on torch: a start on TensorFlow would restart
    it, the restart that byot-export's (torch -> TensorFlow) covers at the cost of one
    more process); neither kind of data parallelism runs on torch."""
    return {**interrupted_then_resumed(out / "run", backend="torch", start_on="torch"),
            **refused_strategies(out, ("mirrored", "data_parallel"))}


if __name__ == "__main__":
    main({"portability": portability, "methods": methods, "train": train_digits})
