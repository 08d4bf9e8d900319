"""Does the input pipeline keep training fed? Steps/s of `fit` on the real data pipeline
against steps/s on one in-memory batch repeated.

    python -m benchmarks.pipeline_starvation --data_dir ../shared/data/tfds

The real pipeline is `byot_keras.data.pipeline.training_dataset` on CIFAR-10 with the
`byot_cifar` preset's augmentation (pad-and-crop, flip) at batch 128, cached in memory.
The reference feeds the same model one batch that sits in memory
(`Dataset.from_tensors(batch).repeat()`), so it measures the model alone. Both are timed
on the same compiled model after a warm-up epoch (tracing, and the pipeline's cache
filled), over several interleaved rounds so that a change in machine load hits both
alike; the figure is the median of the per-round ratios. Target: the real pipeline
within 5 % of the in-memory steps/s. Writes `benchmarks/results/pipeline_starvation.md`
and `.json`. A measurement, not a test: nothing fails when the target is missed.
"""

from __future__ import annotations

import datetime
import json
import os
import time

from benchmarks.host import host_facts

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGET = 0.05
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


class _EpochTimer:
    """Wall-clock and process CPU seconds of each epoch (all threads, so the input
    pipeline's work counts in the CPU time)."""

    def __init__(self):
        import keras

        timer = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                timer.start = (time.perf_counter(), time.process_time())

            def on_epoch_end(self, epoch, logs=None):
                timer.wall.append(time.perf_counter() - timer.start[0])
                timer.cpu.append(time.process_time() - timer.start[1])

        self.wall, self.cpu, self.start, self.callback = [], [], (0.0, 0.0), Callback()


def time_epochs(model, dataset, steps: int, epochs: int) -> list[tuple[float, float]]:
    """(steps/s, CPU seconds per step) of each of `epochs` epochs of `steps` steps, after
    a first, untimed one."""
    timer = _EpochTimer()
    model.fit(dataset, epochs=epochs + 1, steps_per_epoch=steps, verbose=0, shuffle=False,
              callbacks=[timer.callback])
    return [(steps / w, c / steps) for w, c in zip(timer.wall[1:], timer.cpu[1:])]


def time_pipeline_alone(dataset, steps: int) -> tuple[float, float]:
    """(batches/s, CPU seconds per batch) of iterating the second epoch of `dataset`."""
    iterator = iter(dataset)
    for _ in range(steps):  # the first epoch fills the cache
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        next(iterator)
    return steps / (time.perf_counter() - wall), (time.process_time() - cpu) / steps


def run(data_dir: str, model_name: str = "resnet18_byot", width_multiplier: float = 0.5,
        batch_size: int = 128, train_examples: int = 3840, rounds: int = 3,
        epochs_per_round: int = 1) -> dict:
    """Measures both feeds `rounds` times, interleaved; returns the figures."""
    import keras
    import numpy as np
    import tensorflow as tf

    from byot_keras.data import pipeline
    from byot_keras.train import make_config
    from byot_keras.train.trainer import add_weight_decay, build_model, make_optimizer

    config = make_config("byot_cifar", dataset="cifar10", data_dir=data_dir,
                         model=model_name, width_multiplier=width_multiplier,
                         batch_size=batch_size, train_examples=train_examples)
    keras.utils.set_random_seed(0)
    source = pipeline.load_source("cifar10", data_dir, train_examples=train_examples)
    steps = pipeline.steps_per_epoch(source.num_train, batch_size)
    model = build_model(config, source.num_classes, source.image_shape)
    add_weight_decay(model, config.weight_decay)
    model.compile(optimizer=make_optimizer(config, steps))
    def real_feed(first_epoch: int):
        # A new pipeline per round, as a resumed run builds it: its warm-up epoch fills
        # the cache, the timed epochs read from it.
        return pipeline.training_dataset(source, batch_size, seed=0, augment=config.augment,
                                         initial_epoch=first_epoch,
                                         epochs=first_epoch + epochs_per_round + 1)

    memory = tf.data.Dataset.from_tensors(next(iter(real_feed(0)))).repeat()
    figures = {"real": [], "memory": []}
    cpu = {"real": [], "memory": []}
    for round_index in range(rounds):
        first_epoch = round_index * (epochs_per_round + 1)
        for name, feed in (("real", real_feed(first_epoch)), ("memory", memory)):
            for speed, cpu_per_step in time_epochs(model, feed, steps, epochs_per_round):
                figures[name].append(speed)
                cpu[name].append(cpu_per_step)
    ratios = [r / m for r, m in zip(figures["real"], figures["memory"])]
    alone_speed, alone_cpu = time_pipeline_alone(
        pipeline.training_dataset(source, batch_size, seed=0, augment=config.augment,
                                  epochs=2), steps)
    return {
        "cpu_seconds_per_step": {k: round(float(np.median(v)), 4) for k, v in cpu.items()},
        "pipeline_alone": {"batches_per_second": round(alone_speed, 2),
                           "cpu_seconds_per_batch": round(alone_cpu, 4)},
        "model": model_name, "width_multiplier": width_multiplier, "batch_size": batch_size,
        "train_examples": source.num_train, "steps_per_epoch": steps,
        "augment": config.augment, "rounds": rounds,
        "steps_per_second": {k: [round(v, 3) for v in vs] for k, vs in figures.items()},
        "median_ratio": round(float(np.median(ratios)), 4),
        "slowdown": round(1 - float(np.median(ratios)), 4),
        "target_slowdown": TARGET,
        "met": bool(1 - float(np.median(ratios)) <= TARGET),
    }


def markdown(results: dict) -> str:
    lines = [
        "# Input pipeline vs. in-memory batch: steps/s of `fit`",
        "",
        f"- model: `{results['model']}` x{results['width_multiplier']}, batch "
        f"{results['batch_size']}, CIFAR-10 ({results['train_examples']} training images, "
        f"{results['steps_per_epoch']} steps per epoch), augmentation "
        f"{', '.join(results['augment'])}",
        f"- host: {results['host']['cpu']} ({results['host']['logical_cpus']} logical CPUs), "
        f"load average {results['load_before']} before, {results['load_after']} after; "
        f"measured {results['date']}",
        f"- method: {results['rounds']} interleaved rounds (one warm-up epoch, one timed "
        "epoch, each feed); the figure is the median of the per-round ratios",
        *([f"- note: {results['note']}"] if results.get("note") else []),
        "",
        "| round | real pipeline (steps/s) | in-memory batch (steps/s) | ratio |",
        "|---:|---:|---:|---:|",
    ]
    figures = results["steps_per_second"]
    for k, (r, m) in enumerate(zip(figures["real"], figures["memory"]), start=1):
        lines.append(f"| {k} | {r:.3f} | {m:.3f} | {r / m:.3f} |")
    verdict = "met" if results["met"] else "NOT met"
    cpu, alone = results["cpu_seconds_per_step"], results["pipeline_alone"]
    lines += [
        "", f"Median slowdown of the real pipeline: **{100 * results['slowdown']:.1f} %** "
        f"(target <= {100 * results['target_slowdown']:.0f} %: {verdict}).",
        "",
        "Cross-checks from CPU time (it counts every thread of the process; less sensitive "
        "to other jobs than wall time, not immune):",
        f"- CPU seconds per training step (median): real pipeline {cpu['real']:.3f}, "
        f"in-memory batch {cpu['memory']:.3f} "
        f"({100 * (cpu['real'] / cpu['memory'] - 1):+.1f} %);",
        f"- the pipeline alone (cached, augmenting): {alone['batches_per_second']:.1f} "
        f"batches/s, {1000 * alone['cpu_seconds_per_batch']:.1f} ms CPU per batch, "
        f"{100 * alone['cpu_seconds_per_batch'] / cpu['memory']:.1f} % of a training "
        "step's CPU time.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    import argparse

    from byot_keras.saving import write_text_atomically

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="tfds data_dir holding cifar10")
    parser.add_argument("--model", default="resnet18_byot")
    parser.add_argument("--width_multiplier", type=float, default=0.5)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--train_examples", type=int, default=3840)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--note", default="", help="a remark printed with the results")
    parser.add_argument("--output", default=os.path.join(RESULTS, "pipeline_starvation"),
                        help="path prefix of the .md and .json results")
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    results = run(args.data_dir, args.model, args.width_multiplier, args.batch_size,
                  args.train_examples, args.rounds)
    results.update(host=host_facts(), load_before=load_before, note=args.note,
                   load_after=[round(x, 2) for x in os.getloadavg()],
                   date=datetime.datetime.now(datetime.timezone.utc).isoformat(
                       timespec="seconds"))
    write_text_atomically(args.output + ".json", json.dumps(results, indent=2) + "\n")
    write_text_atomically(args.output + ".md", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
