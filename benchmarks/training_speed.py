"""Training throughput, measured side by side: several models (methods, variants) of one
architecture take turns in the same process.

Each model is compiled as users compile it (SGD with momentum, Keras' defaults: no XLA
on CPU, `steps_per_execution=1`) and warmed up with one `fit` step (tracing). Then
`windows` rounds each time every model for `steps_per_window` steps, calling the compiled
train function that `fit` calls on a persistent iterator (so nothing but the steps is
timed); the order reverses every round (A B C, C B A, ...) so that a change in machine
load falls on every model alike. Per model: the median step time (wall clock) and the
median process CPU time per step; each model's ratio to the reference is the median of
the per-round ratios (each pairs windows timed seconds apart).

"In memory" data is one fixed batch repeated (`tf.data.Dataset.from_tensors(...).repeat()`),
so the input costs nothing; a model may also be timed on a real input pipeline (the
starvation ratio), sharing the compiled function.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np

from benchmarks import profiling


@dataclasses.dataclass
class Trainee:
    """One timed configuration: a compiled model and the iterator it reads."""

    label: str
    model: object
    iterator: object
    batch_size: int
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def steps_per_call(self) -> int:
        return int(getattr(self.model, "steps_per_execution", 1) or 1)


def in_memory_batches(batch_size: int, image_shape=(32, 32, 3), num_classes: int = 10,
                      seed: int = 0):
    """One random normalised batch, repeated forever (the input pipeline costs nothing)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    images = rng.normal(size=(batch_size, *image_shape)).astype("float32")
    labels = rng.integers(0, num_classes, size=(batch_size,)).astype("int32")
    return tf.data.Dataset.from_tensors((images, labels)).repeat()


def build_model(name: str, method: str, *, num_classes: int = 10, width_multiplier: float = 1.0,
                jit_compile: bool = False, steps_per_execution: int = 1,
                keras_batchnorm: bool = False, learning_rate: float = 0.01):
    """A zoo model compiled for training (SGD, momentum 0.9) as the benchmark times it."""
    import keras

    from byot_keras import zoo

    model = zoo.create_model(name, method=method, num_classes=num_classes,
                             width_multiplier=width_multiplier)
    if keras_batchnorm:  # Keras' composite batch norm instead of the zoo's fused one
        from benchmarks.keras_batchnorm import with_keras_batchnorm

        model = with_keras_batchnorm(model)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9),
                  jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    return model


def training_macs(model) -> int:
    """Multiply-accumulates per image of everything a training step runs forward: the
    network (backbone and every exit's head) plus the loss's adaptation layers."""
    from byot_keras.costs import count_macs

    macs = count_macs(model.network)
    for adapter in getattr(model, "adapters", []):
        macs += int(np.prod(adapter.kernel.shape))
    return int(macs)


def variable_bytes(model) -> int:
    """Bytes of the model's and its optimizer's variables (weights, BN statistics,
    momentum)."""
    total = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.variables)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        total += sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                     for v in optimizer.variables)
    return int(total)


def warm_up(trainee: Trainee, dataset) -> float:
    """One `fit` step on `dataset` (builds the optimizer, traces the train function), then
    one call on the trainee's own iterator; returns the seconds spent."""
    start = time.perf_counter()
    if getattr(trainee.model, "train_function", None) is None:
        trainee.model.fit(dataset, steps_per_epoch=trainee.steps_per_call, epochs=1, verbose=0,
                          shuffle=False)
    run_calls(trainee, 1)
    return time.perf_counter() - start


def run_calls(trainee: Trainee, calls: int) -> None:
    """`calls` calls of the compiled train function, waiting for the last result."""
    logs = None
    for _ in range(calls):
        logs = trainee.model.train_function(trainee.iterator)
    float(np.asarray(logs["loss"]))


def time_windows(trainees: Sequence[Trainee], *, windows: int, steps_per_window: int,
                 on_window: Callable[[str], None] | None = None) -> dict:
    """Interleaved timed windows; returns per label the per-step wall and CPU seconds of
    every window (in round order) and the load average seen."""
    samples = {t.label: {"wall_s": [], "cpu_s": []} for t in trainees}
    loads = [os.getloadavg()[0]]
    for window in range(windows):
        order = list(trainees) if window % 2 == 0 else list(reversed(trainees))
        for trainee in order:
            calls = max(1, steps_per_window // trainee.steps_per_call)
            steps = calls * trainee.steps_per_call
            wall, cpu = time.perf_counter(), time.process_time()
            run_calls(trainee, calls)
            samples[trainee.label]["wall_s"].append((time.perf_counter() - wall) / steps)
            samples[trainee.label]["cpu_s"].append((time.process_time() - cpu) / steps)
            if on_window:
                on_window(f"window {window + 1}/{windows} {trainee.label}: "
                          f"{samples[trainee.label]['wall_s'][-1]:.3f} s/step")
        loads.append(os.getloadavg()[0])
    return {"samples": samples, "load_average_1min": [round(x, 2) for x in loads]}


def paired_ratio(values: Sequence[float], reference: Sequence[float]) -> float:
    """Median over rounds of value / reference (windows of one round are adjacent)."""
    return float(statistics.median(v / r for v, r in zip(values, reference)))


def summarize(trainees: Sequence[Trainee], timing: dict, reference: str) -> dict:
    """Per label: medians, spread, images/s and the paired ratios to `reference`."""
    samples = timing["samples"]
    result = {}
    for trainee in trainees:
        wall, cpu = samples[trainee.label]["wall_s"], samples[trainee.label]["cpu_s"]
        entry = {
            **trainee.info,
            "batch_size": trainee.batch_size,
            "steps_per_execution": trainee.steps_per_call,
            "step_s": float(statistics.median(wall)),
            "step_s_min": float(min(wall)),
            "step_s_max": float(max(wall)),
            "cpu_s_per_step": float(statistics.median(cpu)),
            "images_per_s": float(trainee.batch_size / statistics.median(wall)),
            "windows_wall_s": [round(v, 4) for v in wall],
            "windows_cpu_s": [round(v, 4) for v in cpu],
        }
        if reference in samples:
            entry["wall_ratio"] = paired_ratio(wall, samples[reference]["wall_s"])
            entry["cpu_ratio"] = paired_ratio(cpu, samples[reference]["cpu_s"])
        result[trainee.label] = entry
    return result


def profile_trainee(trainee: Trainee, steps: int = 1) -> dict:
    """Op time by model part and the memory of `steps` profiled steps (one call each)."""
    network = trainee.model.network
    with tempfile.TemporaryDirectory(prefix="byot-profile-") as logdir:
        figures = profiling.profile_calls(
            lambda: run_calls(trainee, max(1, steps // trainee.steps_per_call)), logdir,
            network_name=network.name, num_exits=len(trainee.model.exit_names))
    calls_steps = max(1, steps // trainee.steps_per_call) * trainee.steps_per_call
    figures["op_ms"] = {k: round(v / calls_steps, 2) for k, v in figures["op_ms"].items()}
    figures["top_ops"] = [{**row, "ms": round(row["ms"] / calls_steps, 2)}
                          for row in figures["top_ops"]]
    for key in ("heads_by_op", "heads_by_layer"):
        figures[key] = {k: round(v / calls_steps, 2) for k, v in figures[key].items()}
    memory = figures["memory"]
    own = variable_bytes(trainee.model)
    memory["variable_bytes"] = own
    if memory["step_temporary_bytes"] is not None:
        memory["step_peak_bytes"] = own + memory["step_temporary_bytes"]
    return figures
