"""Speed experiment (issue 6): profile one byot step and list the heads' op time by
layer kind and op type. Argument: batch size (default 128).
"""

import collections
import glob
import os
import re
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from benchmarks import profiling
from benchmarks import training_speed as speed

batch = int(sys.argv[1]) if len(sys.argv) > 1 else 128
ds = speed.in_memory_batches(batch)
model = speed.build_model("resnet18_byot", "byot", width_multiplier=1.0)
t = speed.Trainee("byot", model, iter(ds), batch)
print("warmup", speed.warm_up(t, ds), flush=True)
speed.run_calls(t, 1)
logdir = tempfile.mkdtemp()
tf.profiler.experimental.start(logdir)
speed.run_calls(t, 1)
tf.profiler.experimental.stop()
path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))[-1]
space = xplane_pb2.XSpace()
space.ParseFromString(open(path, "rb").read())
net = model.network.name
by = collections.Counter()
cat = collections.Counter()
for plane in space.planes:
    if not plane.name.startswith("/host:"):
        continue
    for line in plane.lines:
        if not line.name.startswith("tf_Compute"):
            continue
        for name, ps in profiling._self_times(line, plane.event_metadata):
            scope, op = name.rsplit(":", 1)
            if op in profiling._CONTROL_OPS:
                continue
            c = profiling.categorize(scope, net, 4, op)
            cat[c] += ps / 1e9
            if c == "heads":
                m = re.search(re.escape(net) + r"(?:_\d+)?/([^/]+)/", scope)
                layer = m.group(1) if m else scope.split("/")[1]
                kind = re.sub(r"^exit_\d_head_", "", layer)
                kind = re.sub(r"sep\d", "sep", kind)
                kind = re.sub(r"_\d+$", "", kind)
                kind = re.sub(r"(dw|pw|bn|relu)\d", r"\1", kind)
                by[(kind, op)] += ps / 1e9
print({k: round(v) for k, v in cat.items()}, "total", round(sum(cat.values())))
for (k, op), ms in by.most_common(30):
    print(f"{ms:8.1f}  {k:30s} {op}")
