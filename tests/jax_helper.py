"""The JAX side of tests/test_jax_backend.py, run as a script with KERAS_BACKEND=jax.

The Keras backend is fixed per process, so the tests run this in the JAX virtual
environment's Python (BYOT_JAX_PYTHON) and check what it reports. The last line of
stdout is one JSON object; `--out DIR` receives the files it writes.

    python tests/jax_helper.py --out DIR [--portability] [--methods] [--data_parallel]
        [--train]

--portability: a BYOT ResNet-18 at 1/8 width trained 2 SGD steps, saved as
    DIR/resnet.keras with the images it is compared on and its logits (DIR/resnet.npz),
    for the TensorFlow side to load and export.
--methods: every method (byot, msd, eed, sdn, deep_supervision, ce, cskd, one), both
    cohort methods and teacher -> student KD on tiny dense networks with the zoo's output
    contract: fit (a cosine LR schedule) and evaluate with every logged term finite,
    save / load .keras with the same logits, and resume (fit the loaded model further).
--data_parallel: byot, cskd, dml and hinton_kd trained 3 steps on one device and under
    `keras.distribution.DataParallel` over 2 virtual CPU devices (XLA_FLAGS=
    --xla_force_host_platform_device_count=2, set by the caller). In float32: unlike
    tf.distribute's replicas (tests/distribute_helper.py, float64), the JAX step stays
    one program over the global batch, so the two runs differ by rounding only.
--train: byot-train on the embedded digits (tf.data feeding JAX) under `--strategy
    data_parallel`: interrupted after epoch 1 of 2, then resumed by `byot-train
    --backend jax` started on TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from distribute_helper import (  # noqa: E402  (the toy networks, weights and comparison)
    METHOD_BUILDERS,
    compare,
    initial_weights,
    movement,
    toy_network,
)

from byot_keras import saving, zoo  # noqa: E402

keras.config.set_floatx("float32")  # distribute_helper sets float64 on import

BATCH = 16
STEPS = 3
METHODS = {"byot": lambda: toy_network(method="byot"), **METHOD_BUILDERS}
# Under DataParallel every method is the same kind of program (one step over the global
# batch); these cover a feature norm over the batch (byot), class pairs (cskd), a cohort
# and Keras' Distiller.
DATA_PARALLEL_METHODS = ("byot", "cskd", "dml", "hinton_kd")


def portability(out: Path) -> dict:
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1, size=(8, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(8,)).astype("int32")
    model = zoo.resnet18_byot(num_classes=10, width_multiplier=0.125)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    before = [np.array(w) for w in model.get_weights()]
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    after = model.get_weights()
    logits = model.predict(x, verbose=0)
    model.save(out / "resnet.keras")
    np.savez(out / "resnet.npz", images=x, **logits)
    return {"moved": max(float(np.abs(a - b).max()) for a, b in zip(before, after)),
            "jit_compile": bool(model.jit_compile), "exits": model.exit_names}


def _data(seed: int, features: int = 12):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH * STEPS, features)).astype(keras.config.floatx())
    # Class pairs (examples 2i and 2i + 1 share a label), as CS-KD trains on.
    y = np.repeat(rng.integers(0, 5, size=(BATCH * STEPS // 2,)), 2).astype("int32")
    return x, y


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
        path = out / f"{name}.keras"
        model.save(path)
        loaded = saving.load_model(path)
        reloaded = loaded.predict(x, batch_size=BATCH, verbose=0)
        before = [np.array(w) for w in loaded.get_weights()]
        resumed = loaded.fit(x, y, batch_size=BATCH, epochs=2, initial_epoch=1,
                             shuffle=False, verbose=0)
        results[name] = {
            "logged": sorted(logged),
            "finite": all(math.isfinite(v) for v in [*logged.values(), *evaluated.values()]),
            "evaluated": sorted(evaluated),
            "reload_max_abs_diff": max(float(np.abs(np.asarray(logits[k]) - reloaded[k]).max())
                                       for k in logits),
            # Saved, and the loaded model's after its resumed epoch (as many steps again).
            "optimizer_iterations": [int(model.optimizer.iterations),
                                     int(loaded.optimizer.iterations)],
            "resumed_moved": max(float(np.abs(a - b).max())
                                 for a, b in zip(before, loaded.get_weights())),
            "resumed_finite": all(math.isfinite(v[-1]) for v in resumed.history.values()),
        }
    return results


def _fit_weights(build, initial, x, y):
    model = build()
    model.set_weights(initial)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9))
    history = model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    logs = {k: float(v[-1]) for k, v in history.history.items() if k.endswith("loss")}
    # The devices holding the weights: 2 (replicated) under DataParallel.
    logs["devices"] = len(model.trainable_variables[0].value.devices())
    return [np.asarray(w, dtype="float64") for w in model.get_weights()], logs, [
        v.path for v in model.weights]


def data_parallel(out: Path) -> dict:
    devices = keras.distribution.list_devices("cpu")
    x, y = _data(9)
    results = {"devices": len(devices)}
    chosen = {name: METHODS[name] for name in DATA_PARALLEL_METHODS}
    initial = {name: initial_weights(build()) for name, build in chosen.items()}
    reference = {name: _fit_weights(build, initial[name], x, y)
                 for name, build in chosen.items()}
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    try:
        for name, build in chosen.items():
            weights, logs, names = _fit_weights(build, initial[name], x, y)
            ref_weights, ref_logs, _ = reference[name]
            results[name] = {"data_parallel": compare(ref_weights, weights, names),
                             "moved": movement(initial[name], ref_weights, names),
                             "reference_logs": ref_logs, "data_parallel_logs": logs}
    finally:
        keras.distribution.set_distribution(None)
    return results


class _Interrupted(Exception):
    pass


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    """An interrupted run: stops after epoch 1's checkpoint (an earlier callback)."""

    def on_epoch_end(self, epoch, logs=None):
        raise _Interrupted(epoch)


def train_digits(out: Path) -> dict:
    """byot-train on the embedded digits with `--strategy data_parallel` (2 virtual
    devices): `train()` in this process, interrupted after epoch 1 of 2; then
    `byot-train --backend jax` with the same settings, started on TensorFlow (the command
    starts itself again on JAX), resumes it."""
    import subprocess

    from byot_keras.train import make_config, train

    run_dir = out / "run"
    settings = dict(model="resnet18_byot", width_multiplier=0.125,
                    method_options={"head": "bottleneck", "exits": [2]}, batch_size=32,
                    train_examples=64, test_examples=32, augment=["flip"], verbose="0",
                    epochs=2, strategy="data_parallel", output_dir=str(run_dir),
                    weight_decay=5e-4)  # the recipes' coupled decay: regularizers under jit
    try:
        train(make_config("digits_quick", **settings), callbacks=[_StopAfterFirstEpoch()])
        raise RuntimeError("the first run was not interrupted")
    except _Interrupted:
        pass
    interrupted_state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    command = [sys.executable, "-m", "byot_keras.train.cli", "--backend", "jax",
               "--preset", "digits_quick", "--model", "resnet18_byot",
               "--width_multiplier", "0.125", "--method_options", "head=bottleneck,exits=[2]",
               "--batch_size", "32", "--train_examples", "64", "--test_examples", "32",
               "--augment", "flip", "--verbose", "0", "--epochs", "2",
               "--weight_decay", "5e-4",
               "--strategy", "data_parallel", "--output_dir", str(run_dir)]
    done = subprocess.run(command, env=dict(os.environ, KERAS_BACKEND="tensorflow"),
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"byot-train failed ({done.returncode}): {done.stderr[-3000:]}")
    report = json.loads((run_dir / "report.json").read_text())
    try:  # a tf.distribute strategy on JAX: refused before any work
        train(make_config("digits_quick", strategy="mirrored", output_dir=str(out / "no")))
        refused = None
    except ValueError as error:
        refused = str(error)
    return {"interrupted_after": interrupted_state.get("epoch"),
            "epochs": report["training"]["epochs_completed"],
            "backend": report["versions"]["keras_backend"],
            "resumed_after": report["training"]["resumed_after_epochs"],
            "replicas": report["training"]["replicas"],
            "history_epochs": len(report["training"]["history"]),
            "accuracy": report["accuracy"],
            "model_file": os.path.isfile(run_dir / "model.keras"),
            "mirrored_refused": refused, "mirrored_folder": os.path.exists(out / "no")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, type=Path)
    for job in ("portability", "methods", "data_parallel", "train"):
        parser.add_argument(f"--{job}", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"backend": keras.backend.backend(), "seconds": {}}
    jobs = {"portability": portability, "methods": methods, "train": train_digits,
            "data_parallel": data_parallel}
    for job, run in jobs.items():
        if getattr(args, job):
            clock = time.perf_counter()
            results[job] = run(args.out)
            results["seconds"][job] = round(time.perf_counter() - clock, 1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
