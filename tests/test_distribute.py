"""Training under tf.distribute gives the single-device result.

Two logical CPUs stand in for two accelerators. Their split has to happen before
TensorFlow initialises its devices; another test module of the same pytest run may have
initialised them already, so the comparisons run in fresh processes
(tests/distribute_helper.py, which also explains the numerical set-up) and this module
only checks what they report.

What is compared, per objective: a tiny BYOT ResNet-18 with synchronized BatchNorm
(per-replica batch statistics equal the global batch's) trained for 3 SGD steps on the
default strategy and inside MirroredStrategy(["/cpu:0", "/cpu:1"]). With the loss
scaled per replica and the Frobenius feature term summed across replicas, both must
end at the same weights. A control on a tiny dense network shows that the comparison
catches a per-replica Frobenius norm. Every other method (and the cohort and teacher
models) is compared the same way on tiny dense networks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from backend_subprocess import last_json_line, run_processes

tf = pytest.importorskip("tensorflow")

try:  # before TensorFlow initialises its devices, if this module is imported first
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:  # already initialised by another module: the subprocesses cover it
    pass

HELPER = Path(__file__).with_name("distribute_helper.py")
TIMEOUT = 900
RTOL = 1e-4
# The two resnet jobs run side by side (one per core); the toy control rides along.
JOBS = {
    "official": ["--resnet", "official", "--methods"],
    "paper": ["--resnet", "paper", "--toy-control"],
}


@pytest.fixture(scope="module")
def reports():
    # Each helper's outcome is kept, so a failing helper fails only its own tests.
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    return run_processes({name: [sys.executable, str(HELPER), *args]
                          for name, args in JOBS.items()}, env, TIMEOUT)


def _report(reports, name: str) -> dict:
    report = last_json_line(name, *reports[name])
    assert report["replicas"] == 2, report
    return report


def _assert_moved(moved: dict):
    # The comparison only means something if training changed the weights.
    assert moved["max_abs_change"] > 1e-2, moved
    assert len(moved["unchanged"]) <= 0.05 * moved["num_weights"], moved


@pytest.mark.parametrize("objective", ["official", "paper"])
def test_mirrored_training_matches_single_device(reports, objective):
    result = _report(reports, objective)["resnet"][objective]
    _assert_moved(result["moved"])
    assert result["mirrored"]["max_rel_diff"] <= RTOL, (
        f"{objective}: weights after 3 steps on 2 replicas differ from one device: "
        f"{result['mirrored']}"
    )
    # The logged loss terms are the global batch's as well.
    for term, value in result["reference_logs"].items():
        assert result["mirrored_logs"][term] == pytest.approx(value, rel=1e-6), term


def test_per_replica_frobenius_norm_would_be_caught(reports):
    control = _report(reports, "paper")["toy_control"]
    _assert_moved(control["moved"])
    assert control["mirrored"]["max_rel_diff"] <= RTOL, control
    # Without the cross-replica sum each replica's norm covers half the batch: the
    # feature gradients shrink by about 1/sqrt(2) and the weights visibly drift.
    assert control["without_cross_replica_sum"]["max_rel_diff"] > 100 * RTOL, control


@pytest.mark.parametrize("method", ["msd", "eed", "sdn", "deep_supervision", "ce", "cskd",
                                    "one", "multistructure", "dml", "hinton_kd"])
def test_every_method_under_mirrored_strategy_matches_single_device(reports, method):
    result = _report(reports, "official")["methods"][method]
    assert result["moved"]["max_abs_change"] > 1e-2, result["moved"]
    assert result["mirrored"]["max_rel_diff"] <= RTOL, (method, result["mirrored"])
    for term, value in result["reference_logs"].items():
        assert result["mirrored_logs"][term] == pytest.approx(value, rel=1e-6), (method, term)
