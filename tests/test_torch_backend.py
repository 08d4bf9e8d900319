"""Train on PyTorch, deploy through TensorFlow.

The Keras backend is fixed per process, so the torch side runs in subprocesses
(tests/torch_helper.py) in the Python named by BYOT_TORCH_PYTHON: a virtual environment
that sees this project's packages and adds torch (README, "Backends"). CI does not create
one: the torch wheel on the package registry CI reaches is the CUDA build, several GB with
its nvidia-* packages. This process (TensorFlow) then checks what the helpers report and
loads the files they trained:

- a BYOT ResNet-18 trained 2 steps on torch loads here with the same logits (its
  optimizer too: Keras saves torch's private optimizer class, byot_keras.backend reads it
  as the public one), trains here, and exports to TFLite files that give the torch
  model's logits (export_tflite on torch says to export on TensorFlow); its early-exit
  answers on torch are those NumPy picks from its logits;
- every method, both cohort methods and teacher -> student KD train on torch with a
  cosine LR schedule, log their terms and every exit's accuracy (equal to the accuracy of
  the predicted logits), save and load .keras with the same logits, resume, and load on
  TensorFlow with the same logits;
- byot-train runs on torch with the tf.data pipeline, and `byot-train --backend torch`
  resumes the interrupted run; tf.distribute and keras.distribution strategies are
  refused on torch; its model.keras loads here;
- `byot-export` started on torch restarts itself on TensorFlow and exports.

Without a Python that imports torch the tests skip and say so.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).with_name("torch_helper.py")
TIMEOUT = 600
METHODS = ["byot", "msd", "eed", "sdn", "deep_supervision", "ce", "cskd", "one",
           "multistructure", "dml", "hinton_kd"]
# One process per core, about as long each: byot-train (two runs, one of them the
# command) with the dense toys, and the ResNet file (exported by byot-export, which starts
# twice).
JOBS = {"train": ["--train", "--methods"], "resnet": ["--portability"]}
# What tests/torch_helper.py uses.
LEARNING_RATE, DECAY_STEPS, STEPS = 0.05, 6, 3
# torch and TensorFlow run the same float32 network with different kernels (convolution,
# batch norm), so the logits agree to rounding; the same bounds as the JAX file's.
RTOL, ATOL = 1e-4, 1e-5


def torch_python() -> str | None:
    return os.environ.get("BYOT_TORCH_PYTHON") or None


@functools.cache
def _torch_missing() -> str | None:
    python = torch_python()
    if python is None:
        return ("no torch environment: set BYOT_TORCH_PYTHON to a Python that imports torch "
                "and this project's requirements (README, 'Backends'; not created by CI: "
                "the registry's torch wheel is the multi-GB CUDA build)")
    try:
        check = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True,
                               timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"BYOT_TORCH_PYTHON={python} does not run: {error}"
    if check.returncode:
        return f"torch is not importable with {python}: {check.stderr.strip()[-200:]}"
    return None


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@pytest.fixture(scope="module")
def torch_runs(tmp_path_factory):
    missing = _torch_missing()
    if missing:
        pytest.skip(missing)
    env = dict(os.environ, KERAS_BACKEND="torch", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")])))
    out = tmp_path_factory.mktemp("torch")
    processes = {
        name: subprocess.Popen([torch_python(), str(HELPER), "--out", str(out), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=ROOT)
        for name, args in JOBS.items()
    }
    reports = {}
    try:
        for name, process in processes.items():
            stdout, stderr = process.communicate(timeout=TIMEOUT)
            assert process.returncode == 0, (
                f"torch helper {name} failed ({process.returncode}):\n{_tail(stderr)}")
            report = json.loads(stdout.strip().splitlines()[-1])
            assert report["backend"] == "torch", report
            reports.update(report)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    reports["out"] = out
    return reports


def _load(path: Path):
    """The model in `path` loaded here (TensorFlow), with the inputs and torch logits
    saved beside it."""
    import byot_keras  # noqa: F401  (registers the zoo's classes)
    from byot_keras import saving

    model = saving.load_model(path)
    with np.load(path.with_suffix(".npz")) as saved:
        arrays = {k: saved[k] for k in saved.files}
    return model, arrays.pop("images"), arrays


@pytest.fixture
def torch_model(torch_runs):
    """A fresh copy (tests may train it) of the ResNet trained on torch, loaded here on
    TensorFlow, the images and the torch model's logits on them."""
    return _load(torch_runs["out"] / "resnet.keras")


def test_file_trained_on_torch_gives_the_same_logits_on_tensorflow(torch_runs, torch_model):
    import keras

    assert keras.backend.backend() == "tensorflow"
    report = torch_runs["portability"]
    assert report["moved"] > 1e-3, report  # the file holds trained weights
    model, images, torch_logits = torch_model
    assert model.exit_names == report["exits"] == sorted(torch_logits)
    logits = model.predict(images, verbose=0)
    for name, expected in torch_logits.items():
        np.testing.assert_allclose(logits[name], expected, rtol=RTOL, atol=ATOL, err_msg=name)
        assert np.abs(expected).max() > 1e-2, name  # not all zeros
    # The optimizer trained on torch as Keras' torch subclass, which is what the file
    # names; here it is the public class with the saved state (2 steps).
    assert report["optimizer_module"].startswith("keras.src.backend.torch.optimizers"), report
    assert type(model.optimizer) is keras.optimizers.SGD
    assert int(model.optimizer.iterations) == report["iterations"] == 2


def test_file_trained_on_torch_trains_on_tensorflow(torch_runs, torch_model):
    model, images, _ = torch_model
    assert torch_runs["portability"]["jit_compile"] is False  # torch's default: eager
    history = model.fit(images, np.arange(len(images)) % 10, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert int(model.optimizer.iterations) == 4


def test_file_trained_on_torch_exports_to_tflite_with_the_torch_logits(torch_runs,
                                                                      torch_model):
    """`byot-export` started on torch (it restarts itself on TensorFlow) wrote the first
    and the deepest exit's files; `export_tflite` on torch says where to export instead
    of failing inside Keras."""
    pytest.importorskip("ai_edge_litert")
    from byot_keras.export.litert import LiteRTModel

    report = torch_runs["portability"]
    assert "Keras cannot do on the torch backend" in report["export_refused"], report
    assert "KERAS_BACKEND=tensorflow" in report["export_refused"]
    assert not report["refused_folder"]  # refused before any work
    assert report["exported"] == ["exit_1.tflite", "exit_4.tflite"], report
    model, images, torch_logits = torch_model
    for k in (1, model.num_exits):
        runner = LiteRTModel(torch_runs["out"] / "export" / f"exit_{k}.tflite")
        logits = runner(image=images)["logits"]
        np.testing.assert_allclose(logits, torch_logits[f"exit_{k}"], rtol=RTOL, atol=ATOL,
                                   err_msg=f"exit_{k}")


def test_early_exit_helpers_on_torch(torch_runs, torch_model):
    model, _, torch_logits = torch_model
    report = torch_runs["portability"]
    assert report["sub_model_max_abs_diff"] == 0.0  # exit_model(k) is exit k of the model
    assert report["costs"] == model.exit_costs()  # counted the same on both backends
    with np.load(torch_runs["out"] / "early_exit.npz") as saved:
        answers = {k: saved[k] for k in saved.files}
    threshold = float(answers.pop("threshold"))
    # The reference: per example, the first exit whose largest softmax probability
    # reaches the threshold, else the deepest exit.
    names = sorted(torch_logits, key=lambda n: int(n.split("_")[1]))
    for i in range(len(answers["exits"])):
        for k, name in enumerate(names, start=1):
            z = torch_logits[name][i].astype("float64")
            p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            if p.max() >= threshold or k == len(names):
                break
        assert (answers["exits"][i], answers["predictions"][i]) == (k, p.argmax()), i
        assert answers["confidences"][i] == pytest.approx(p.max(), rel=1e-6), i
    # The threshold splits the examples between exits (not everything at one exit).
    assert len(set(answers["exits"].tolist())) > 1, answers["exits"]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_saves_loads_and_resumes_on_torch(torch_runs, method):
    result = torch_runs["methods"][method]
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
    # The optimizer state (its step count, read by the LR schedule) is saved too: the
    # loaded model's resumed epoch continues from the saved count, down the cosine.
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


@pytest.mark.parametrize("method", METHODS)
def test_every_method_file_from_torch_loads_on_tensorflow(torch_runs, method):
    import keras

    model, x, torch_logits = _load(torch_runs["out"] / f"{method}.keras")
    logits = model.predict(x, verbose=0)
    assert sorted(logits) == sorted(torch_logits)
    for name, expected in torch_logits.items():
        np.testing.assert_allclose(logits[name], expected, rtol=RTOL, atol=ATOL, err_msg=name)
    assert type(model.optimizer) is keras.optimizers.SGD
    assert int(model.optimizer.iterations) == STEPS


def test_byot_train_backend_torch_runs_the_tf_data_pipeline_and_resumes(torch_runs):
    result = torch_runs["train"]
    assert result["interrupted_after"] == 1
    assert result["backend"] == "torch" and result["torch_version"], result
    assert result["epochs"] == 2 and result["resumed_after"] == [1]
    assert result["history_epochs"] == 2
    assert result["replicas"] == 1
    assert set(result["accuracy"]) == {"exit_1", "exit_2", "ensemble"}
    from byot_keras import saving

    # The run's model.keras (its optimizer trained on torch) loads on TensorFlow.
    assert saving.load_model(result["model_file"]).exit_names == ["exit_1", "exit_2"]
    # Neither kind of data parallelism runs on torch: refused before any work.
    refused = result["refused"]
    assert "--strategy mirrored is a tf.distribute strategy" in refused["mirrored"]
    assert "no data parallelism" in refused["mirrored"]
    assert "--strategy data_parallel runs on the JAX backend" in refused["data_parallel"]
    assert result["refused_folders"] == []

