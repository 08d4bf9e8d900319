"""The torch side of tests/test_torch_backend.py, run as a script with KERAS_BACKEND=torch.

The Keras backend is fixed per process, so the tests run this in the Python named by
BYOT_TORCH_PYTHON (a virtual environment that sees this project's TensorFlow and Keras
and adds torch) and check what it reports. The last line of stdout is one JSON object;
`--out DIR` receives the files it writes.

    python tests/torch_helper.py --out DIR [--portability] [--methods] [--train]

--portability: a BYOT ResNet-18 at 1/8 width trained 2 SGD steps, saved as
    DIR/resnet.keras with the images it is compared on and its logits (DIR/resnet.npz),
    and its early-exit answers at one threshold (DIR/early_exit.npz), for the TensorFlow
    side to load and compare; also each exit's deployable sub-model against the whole
    model, the exits' costs, and the TFLite export: refused in this process, done by
    `byot-export` started on torch (it restarts on TensorFlow; DIR/export).
--methods: every method (byot, msd, eed, sdn, deep_supervision, ce, cskd, one), both
    cohort methods and teacher -> student KD on tiny dense networks with the zoo's output
    contract (tests/distribute_helper.py): fit (a cosine LR schedule) and evaluate with
    every logged term finite, the per-exit accuracies against the predicted logits, save /
    load .keras with the same logits, and resume (fit the loaded model further). Each
    file is left with its inputs and logits (DIR/<method>.npz) for the TensorFlow side.
--train: byot-train on the embedded digits (tf.data feeding torch): interrupted after
    epoch 1 of 2, then resumed by `byot-train --backend torch`; data-parallel strategies
    are refused.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from distribute_helper import METHOD_BUILDERS, toy_network  # noqa: E402  (the toy networks)

from byot_keras import saving, zoo  # noqa: E402

keras.config.set_floatx("float32")  # distribute_helper sets float64 on import

BATCH = 16
STEPS = 3
METHODS = {"byot": lambda: toy_network(method="byot"), **METHOD_BUILDERS}


def portability(out: Path) -> dict:
    from byot_keras.inference import early_exit_predict

    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1, size=(8, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(8,)).astype("int32")
    model = zoo.resnet18_byot(num_classes=10, width_multiplier=0.125)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    before = [np.array(w) for w in model.get_weights()]
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    after = model.get_weights()
    logits = model.predict(x, verbose=0)
    # The median confidence of the first exit: about half the images answer there, the
    # rest further on.
    threshold = float(np.median(np.max(_softmax(logits["exit_1"]), axis=-1)))
    answers = early_exit_predict(model, x, threshold=threshold)
    # Each exit's deployable sub-model (what gets exported) against the whole model.
    sub_model_diff = max(
        float(np.abs(model.exit_model(name).predict(x, verbose=0) - logits[name]).max())
        for name in model.exit_names)
    model.save(out / "resnet.keras")
    np.savez(out / "resnet.npz", images=x, **logits)
    exported = _export(model, out)
    np.savez(out / "early_exit.npz", predictions=answers.predictions, exits=answers.exits,
             confidences=answers.confidences, threshold=threshold)
    return {"moved": max(float(np.abs(a - b).max()) for a, b in zip(before, after)),
            "jit_compile": model.jit_compile, "exits": model.exit_names,
            "optimizer_module": type(model.optimizer).__module__,
            "iterations": int(model.optimizer.iterations),
            "sub_model_max_abs_diff": sub_model_diff, "costs": model.exit_costs(),
            **exported}


#: The exits byot-export writes files for: the first (its own head) and the deepest (the
#: whole trunk) hold every kind of layer the others do.
EXPORTED_EXITS = (1, 4)


def _export(model, out: Path) -> dict:
    """TFLite export on torch: `export_tflite` in this process is refused (Keras cannot
    trace a torch model into a TensorFlow graph); `byot-export` started on torch restarts
    itself on TensorFlow and exports the saved file (DIR/export)."""
    import subprocess

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


def _data(seed: int, features: int = 12):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH * STEPS, features)).astype(keras.config.floatx())
    # Class pairs (examples 2i and 2i + 1 share a label), as CS-KD trains on.
    y = np.repeat(rng.integers(0, 5, size=(BATCH * STEPS // 2,)), 2).astype("int32")
    return x, y


def _epoch_counter(model) -> list[float]:
    return [float(model.schedule_epoch), float(model.schedule_total_epochs)]


def methods(out: Path) -> dict:
    x, y = _data(5)
    results = {}
    for name, build in METHODS.items():
        model = build()
        schedule = keras.optimizers.schedules.CosineDecay(0.05, decay_steps=2 * STEPS)
        model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9))
        history = model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        logged = {k: float(v[-1]) for k, v in history.history.items()}
        evaluated = model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
        logits = model.predict(x, batch_size=BATCH, verbose=0)
        # The accuracies evaluate logged, recomputed from predict's logits with NumPy.
        recomputed = {f"{k}_accuracy": float(np.mean(np.argmax(v, -1) == y))
                      for k, v in logits.items()}
        if "exit_1" in logits:
            ensemble = np.mean([logits[k] for k in logits if k.startswith("exit_")], axis=0)
            recomputed["ensemble_accuracy"] = float(np.mean(np.argmax(ensemble, -1) == y))
        path = out / f"{name}.keras"
        model.save(path)
        np.savez(out / f"{name}.npz", images=x, **logits)  # for the TensorFlow side
        loaded = saving.load_model(path)
        reloaded = loaded.predict(x, batch_size=BATCH, verbose=0)
        before = [np.array(w) for w in loaded.get_weights()]
        scheduled = getattr(model, "_scheduled", False)  # loss weights that read the epoch
        counters = [_epoch_counter(model), _epoch_counter(loaded)] if scheduled else None
        resumed = loaded.fit(x, y, batch_size=BATCH, epochs=2, initial_epoch=1,
                             shuffle=False, verbose=0)
        results[name] = {
            "logged": sorted(logged),
            "finite": all(math.isfinite(v) for v in [*logged.values(), *evaluated.values()]),
            "evaluated": evaluated,
            "recomputed": {k: v for k, v in recomputed.items() if k in evaluated},
            "reload_max_abs_diff": max(float(np.abs(np.asarray(logits[k]) - reloaded[k]).max())
                                       for k in logits),
            # Saved, and the loaded model's after its resumed epoch (as many steps again).
            "optimizer_iterations": [int(model.optimizer.iterations),
                                     int(loaded.optimizer.iterations)],
            "learning_rate": [float(model.optimizer.learning_rate),
                              float(loaded.optimizer.learning_rate)],
            "resumed_moved": max(float(np.abs(a - b).max())
                                 for a, b in zip(before, loaded.get_weights())),
            "resumed_finite": all(math.isfinite(v[-1]) for v in resumed.history.values()),
        }
        if scheduled:
            results[name]["schedule"] = [*counters, _epoch_counter(loaded)]
    return results


class _Interrupted(Exception):
    pass


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    """An interrupted run: stops after epoch 1's checkpoint (an earlier callback)."""

    def on_epoch_end(self, epoch, logs=None):
        raise _Interrupted(epoch)


def train_digits(out: Path) -> dict:
    """byot-train on the embedded digits: `train()` in this process, interrupted after
    epoch 1 of 2; then `byot-train --backend torch` with the same settings resumes it."""
    import subprocess

    from byot_keras.train import make_config, train

    run_dir = out / "run"
    settings = dict(model="resnet18_byot", width_multiplier=0.125,
                    method_options={"head": "bottleneck", "exits": [2]}, batch_size=32,
                    train_examples=64, test_examples=32, augment=["flip"], verbose="0",
                    epochs=2, output_dir=str(run_dir), weight_decay=5e-4)
    try:
        train(make_config("digits_quick", **settings), callbacks=[_StopAfterFirstEpoch()])
        raise RuntimeError("the first run was not interrupted")
    except _Interrupted:
        pass
    interrupted_state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    command = [sys.executable, "-m", "byot_keras.train.cli", "--backend", "torch",
               "--preset", "digits_quick", "--model", "resnet18_byot",
               "--width_multiplier", "0.125", "--method_options", "head=bottleneck,exits=[2]",
               "--batch_size", "32", "--train_examples", "64", "--test_examples", "32",
               "--augment", "flip", "--verbose", "0", "--epochs", "2",
               "--weight_decay", "5e-4", "--output_dir", str(run_dir)]
    # Started on torch: a start on TensorFlow would restart it on torch, the restart that
    # byot-export's (torch -> TensorFlow) covers here at the cost of one more process.
    done = subprocess.run(command, env=dict(os.environ, KERAS_BACKEND="torch"),
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"byot-train failed ({done.returncode}): {done.stderr[-3000:]}")
    report = json.loads((run_dir / "report.json").read_text())
    refused = {}
    for strategy in ("mirrored", "data_parallel"):  # neither runs on torch
        try:
            train(make_config("digits_quick", strategy=strategy,
                              output_dir=str(out / strategy)))
            refused[strategy] = None
        except ValueError as error:
            refused[strategy] = str(error)
    return {"interrupted_after": interrupted_state.get("epoch"),
            "epochs": report["training"]["epochs_completed"],
            "backend": report["versions"]["keras_backend"],
            "torch_version": report["versions"].get("torch"),
            "resumed_after": report["training"]["resumed_after_epochs"],
            "replicas": report["training"]["replicas"],
            "history_epochs": len(report["training"]["history"]),
            "accuracy": report["accuracy"],
            "model_file": str(run_dir / "model.keras"),
            "refused": refused,
            "refused_folders": [s for s in refused if os.path.exists(out / s)]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, type=Path)
    for job in ("portability", "methods", "train"):
        parser.add_argument(f"--{job}", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"backend": keras.backend.backend(), "seconds": {}}
    jobs = {"portability": portability, "methods": methods, "train": train_digits}
    for job, run in jobs.items():
        if getattr(args, job):
            clock = time.perf_counter()
            results[job] = run(args.out)
            results["seconds"][job] = round(time.perf_counter() - clock, 1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
