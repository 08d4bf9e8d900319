"""What the JAX and torch helper scripts (tests/jax_helper.py, tests/torch_helper.py) run
alike, inside a process whose Keras backend is already chosen.

Import it after setting KERAS_BACKEND. The test side (tests/backend_subprocess.py) holds
the settings both sides read (batch, steps, learning rate) and checks the reports.

- `train_resnet(out)`: a BYOT ResNet-18 at 1/8 width trained 2 SGD steps on 8 random
  images, saved as OUT/resnet.keras with the images and its logits (OUT/resnet.npz).
- `methods(out)`: every method, both cohort methods and teacher -> student KD on tiny
  dense networks with the zoo's output contract (tests/distribute_helper.py): fit with a
  cosine LR schedule, evaluate, predict, save / load .keras, resume; each file is left
  with its inputs and logits (OUT/<method>.npz) for the TensorFlow side.
- `interrupted_then_resumed(...)`: byot-train on the embedded digits, interrupted after
  epoch 1 of 2, then resumed by the `byot-train --backend` command.
- `refused_strategies(...)`: strategies `train()` must refuse before writing anything.
- `main(jobs)`: the scripts' command line (`--out DIR --JOB ...`) and JSON report.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from backend_subprocess import BATCH, DECAY_STEPS, LEARNING_RATE, STEPS  # noqa: E402
from distribute_helper import METHOD_BUILDERS, toy_network  # noqa: E402  (the toy networks)

from byot_keras import saving, zoo  # noqa: E402

keras.config.set_floatx("float32")  # distribute_helper sets float64 on import

METHODS = {"byot": lambda: toy_network(method="byot"), **METHOD_BUILDERS}


def train_resnet(out: Path):
    """`(model, images, logits, report)` of the ResNet trained here (also saved in OUT)."""
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
    report = {"moved": max(float(np.abs(a - b).max()) for a, b in zip(before, after)),
              "jit_compile": bool(model.jit_compile), "exits": model.exit_names,
              "optimizer_module": type(model.optimizer).__module__,
              "iterations": int(model.optimizer.iterations)}
    return model, x, logits, report


def toy_data(seed: int, features: int = 12):
    """STEPS batches of random features with labels in class pairs (examples 2i and 2i + 1
    share a label), as CS-KD trains on."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH * STEPS, features)).astype(keras.config.floatx())
    y = np.repeat(rng.integers(0, 5, size=(BATCH * STEPS // 2,)), 2).astype("int32")
    return x, y


def _epoch_counter(model) -> list[float]:
    return [float(model.schedule_epoch), float(model.schedule_total_epochs)]


def methods(out: Path) -> dict:
    x, y = toy_data(5)
    results = {}
    for name, build in METHODS.items():
        model = build()
        schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE,
                                                          decay_steps=DECAY_STEPS)
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


def stop_after_first_epoch():
    """A Keras callback that interrupts `fit` after epoch 1 (after the callbacks before it,
    such as the checkpoint, have run), and the exception it raises."""

    class Interrupted(Exception):
        pass

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise Interrupted(epoch)

    return StopAfterFirstEpoch(), Interrupted


#: The interrupted run's settings, as `train()` takes them (byot-train gets them as flags).
DIGITS_RUN = dict(model="resnet18_byot", width_multiplier=0.125,
                  method_options={"head": "bottleneck", "exits": [2]}, batch_size=32,
                  train_examples=64, test_examples=32, augment=["flip"], verbose="0",
                  epochs=2, weight_decay=5e-4)  # the recipes' coupled decay


def interrupted_then_resumed(run_dir: Path, backend: str, start_on: str,
                             strategy: str | None = None) -> dict:
    """byot-train on the embedded digits: `train()` in this process, interrupted after
    epoch 1 of 2; then `byot-train --backend BACKEND` with the same settings, started with
    KERAS_BACKEND=START_ON (another backend restarts itself), resumes it."""
    from byot_keras.train import make_config, train
    from byot_keras.train.cli import flags_for

    settings = dict(DIGITS_RUN, output_dir=str(run_dir), **({"strategy": strategy}
                                                            if strategy else {}))
    callback, interrupted = stop_after_first_epoch()
    try:
        train(make_config("digits_quick", **settings), callbacks=[callback])
        raise RuntimeError("the first run was not interrupted")
    except interrupted:
        pass
    interrupted_state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    command = [sys.executable, "-m", "byot_keras.train.cli", "--backend", backend,
               "--preset", "digits_quick", *flags_for(settings)]
    done = subprocess.run(command, env=dict(os.environ, KERAS_BACKEND=start_on),
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"byot-train failed ({done.returncode}): {done.stderr[-3000:]}")
    report = json.loads((run_dir / "report.json").read_text())
    return {"interrupted_after": interrupted_state.get("epoch"),
            "epochs": report["training"]["epochs_completed"],
            "backend": report["versions"]["keras_backend"],
            "versions": report["versions"],
            "resumed_after": report["training"]["resumed_after_epochs"],
            "replicas": report["training"]["replicas"],
            "history_epochs": len(report["training"]["history"]),
            "accuracy": report["accuracy"],
            "model_file": str(run_dir / "model.keras")}


def refused_strategies(out: Path, strategies) -> dict:
    """`train()` with each strategy, expected to refuse before any work: the messages
    (None where it ran) and the output folders that were created anyway."""
    from byot_keras.train import make_config, train

    refused = {}
    for strategy in strategies:
        try:
            train(make_config("digits_quick", strategy=strategy,
                              output_dir=str(out / strategy)))
            refused[strategy] = None
        except ValueError as error:
            refused[strategy] = str(error)
    return {"refused": refused,
            "refused_folders": [s for s in refused if os.path.exists(out / s)]}


def main(jobs: dict) -> None:
    """`python HELPER --out DIR [--JOB ...]`: runs the chosen jobs (`{name: run(out)}`)
    and prints one JSON line: the backend, each job's report and its seconds."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, type=Path)
    for job in jobs:
        parser.add_argument(f"--{job}", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"backend": keras.backend.backend(), "seconds": {}}
    for job, run in jobs.items():
        if getattr(args, job):
            clock = time.perf_counter()
            results[job] = run(args.out)
            results["seconds"][job] = round(time.perf_counter() - clock, 1)
    print(json.dumps(results))
