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
from pathlib import Path

import numpy as np
import pytest
from backend_subprocess import (
    METHODS,
    STEPS,
    check_interrupted_run,
    check_method_report,
    missing_module,
    python_from_env,
    run_helpers,
)

ROOT = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).with_name("torch_helper.py")
TIMEOUT = 600
# One process per core, about as long each: byot-train (two runs, one of them the
# command) with the dense toys, and the ResNet file (exported by byot-export, which starts
# twice).
JOBS = {"train": ["--train", "--methods"], "resnet": ["--portability"]}
# torch and TensorFlow run the same float32 network with different kernels (convolution,
# batch norm), so the logits agree to rounding; the same bounds as the JAX file's.
RTOL, ATOL = 1e-4, 1e-5


def torch_python() -> str | None:
    return python_from_env("BYOT_TORCH_PYTHON")


@functools.cache
def _torch_missing() -> str | None:
    return missing_module(torch_python(), "torch", "BYOT_TORCH_PYTHON",
                          "README, 'Backends'; not created by CI: the registry's torch "
                          "wheel is the multi-GB CUDA build")


@pytest.fixture(scope="module")
def torch_runs(tmp_path_factory):
    missing = _torch_missing()
    if missing:
        pytest.skip(missing)
    out = tmp_path_factory.mktemp("torch")
    jobs = {name: ["--out", str(out), *args] for name, args in JOBS.items()}
    reports = run_helpers(torch_python(), HELPER, jobs, {"KERAS_BACKEND": "torch"}, TIMEOUT,
                          backend="torch")
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
    check_method_report(torch_runs["methods"][method], method)


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
    # Its model.keras (the optimizer trained on torch) loads on TensorFlow.
    check_interrupted_run(result, "torch", replicas=1)
    # Neither kind of data parallelism runs on torch: refused before any work.
    refused = result["refused"]
    assert "--strategy mirrored is a tf.distribute strategy" in refused["mirrored"]
    assert "no data parallelism" in refused["mirrored"]
    assert "--strategy data_parallel runs on the JAX backend" in refused["data_parallel"]
    assert result["refused_folders"] == []

