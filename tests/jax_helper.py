"""The JAX side of tests/test_jax_backend.py, run as a script with KERAS_BACKEND=jax.

The Keras backend is fixed per process, so the tests run this in the JAX virtual
environment's Python (BYOT_JAX_PYTHON) and check what it reports. The last line of
stdout is one JSON object; `--out DIR` receives the files it writes.

    python tests/jax_helper.py --out DIR [--portability] [--methods] [--data_parallel]
        [--train]

--portability: tests/backend_helper.py's ResNet (DIR/resnet.keras, DIR/resnet.npz), for
    the TensorFlow side to load and export.
--methods: backend_helper.methods (every method, cohort and KD model: fit, evaluate,
    save / load, resume; DIR/<method>.keras and .npz).
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

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from backend_helper import (  # noqa: E402  (what the torch helper runs alike)
    METHODS,
    interrupted_then_resumed,
    main,
    methods,
    refused_strategies,
    toy_data,
    train_resnet,
)
from backend_subprocess import BATCH  # noqa: E402
from distribute_helper import compare, initial_weights, movement  # noqa: E402

# Under DataParallel every method is the same kind of program (one step over the global
# batch); these cover a feature norm over the batch (byot), class pairs (cskd), a cohort
# and Keras' Distiller.
DATA_PARALLEL_METHODS = ("byot", "cskd", "dml", "hinton_kd")


def portability(out: Path) -> dict:
    return train_resnet(out)[3]


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
    x, y = toy_data(9)
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


def train_digits(out: Path) -> dict:
    """byot-train on the embedded digits with `--strategy data_parallel` (2 virtual
    devices), interrupted and resumed by `byot-train --backend jax` started on TensorFlow
    (the command starts itself again on JAX); a tf.distribute strategy is refused."""
    return {**interrupted_then_resumed(out / "run", backend="jax", start_on="tensorflow",
                                       strategy="data_parallel"),
            **refused_strategies(out, ("mirrored",))}


if __name__ == "__main__":
    main({"portability": portability, "methods": methods, "train": train_digits,
          "data_parallel": data_parallel})
