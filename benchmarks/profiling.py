"""What a profiled training step spends: op time by part of the model, and peak memory.

`profile_calls(run, logdir)` records `run()` with `tf.profiler` (the trace TensorBoard's
profiler shows) and reads the host plane of the written `.xplane.pb` directly:

- every TensorFlow op event on the executor threads (`tf_Compute*` lines) gets its *self*
  time (nested events subtracted) and a category from its name scope: `backbone`
  (layers of the plain network), `heads` (the shallow exits' heads, classifiers and
  adaptation layers), `optimizer`, `gradient sums` (the AddN ops that add up a tensor's
  gradients where the graph branches, e.g. a section output read by the next section
  and by an exit's head) and `loss and metrics` (the rest: the loss terms, metric
  updates);
- the heads' time is also split by op type and by the kind of head layer it ran in
  (`sep_pw`, `attention_up`, ...: the layer's name without its exit and its numbers), so
  the ops that cost time without multiply-adds (depthwise, batch norm, the attention's
  upsample and multiply) stand apart from the 1x1 convolutions;
- the CPU allocator's `MemoryAllocation` / `MemoryDeallocation` events give the bytes in
  use over the step; their range (peak minus lowest) is the step's temporary memory
  (activations kept for the backward pass, gradients, scratch space).

Run alone, it profiles one model's training step:

    TF_NUM_INTEROP_THREADS=1 python -m benchmarks.profiling --model resnet18_byot \\
        --method byot --batch_size 128

(one inter-op thread runs the ops one at a time, so no op's time is stretched by another
running beside it and the op times add up to the step; without it, ops overlap).
"""

from __future__ import annotations

import collections
import glob
import os
import re
import shutil
from collections.abc import Callable

CATEGORIES = ("backbone", "heads", "gradient sums", "loss and metrics", "optimizer")
_CONTROL_OPS = {"StatefulPartitionedCall", "PartitionedCall", "While", "StatelessWhile", "If",
                "StatelessIf", "Case"}
_EXIT_LAYER = re.compile(r"(?:exit|feature|adaptation)_(\d+)(?:_|$)")
# "exit_1_head_sep2_pw1_1" -> "sep2_pw1" (the trailing "_1" numbers the layer's call).
_HEAD_LAYER = re.compile(r"exit_\d+_head_(.+?)(?:_\d+)?$")
HEAD_OTHER = "pooling, classifiers, adaptation layers"


def profile_calls(run: Callable[[], None], logdir: str, *, network_name: str,
                  num_exits: int) -> dict:
    """Profiles `run()` and returns `{"op_ms": {category: ms}, "top_ops": [...],
    "memory": {...}}` (see the module docstring); `logdir` is emptied first."""
    import tensorflow as tf

    shutil.rmtree(logdir, ignore_errors=True)
    tf.profiler.experimental.start(logdir)
    try:
        run()
    finally:
        tf.profiler.experimental.stop()
    paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True),
                   key=os.path.getmtime)
    if not paths:
        raise RuntimeError(f"tf.profiler wrote no .xplane.pb under {logdir}.")
    return summarize_xplane(paths[-1], network_name=network_name, num_exits=num_exits)


def summarize_xplane(path: str, *, network_name: str, num_exits: int) -> dict:
    """Op self-time per category and memory figures from one `.xplane.pb` file."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    op_ms: collections.Counter = collections.Counter()
    by_type: collections.Counter = collections.Counter()
    heads_by_op: collections.Counter = collections.Counter()
    heads_by_layer: collections.Counter = collections.Counter()
    memory: dict[str, list[int]] = {}
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        names = plane.event_metadata
        stat_names = {k: v.name for k, v in plane.stat_metadata.items()}
        for line in plane.lines:
            if line.name.startswith("tf_Compute"):
                for name, self_ps in _self_times(line, names):
                    scope, op_type = name.rsplit(":", 1)
                    if op_type in _CONTROL_OPS:
                        continue
                    category = categorize(scope, network_name, num_exits, op_type)
                    op_ms[category] += self_ps / 1e9
                    by_type[(category, op_type)] += self_ps / 1e9
                    if category == "heads":
                        heads_by_op[op_type] += self_ps / 1e9
                        heads_by_layer[head_layer_kind(scope, network_name)] += self_ps / 1e9
            for event in line.events:
                if names[event.metadata_id].name not in ("MemoryAllocation",
                                                         "MemoryDeallocation"):
                    continue
                stats = {stat_names.get(s.metadata_id, ""): s for s in event.stats}
                if "bytes_allocated" not in stats:
                    continue
                allocator = stats.get("allocator_name")
                key = "cpu"
                if allocator is not None:
                    key = allocator.str_value or stat_names.get(allocator.ref_value, "cpu")
                value = stats["bytes_allocated"]
                memory.setdefault(key, []).append(int(value.int64_value or value.uint64_value))
    top = [{"category": c, "op": t, "ms": round(ms, 2)} for (c, t), ms in by_type.most_common(12)]
    peak = sum(max(v) for v in memory.values()) if memory else None
    low = sum(min(v) for v in memory.values()) if memory else None
    return {
        "op_ms": {c: round(op_ms.get(c, 0.0), 2) for c in CATEGORIES},
        "top_ops": top,
        "heads_by_op": {t: round(ms, 2) for t, ms in heads_by_op.most_common()},
        "heads_by_layer": {k: round(ms, 2) for k, ms in heads_by_layer.most_common()},
        "memory": {
            "allocators": sorted(memory),
            "events": sum(len(v) for v in memory.values()),
            "peak_bytes_in_use": peak,
            "lowest_bytes_in_use": low,
            "step_temporary_bytes": None if peak is None else peak - low,
        },
    }


def _self_times(line, names):
    """(op name, self time in ps) of the TF op events of one thread line: an event's
    duration minus the durations of the events nested in it."""
    events = sorted(line.events, key=lambda e: (e.offset_ps, -e.duration_ps))
    stack: list[list] = []  # [end_ps, name, self_ps]
    done = []
    for event in events:
        start, end = event.offset_ps, event.offset_ps + event.duration_ps
        while stack and stack[-1][0] <= start:
            done.append(stack.pop())
        if stack:
            stack[-1][2] -= event.duration_ps
        stack.append([end, names[event.metadata_id].name, event.duration_ps])
    done.extend(stack)
    for _, name, self_ps in done:
        if ":" in name and "::" not in name:  # "scope/op:OpType"; skip runtime markers
            yield name, max(self_ps, 0)


def _network_layer(scope: str, network_name: str) -> str | None:
    """The name of the network's layer an op's scope lies in ("exit_1_head_sep1_dw1_1"),
    or None outside the network."""
    match = re.search(re.escape(network_name) + r"(?:_\d+)?/([^/]+)/", scope)
    return match.group(1) if match else None


def categorize(scope: str, network_name: str, num_exits: int, op_type: str = "") -> str:
    """The category of an op from its name scope and type (see the module docstring)."""
    layer = _network_layer(scope, network_name)
    parts = scope.lower().split("/")
    if layer is None:
        if any(p.startswith("adaptation_") for p in scope.split("/")):
            return "heads"
        if any(p in ("sgd", "adam", "adamw", "rmsprop") or p.startswith("sgd_")
               for p in parts):
            return "optimizer"
        # Outside every layer: the AddN ops that sum a tensor's gradients where the
        # graph branches (grappler moves them out of the layers' scopes), or the loss.
        return "gradient sums" if op_type == "AddN" else "loss and metrics"
    exit_layer = _EXIT_LAYER.match(layer)
    if exit_layer and int(exit_layer.group(1)) < num_exits:
        return "heads"
    return "backbone"


def head_layer_kind(scope: str, network_name: str) -> str:
    """The kind of head layer an op of the heads ran in: "sep_pw" for
    "exit_1_head_sep2_pw1_1" (exit and numbers dropped); HEAD_OTHER for the exits'
    pooling and classifiers and the loss's adaptation layers."""
    layer = _network_layer(scope, network_name)
    head = _HEAD_LAYER.match(layer) if layer else None
    return re.sub(r"\d+", "", head.group(1)) if head else HEAD_OTHER


def main(argv=None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Op time of one model's training step, "
                                                 "by model part and inside the heads.")
    parser.add_argument("--model", default="resnet18_byot")
    parser.add_argument("--method", default="byot")
    parser.add_argument("--width_multiplier", type=float, default=1.0)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2, help="Profiled steps (after a "
                        "warm-up); the figures are per step.")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch_size must be at least 1.")

    from benchmarks import training_speed as speed

    model = speed.build_model(args.model, args.method,
                              width_multiplier=args.width_multiplier)
    data = speed.in_memory_batches(args.batch_size)
    trainee = speed.Trainee(args.method, model, iter(data), args.batch_size)
    speed.warm_up(trainee, data)  # traces, then one untimed call on the trainee's iterator
    figures = speed.profile_trainee(trainee, steps=args.steps)
    figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
    figures["inter_op_threads"] = os.environ.get("TF_NUM_INTEROP_THREADS", "default")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
