"""One device vs. two CPU replicas, run as a script by tests/test_distribute.py.

It runs in a fresh process so that the CPU can be split into two logical devices before
TensorFlow initialises its devices. The last line of stdout is one JSON object.

    python tests/distribute_helper.py --resnet official [--resnet paper] [--toy-control]
        [--methods]

--resnet OBJECTIVE: `zoo.resnet18_byot(num_classes=10, width_multiplier=0.125,
    sync_batchnorm=True)` trained for 3 steps (SGD lr 0.1, momentum 0.9, batch 16,
    shuffle=False) on the default strategy (reference, run eagerly) and inside
    `MirroredStrategy(["/cpu:0", "/cpu:1"])` (built, compiled and fit in its scope, as
    users run it: a traced tf.function). Reports the largest weight difference.
--toy-control: the same comparison on a tiny dense multi-exit network ("official"
    objective), once as shipped and once with the feature term's cross-replica sum
    switched off (each replica then uses its own half-batch Frobenius norm): shows that
    the comparison notices a wrong reduction.
--methods: every other method (msd, eed, sdn, deep_supervision, ce, cskd, one; the cohort
    methods multistructure and dml; teacher->student KD) on tiny dense networks with the
    zoo's output contract: one device vs two replicas, 3 steps each.

Numerics: float64 (keras floatx). In float32 this comparison cannot be tight: with this
tiny ReLU network, merely permuting the examples inside a batch on one device changes
some float32 gradient tensors by ~1e-2 relative (likely units within rounding distance
of a ReLU kink flipping), and after three steps at lr 0.1 the permuted single-device run
differs by several percent. In float64 the same permutation changes the weights by
~1e-13, so a 1e-4 tolerance is safe and any real difference stands out.

Initial weights are drawn here with NumPy from a fixed seed and copied into every model
(the library's conv initialiser is seeded once at import, so keras.utils.set_random_seed
does not make its initial weights reproducible across processes).

Only one MirroredStrategy is created per process: strategies created one after another
in one process reuse TensorFlow's collective group/instance keys, and later runs then
fail with "Shape mismatch in the collective instance N".
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

keras.config.set_floatx("float64")

from byot_keras import zoo  # noqa: E402
from byot_keras.training import (  # noqa: E402
    CohortModel,
    SelfDistillationModel,
    TeacherDistillationModel,
    self_distillation,
)

BATCH = 16
STEPS = 3
LEARNING_RATE = 0.1
MOMENTUM = 0.9


def initial_weights(model, seed: int = 0) -> list[np.ndarray]:
    """He-normal (fan-in) kernels, zero biases/betas/means, unit gammas/variances."""
    rng = np.random.default_rng(seed)
    values = []
    for variable in model.weights:
        name = variable.path.rsplit("/", 1)[-1]
        shape = tuple(variable.shape)
        if name in ("gamma", "moving_variance", "schedule_total_epochs"):
            value = np.ones(shape)
        elif not shape:  # other scalars: the schedule's epoch counter
            value = np.zeros(shape)
        elif name in ("beta", "moving_mean", "bias"):
            value = np.zeros(shape)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else shape[0]
            if "depthwise" in name:
                fan_in = int(np.prod(shape[:2]))
            value = rng.normal(size=shape) * np.sqrt(2.0 / fan_in)
        values.append(value.astype(variable.dtype))
    return values


def train(build, initial, x, y, strategy=None, run_eagerly=False):
    """Builds and compiles in `strategy`'s scope, fits one epoch; weights and last logs."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = build()
        model.set_weights(initial)
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=LEARNING_RATE, momentum=MOMENTUM),
            run_eagerly=run_eagerly,
        )
    history = model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    weights = [np.asarray(w, dtype="float64") for w in model.get_weights()]
    logs = {k: float(v[-1]) for k, v in history.history.items() if k.endswith("loss")}
    return weights, logs, [v.path for v in model.weights]


def compare(reference, other, names) -> dict:
    """Largest difference per tensor, relative to that tensor's largest magnitude."""
    worst_rel, worst_name, max_abs = 0.0, "", 0.0
    for name, a, b in zip(names, reference, other, strict=True):
        diff = float(np.max(np.abs(a - b)))
        rel = diff / max(float(np.max(np.abs(a))), 1e-6)
        max_abs = max(max_abs, diff)
        if rel > worst_rel:
            worst_rel, worst_name = rel, name
    return {"max_rel_diff": worst_rel, "worst_tensor": worst_name, "max_abs_diff": max_abs}


def movement(initial, final, names) -> dict:
    start = [np.asarray(w, dtype="float64") for w in initial]
    return {
        "max_abs_change": max(float(np.max(np.abs(a - b))) for a, b in zip(start, final)),
        "unchanged": [n for n, a, b in zip(names, start, final) if np.array_equal(a, b)],
        "num_weights": len(final),
    }


def resnet_job(objective: str, strategy) -> dict:
    def build():
        return zoo.resnet18_byot(num_classes=10, width_multiplier=0.125,
                                 sync_batchnorm=True, objective=objective)

    rng = np.random.default_rng(1234)
    x = rng.normal(size=(BATCH * STEPS, 32, 32, 3))
    y = rng.integers(0, 10, size=(BATCH * STEPS,)).astype("int32")
    initial = initial_weights(build())
    result = {"seconds": {}}
    clock = time.perf_counter()
    reference, result["reference_logs"], names = train(build, initial, x, y, run_eagerly=True)
    result["seconds"]["reference"] = round(time.perf_counter() - clock, 1)
    clock = time.perf_counter()
    mirrored, result["mirrored_logs"], _ = train(build, initial, x, y, strategy)
    result["seconds"]["mirrored"] = round(time.perf_counter() - clock, 1)
    result["mirrored"] = compare(reference, mirrored, names)
    result["moved"] = movement(initial, reference, names)
    return result


def toy_network(objective: str = "official", method: str | None = None):
    """Four exits on a dense trunk, 6-d features, the zoo's output contract."""
    inputs = keras.Input((12,), name="x")
    outputs = {}
    trunk = inputs
    for k in range(1, 5):
        trunk = keras.layers.Dense(8, activation="tanh", name=f"trunk_{k}")(trunk)
        feature = keras.layers.Dense(6, activation="relu", name=f"feature_{k}")(trunk)
        outputs[f"feature_{k}"] = feature
        outputs[f"exit_{k}"] = keras.layers.Dense(5, name=f"exit_{k}")(feature)
    if method is not None:
        return SelfDistillationModel(keras.Model(inputs, outputs), method=method)
    return SelfDistillationModel(keras.Model(inputs, outputs), objective=objective)


def toy_single(prefix: str):
    """A one-output dense classifier: a cohort member or a teacher."""
    inputs = keras.Input((12,), name=f"{prefix}_x")
    hidden = keras.layers.Dense(10, activation="tanh", name=f"{prefix}_hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(5, name=f"{prefix}_logits")(hidden),
                       name=prefix)


METHOD_BUILDERS = {
    **{m: (lambda m=m: toy_network(method=m))
       for m in ("msd", "eed", "sdn", "deep_supervision", "ce", "cskd", "one")},
    "multistructure": lambda: CohortModel([toy_single("a"), toy_single("b")],
                                          method="multistructure"),
    "dml": lambda: CohortModel([toy_single("a"), toy_single("b")], method="dml"),
    "hinton_kd": lambda: TeacherDistillationModel(toy_single("teacher"),
                                                  toy_network(method="byot"), alpha=0.5),
}


def methods_job(strategy) -> dict:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(BATCH * STEPS, 12))
    # Class pairs (examples 2i and 2i + 1 share a label), as CS-KD trains on; each replica
    # gets whole pairs because its slice of a batch has an even size.
    y = np.repeat(rng.integers(0, 5, size=(BATCH * STEPS // 2,)), 2).astype("int32")
    results = {}
    for method, build in METHOD_BUILDERS.items():
        initial = initial_weights(build())
        reference, logs, names = train(build, initial, x, y)
        mirrored, mirrored_logs, _ = train(build, initial, x, y, strategy)
        results[method] = {"mirrored": compare(reference, mirrored, names),
                           "moved": movement(initial, reference, names),
                           "reference_logs": logs, "mirrored_logs": mirrored_logs}
    return results


def toy_control_job(strategy) -> dict:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(BATCH * STEPS, 12))
    y = rng.integers(0, 5, size=(BATCH * STEPS,)).astype("int32")
    initial = initial_weights(toy_network())
    reference, _, names = train(toy_network, initial, x, y)
    mirrored, _, _ = train(toy_network, initial, x, y, strategy)
    result = {"mirrored": compare(reference, mirrored, names),
              "moved": movement(initial, reference, names)}
    original = self_distillation.cross_replica_sum
    self_distillation.cross_replica_sum = lambda value: value
    try:
        uncoupled, _, _ = train(toy_network, initial, x, y, strategy)
    finally:
        self_distillation.cross_replica_sum = original
    result["without_cross_replica_sum"] = compare(reference, uncoupled, names)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resnet", action="append", default=[], metavar="OBJECTIVE")
    parser.add_argument("--toy-control", action="store_true")
    parser.add_argument("--methods", action="store_true")
    args = parser.parse_args()

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {"replicas": int(strategy.num_replicas_in_sync),
               "floatx": keras.config.floatx(), "resnet": {}}
    for objective in args.resnet:
        results["resnet"][objective] = resnet_job(objective, strategy)
    if args.toy_control:
        results["toy_control"] = toy_control_job(strategy)
    if args.methods:
        results["methods"] = methods_job(strategy)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
