"""Run one side of a test in other processes, possibly in another Python.

The Keras backend is fixed per process and some stacks (JAX, torch) live in their own
virtual environments, so several test files start helper scripts and check the JSON
their last stdout line reports. This module holds what those test files share: finding
the other Python, running the helpers side by side, a readable failure, and the checks of
the reports of tests/backend_helper.py (what the JAX and torch helpers run alike).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# tests/backend_helper.py's toy training: batch, steps per epoch, the cosine schedule.
BATCH, STEPS, LEARNING_RATE, DECAY_STEPS = 16, 3, 0.05, 6
#: Every method backend_helper.methods trains.
METHODS = ["byot", "msd", "eed", "sdn", "deep_supervision", "ce", "cskd", "one",
           "multistructure", "dml", "hinton_kd"]


def tail(text: str, lines: int = 40) -> str:
    """The last `lines` lines of a helper's stderr, for an assertion message."""
    return "\n".join(text.strip().splitlines()[-lines:])


def python_from_env(variable: str, default: Path | None = None) -> str | None:
    """The Python named by environment variable `variable`, else `default` if it exists."""
    configured = os.environ.get(variable)
    if configured:
        return configured
    return str(default) if default is not None and default.exists() else None


def missing_module(python: str | None, module: str, variable: str, how: str) -> str | None:
    """Why `python` cannot run the tests that need `module` (a skip reason), or None.

    `how` tells the reader how to make such a Python (the README section, or CI's step).
    """
    if python is None:
        return f"no {module} environment: set {variable} to a Python that imports {module} " \
               f"and this project's requirements ({how})"
    try:
        check = subprocess.run([python, "-c", f"import {module}"], capture_output=True,
                               text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{variable}={python} does not run: {error}"
    if check.returncode:
        return f"{module} is not importable with {python}: {check.stderr.strip()[-200:]}"
    return None


def run_processes(commands: dict[str, list[str]], env: dict[str, str],
                  timeout: float) -> dict[str, tuple[int, str, str]]:
    """Runs every command at once (one per core) from the project root; per name its
    `(returncode, stdout, stderr)`. Anything still running on the way out is killed."""
    processes = {
        name: subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, cwd=ROOT)
        for name, command in commands.items()
    }
    results = {}
    try:
        for name, process in processes.items():
            stdout, stderr = process.communicate(timeout=timeout)
            results[name] = (process.returncode, stdout, stderr)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results


def last_json_line(name: str, returncode: int, stdout: str, stderr: str) -> dict:
    """The JSON object a helper printed last; a failed or silent helper fails the test
    with the end of its stderr."""
    assert returncode == 0, f"{name} helper failed ({returncode}):\n{tail(stderr)}"
    lines = stdout.strip().splitlines()
    assert lines, f"{name} helper printed nothing:\n{tail(stderr)}"
    return json.loads(lines[-1])


def run_helpers(python: str, helper: Path, jobs: dict[str, list[str]], env: dict[str, str],
                timeout: float, backend: str | None = None) -> dict:
    """Runs `python helper *args` for every job at once and merges the JSON objects their
    last stdout lines print. With `backend`, each report must say it ran on that Keras
    backend."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")])))
    outcomes = run_processes({name: [python, str(helper), *args]
                              for name, args in jobs.items()}, env, timeout)
    reports = {}
    for name, outcome in outcomes.items():
        report = last_json_line(f"{helper.name} {name}", *outcome)
        if backend is not None:
            assert report["backend"] == backend, report
        reports.update(report)
    return reports


def check_method_report(result: dict, method: str) -> None:
    """Asserts what backend_helper.methods reported for one method: finite terms, every
    exit's accuracy logged and equal to that of predict's logits, the same logits after
    save / load, the optimizer state (the cosine schedule's step) saved and resumed."""
    import pytest  # here: the helper scripts import this module's settings, not pytest

    assert result["finite"] and result["resumed_finite"], result
    assert "loss" in result["logged"], result
    if method not in ("multistructure", "dml", "hinton_kd"):
        # SelfDistillationModel: every exit's accuracy and the ensemble's are logged.
        assert {f"exit_{k}_accuracy" for k in range(1, 5)} <= set(result["logged"]), result
        assert "ensemble_accuracy" in result["evaluated"], result
    # Per-exit (per-member) accuracies from evaluate: those of predict's logits.
    assert len(result["recomputed"]) >= 2, result
    for metric, value in result["recomputed"].items():
        assert result["evaluated"][metric] == pytest.approx(value, abs=1e-6), metric
    assert result["reload_max_abs_diff"] <= 1e-6, result
    # The loaded model's resumed epoch continues from the saved step count, down the cosine.
    saved, after_resume = result["optimizer_iterations"]
    assert (saved, after_resume) == (STEPS, 2 * STEPS), result
    cosine = [LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * min(s, DECAY_STEPS) / DECAY_STEPS))
              for s in (saved, after_resume)]
    assert result["learning_rate"] == pytest.approx(cosine, abs=1e-7), result
    assert result["resumed_moved"] > 1e-6, result
    if method in ("msd", "sdn"):
        # Scheduled loss weights read the model's epoch counter: epoch 0 of 1 after the
        # first fit, the same in the loaded file, epoch 1 of 2 in the resumed fit.
        assert result["schedule"] == [[0.0, 1.0], [0.0, 1.0], [1.0, 2.0]], result


def check_interrupted_run(result: dict, backend: str, replicas: int) -> None:
    """Asserts backend_helper.interrupted_then_resumed's report: stopped after epoch 1,
    resumed by the command for epoch 2 on `backend`, its model file loads here."""
    from byot_keras import saving

    assert result["interrupted_after"] == 1
    assert result["backend"] == backend and result["versions"].get(backend), result
    assert result["epochs"] == 2 and result["resumed_after"] == [1]
    assert result["history_epochs"] == 2
    assert result["replicas"] == replicas
    assert set(result["accuracy"]) == {"exit_1", "exit_2", "ensemble"}
    assert saving.load_model(result["model_file"]).exit_names == ["exit_1", "exit_2"]
