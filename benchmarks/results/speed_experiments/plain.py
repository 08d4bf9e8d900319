"""Speed experiment (issue 6): ce vs byot, ResNet-18 x1 batch 128, interleaved; run with
TF_ENABLE_ONEDNN_OPTS=0 to time TensorFlow without oneDNN. Argument: the JSON to write.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from benchmarks import run as bench

g = bench.SpeedGroup(
    "exp_plain", "resnet18_byot", 1.0, 128, methods=("ce", "byot"), windows=5, profile=False
)
out, _ = bench.run_speed_group(g)
r = out["results"]
print("TF_ENABLE_ONEDNN_OPTS", os.environ.get("TF_ENABLE_ONEDNN_OPTS"))
print(f"byot / ce: wall {r['byot']['wall_ratio']:.3f} cpu {r['byot']['cpu_ratio']:.3f}")
for k, v in r.items():
    print(k, round(v["step_s"], 3), v["windows_wall_s"], round(v["cpu_s_per_step"], 3))
print("load", out["load_average_1min"])
json.dump(out, open(sys.argv[1], "w"), indent=1, default=str)
