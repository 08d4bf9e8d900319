"""Inference latency per exit: the Keras model measured here, and the TFLite files'
figures read from `benchmarks/tflite_latency.py`'s results (not measured again)."""

from __future__ import annotations

import json
import os
import statistics
import time

import numpy as np

TFLITE_RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                              "tflite_latency.json")


def keras_exit_latency(model, *, repeats: int = 30, rounds: int = 5, warmup: int = 3,
                       batch_size: int = 1, seed: int = 0) -> dict:
    """Median latency (ms) of each exit's deployable sub-network (`model.exit_model(k)`)
    and of the whole multi-exit network, on `batch_size` images, called through a
    `tf.function` (TensorFlow's default threads); runs interleaved over `rounds`."""
    import tensorflow as tf

    shape = (batch_size, *model.network.inputs[0].shape[1:])
    images = tf.constant(np.random.default_rng(seed).normal(size=shape).astype("float32"))
    runners = []
    for name in model.exit_names:
        sub = model.exit_model(name)
        runners.append((name, tf.function(lambda x, m=sub: m(x, training=False))))
    network = model.network
    runners.append(("all exits", tf.function(lambda x: network(x, training=False))))
    for _, run in runners:
        for _ in range(warmup):
            tf.nest.map_structure(np.asarray, run(images))
    samples = {name: [] for name, _ in runners}
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):
        for name, run in runners:
            for _ in range(per_round):
                start = time.perf_counter()
                tf.nest.map_structure(np.asarray, run(images))
                samples[name].append((time.perf_counter() - start) * 1e3)
    return {
        "batch_size": batch_size,
        "runs_per_figure": per_round * rounds,
        "median_ms": {name: float(statistics.median(v)) for name, v in samples.items()},
    }


def tflite_summary(path: str = TFLITE_RESULTS) -> dict | None:
    """The per-exit and cascade latencies of the last `benchmarks.tflite_latency` run
    (None if it has not been run), with where and when they were measured."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        stored = json.load(f)
    latency = stored["latency"]
    return {
        "source": os.path.relpath(path, os.path.dirname(os.path.dirname(path))),
        "model": stored.get("model"),
        "title": latency.get("title", ""),
        "measured_at": latency.get("measured_at"),
        "host": latency.get("host", {}),
        "results": latency["results"],
        "targets_met": sum(bool(t["met"]) for t in latency.get("targets", [])),
        "targets": len(latency.get("targets", [])),
    }
