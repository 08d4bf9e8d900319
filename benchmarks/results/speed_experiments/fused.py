"""Speed experiment (issue 6): Keras BN vs the fused kernel, ce and byot, ResNet-18 x1 batch 128.

Run from the repository root: PYTHONPATH=. python benchmarks/results/speed_experiments/fused.py
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from benchmarks import run as bench
from benchmarks.fused_batchnorm import fused_matches_keras
from benchmarks.training_speed import paired_ratio

print("fused matches keras:", fused_matches_keras(), flush=True)
g = bench.SpeedGroup(
    "exp_fused",
    "resnet18_byot",
    1.0,
    128,
    methods=("ce", "byot"),
    windows=5,
    variants=(
        ("ce + fused BN", "ce", {"fused_batchnorm": True}),
        ("byot + fused BN", "byot", {"fused_batchnorm": True}),
    ),
    profile=False,
)
out, _ = bench.run_speed_group(g)

r = out["results"]


def w(a, b):
    return paired_ratio(r[a]["windows_wall_s"], r[b]["windows_wall_s"])


def c(a, b):
    return paired_ratio(r[a]["windows_cpu_s"], r[b]["windows_cpu_s"])


for a, b in [
    ("byot", "ce"),
    ("byot + fused BN", "ce + fused BN"),
    ("ce + fused BN", "ce"),
    ("byot + fused BN", "byot"),
]:
    print(f"{a} / {b}: wall {w(a, b):.3f} cpu {c(a, b):.3f}")
for k, v in r.items():
    print(k, round(v["step_s"], 3), v["windows_wall_s"], v["train_macs"])
print("load", out["load_average_1min"])
json.dump(out, open("fused.json", "w"), indent=1, default=str)
