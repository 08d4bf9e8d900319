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
- the CPU allocator's `MemoryAllocation` / `MemoryDeallocation` events give the bytes in
  use over the step; their range (peak minus lowest) is the step's temporary memory
  (activations kept for the backward pass, gradients, scratch space).
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


def categorize(scope: str, network_name: str, num_exits: int, op_type: str = "") -> str:
    """The category of an op from its name scope and type (see the module docstring)."""
    match = re.search(re.escape(network_name) + r"(?:_\d+)?/([^/]+)/", scope)
    parts = scope.lower().split("/")
    if match is None:
        if any(p.startswith("adaptation_") for p in scope.split("/")):
            return "heads"
        if any(p in ("sgd", "adam", "adamw", "rmsprop") or p.startswith("sgd_")
               for p in parts):
            return "optimizer"
        # Outside every layer: the AddN ops that sum a tensor's gradients where the
        # graph branches (grappler moves them out of the layers' scopes), or the loss.
        return "gradient sums" if op_type == "AddN" else "loss and metrics"
    exit_layer = _EXIT_LAYER.match(match.group(1))
    if exit_layer and int(exit_layer.group(1)) < num_exits:
        return "heads"
    return "backbone"
