"""byot-keras against the PyTorch peer, side by side: the same ResNet-18 CIFAR training
step (100 classes, the official BYOT design: attention + SepConv heads, 0.7 CE + 0.3
soft CE at T = 3, the 0.03 feature term with adaptation layers on exits 1-2, SGD with
momentum 0.9 and weight decay 5e-4) and the plain network, at each batch size.

The peer is `../shared/bench/byot_torch.py`, run with the Python of a separate
environment that has torch (`--torch_python`; torch is not a dependency of this
project). Ours is `python -m benchmarks.peer --ours BATCH`, which times our step the way
the peer times its own: 2 warm-up steps, then the median wall time of 6 steps on one
fixed random batch, 2 threads. The two alternate in fresh processes, `--rounds` times
(peer, ours, ours, peer, ...), and the load average is recorded beside every run: a busy
machine slows both, torch's OpenMP threads more.

    python -m benchmarks.peer --torch_python /work/venvs/torch/bin/python \\
        --output benchmarks/results/peer
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEER = os.path.join(os.path.dirname(ROOT), "shared", "bench", "byot_torch.py")
LINE = re.compile(r"plain ([\d.]+) img/s, byot ([\d.]+) img/s")
THREADS = 2


def _step_timer_class():
    import keras

    class StepTimer(keras.callbacks.Callback):
        """Wall time of every training step."""

        def __init__(self):
            super().__init__()
            self.times, self._start = [], 0.0

        def on_train_batch_begin(self, batch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self._start)

    return StepTimer


def ours(batch: int, steps: int = 6, warmup: int = 2) -> dict:
    """Images/s of our plain ResNet-18 and BYOT ResNet-18 training steps (as the peer)."""
    import keras
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    from byot_keras import zoo
    from byot_keras.train.trainer import add_weight_decay

    StepTimer = _step_timer_class()  # noqa: N806 - a class
    rng = np.random.default_rng(0)
    images = rng.random((batch, 32, 32, 3), dtype=np.float32)
    labels = rng.integers(0, 100, size=batch)
    data = tf.data.Dataset.from_tensors((images, labels)).repeat()
    result = {}
    for label, builder in (("plain", zoo.resnet18), ("byot", zoo.resnet18_byot)):
        keras.utils.set_random_seed(0)
        model = builder(num_classes=100)
        add_weight_decay(model, 5e-4)  # SGD(weight_decay=5e-4) as in PyTorch
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        timer = StepTimer()
        model.fit(data, steps_per_epoch=warmup + steps, epochs=1, verbose=0,
                  callbacks=[timer])
        result[label] = batch / statistics.median(timer.times[warmup:])
    return result


def _run(command: list[str]) -> tuple[dict, float]:
    load = os.getloadavg()[0]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    match = LINE.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}"
                           f"\n{done.stderr[-3000:]}")
    return {"plain": float(match.group(1)), "byot": float(match.group(2))}, load


def compare(torch_python: str, batches=(64, 128), rounds: int = 3) -> dict:
    """Alternating fresh-process runs of the peer and ours; per batch size every run's
    images/s with the 1-minute load average at its start, and the medians' ratios."""
    results = {"batches": {}, "rounds": rounds, "peer": PEER}
    version = subprocess.run([torch_python, "-c", "import torch; print(torch.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    results["torch"] = version
    for batch in batches:
        runs = {"peer": [], "ours": []}
        order = ["peer", "ours"]
        for _ in range(rounds):
            for who in order:
                command = ([torch_python, PEER, str(batch)] if who == "peer" else
                           [sys.executable, "-m", "benchmarks.peer", "--ours", str(batch)])
                figures, load = _run(command)
                runs[who].append({**figures, "load": round(load, 2)})
                print(f"batch {batch} {who}: plain {figures['plain']:.1f}, byot "
                      f"{figures['byot']:.1f} img/s (load {load:.2f})", flush=True)
            order.reverse()
        medians = {who: {k: statistics.median(r[k] for r in runs[who])
                         for k in ("plain", "byot")} for who in runs}
        results["batches"][str(batch)] = {
            "runs": runs, "medians": medians,
            "ratio": {k: round(medians["ours"][k] / medians["peer"][k], 3)
                      for k in ("plain", "byot")}}
    return results


def render(results: dict) -> str:
    lines = [f"# byot-keras vs the PyTorch peer ({results['torch']}), ResNet-18 CIFAR, 100 "
             "classes", "",
             f"Fresh processes alternating {results['rounds']} times per batch size "
             "(`python -m benchmarks.peer`); images/s, median step of 6 after 2 warm-up "
             "steps, 2 threads; load: the 1-minute load average when each run started.", "",
             "| batch | network | peer images/s (runs) | ours images/s (runs) | ours / peer "
             "| load (peer runs / our runs) |", "|---:|---|---|---|---:|---|"]
    for batch, entry in results["batches"].items():
        for key in ("plain", "byot"):
            peer = ", ".join(f"{r[key]:.1f}" for r in entry["runs"]["peer"])
            ours_ = ", ".join(f"{r[key]:.1f}" for r in entry["runs"]["ours"])
            load = (", ".join(f"{r['load']:.2f}" for r in entry["runs"]["peer"]) + " / "
                    + ", ".join(f"{r['load']:.2f}" for r in entry["runs"]["ours"]))
            lines.append(f"| {batch} | {key} | {peer} | {ours_} | "
                         f"{entry['ratio'][key]:.2f} | {load} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ours", type=int, help="Time our step at this batch size (the "
                        "process the comparison starts).")
    parser.add_argument("--torch_python", help="Python of an environment with torch.")
    parser.add_argument("--batches", default="64,128")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "peer"))
    args = parser.parse_args(argv)
    if args.ours:
        figures = ours(args.ours)
        print(f"byot-keras resnet18 CIFAR batch {args.ours}: plain {figures['plain']:.1f} "
              f"img/s, byot {figures['byot']:.1f} img/s")
        return 0
    if not args.torch_python:
        parser.error("--torch_python is required (an environment with torch installed).")
    results = compare(args.torch_python, [int(b) for b in args.batches.split(",")],
                      args.rounds)
    from byot_keras.saving import write_text_atomically

    write_text_atomically(args.output + ".json", json.dumps(results, indent=2))
    write_text_atomically(args.output + ".md", render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
