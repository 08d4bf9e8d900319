"""Accuracy at a small fixed budget: every method trains the same narrow network for the
same epochs on the same CIFAR-10 images, with the project's own trainer
(`byot_keras.train.train`: the tf.data pipeline with pad-crop and flip, SGD with
momentum, weight decay, cosine learning rate), for several seeds. Per exit and for the
ensemble (the mean of the exits' logits): the mean and spread over seeds on the test
images, and the early-exit trade-off of the first seed."""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence


@dataclasses.dataclass
class AccuracyPlan:
    """The fixed budget every method gets."""

    models: Sequence[tuple[str, float]]  # (zoo name, width_multiplier)
    methods: Sequence[str]
    seeds: Sequence[int]
    epochs: int
    train_examples: int | None
    test_examples: int | None
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4


def train_one(plan: AccuracyPlan, model: str, width: float, method: str, seed: int,
              data_dir: str, output_dir: str) -> dict:
    """One run with `byot_keras.train`; returns its report's figures."""
    from byot_keras.train.config import TrainConfig
    from byot_keras.train.trainer import train

    config = TrainConfig(
        model=model, method=method, width_multiplier=width, dataset="cifar10",
        data_dir=data_dir, train_examples=plan.train_examples,
        test_examples=plan.test_examples, epochs=plan.epochs, batch_size=plan.batch_size,
        lr=plan.lr, lr_schedule="cosine", weight_decay=plan.weight_decay, seed=seed,
        eval_batch_size=500, validation_freq=plan.epochs + 1,  # evaluate once, at the end
        output_dir=output_dir, overwrite=True, verbose="0")
    started = time.perf_counter()
    report = train(config)
    return {
        "accuracy": report["accuracy"],
        "exits_mflops": [round(e["flops"] / 1e6, 2) for e in report["exits"]],
        "early_exit": report.get("early_exit"),
        "train_seconds": report["training"]["train_seconds"],
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def run_accuracy(plan: AccuracyPlan, data_dir: str,
                 log: Callable[[str], None] = print) -> dict:
    """Every (model, method, seed) of `plan`; returns per model and method the runs and
    their mean / spread."""
    import keras

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="byot-accuracy-") as scratch:
        for model, width in plan.models:
            key = f"{model} x{width:g}"
            for method in plan.methods:
                runs = []
                for seed in plan.seeds:
                    keras.backend.clear_session()
                    run = train_one(plan, model, width, method, seed, data_dir,
                                    os.path.join(scratch, f"{model}-{method}-{seed}"))
                    runs.append({"seed": seed, **run})
                    log(f"accuracy {key} {method} seed {seed}: "
                        f"{ {k: round(v, 4) for k, v in run['accuracy'].items()} } "
                        f"({run['wall_seconds']} s)")
                results.setdefault(key, {})[method] = {"runs": runs,
                                                       **aggregate(runs)}
    return results


def aggregate(runs: Sequence[dict]) -> dict:
    """Mean, standard deviation (0 for one run) and range of each accuracy over runs."""
    names = list(runs[0]["accuracy"])
    summary = {}
    for name in names:
        values = [r["accuracy"][name] for r in runs]
        summary[name] = {
            "mean": float(statistics.fmean(values)),
            "std": float(statistics.stdev(values)) if len(values) > 1 else 0.0,
            "min": float(min(values)), "max": float(max(values)),
        }
    return {"summary": summary}
