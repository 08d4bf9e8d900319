"""Train on JAX, deploy through TensorFlow.

The Keras backend is fixed per process, so the JAX side runs in subprocesses
(tests/jax_helper.py) in the Python named by BYOT_JAX_PYTHON (.ci/run creates that
environment from the `jax` extra; default: `.venv-jax/bin/python` in the checkout), with
2 virtual CPU devices for the data-parallel comparison. This process (TensorFlow) then
checks what the helpers report and loads the file they trained:

- a BYOT ResNet-18 trained 2 steps on JAX loads here with the same logits and exports to
  TFLite files that give the JAX model's logits;
- every method, both cohort methods and teacher -> student KD train on JAX with a
  cosine LR schedule, log their terms and every exit's accuracy, save and load .keras
  with the same logits and resume;
- `keras.distribution.DataParallel` on 2 devices ends at the one-device weights (no
  per-replica loss scaling on JAX: the step is one program over the global batch);
- byot-train runs on JAX with the tf.data pipeline under `--strategy data_parallel`, and
  `byot-train --backend jax` (started on TensorFlow) resumes the interrupted run.

Without a Python that imports jax the tests skip and say so.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from backend_subprocess import (
    METHODS,
    check_interrupted_run,
    check_method_report,
    missing_module,
    python_from_env,
    run_helpers,
)

ROOT = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).with_name("jax_helper.py")
TIMEOUT = 900
RTOL = 1e-4
# One process per core: the ResNet (portability, byot-train) and the dense toys.
JOBS = {"resnet": ["--portability", "--train"], "toys": ["--methods", "--data_parallel"]}


def jax_python() -> str | None:
    return python_from_env("BYOT_JAX_PYTHON", ROOT / ".venv-jax" / "bin" / "python")


@functools.cache
def _jax_missing() -> str | None:
    return missing_module(jax_python(), "jax", "BYOT_JAX_PYTHON",
                          ".ci/run creates one from the 'jax' extra")


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory):
    missing = _jax_missing()
    if missing:
        pytest.skip(missing)
    out = tmp_path_factory.mktemp("jax")
    jobs = {name: ["--out", str(out / name), *args] for name, args in JOBS.items()}
    env = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    reports = run_helpers(jax_python(), HELPER, jobs, env, TIMEOUT, backend="jax")
    reports["out"] = out
    return reports


@pytest.fixture
def jax_model(jax_runs):
    """A fresh copy (tests may train it) of the model trained on JAX, loaded here on
    TensorFlow, the images and the JAX model's logits on them."""
    import keras  # noqa: F401  (TensorFlow backend in this process)

    import byot_keras  # noqa: F401  (registers the zoo's classes)
    from byot_keras import saving

    out = jax_runs["out"] / "resnet"
    model = saving.load_model(out / "resnet.keras")
    with np.load(out / "resnet.npz") as saved:
        arrays = {k: saved[k] for k in saved.files}
    return model, arrays.pop("images"), arrays


def test_file_trained_on_jax_gives_the_same_logits_on_tensorflow(jax_runs, jax_model):
    import keras

    assert keras.backend.backend() == "tensorflow"
    report = jax_runs["portability"]
    assert report["moved"] > 1e-3, report  # the file holds trained weights
    model, images, jax_logits = jax_model
    assert model.exit_names == report["exits"] == sorted(jax_logits)
    logits = model.predict(images, verbose=0)
    for name, expected in jax_logits.items():
        np.testing.assert_allclose(logits[name], expected, rtol=1e-4, atol=1e-5,
                                   err_msg=name)
        assert np.abs(expected).max() > 1e-2, name  # not all zeros


def test_file_trained_on_jax_trains_on_tensorflow_without_xla(jax_runs, jax_model):
    import tensorflow as tf

    # JAX recorded jit_compile=True; TensorFlow picks its own default on load.
    assert jax_runs["portability"]["jit_compile"] is True
    model, images, _ = jax_model
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("with a GPU TensorFlow's default is XLA")
    assert model.jit_compile is False
    history = model.fit(images, np.arange(len(images)) % 10, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_file_trained_on_jax_exports_to_tflite_with_the_jax_logits(jax_model, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from byot_keras.export import export_tflite
    from byot_keras.export.litert import LiteRTModel

    model, images, jax_logits = jax_model
    export_tflite(model, tmp_path / "export", exit_outputs="logits", cascade=False,
                  multi_signature=False)
    for k, name in enumerate(model.exit_names, start=1):
        runner = LiteRTModel(tmp_path / "export" / f"exit_{k}.tflite")
        logits = runner(image=images)["logits"]
        np.testing.assert_allclose(logits, jax_logits[name], rtol=1e-4, atol=1e-5,
                                   err_msg=name)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_saves_loads_and_resumes_on_jax(jax_runs, method):
    check_method_report(jax_runs["methods"][method], method)


@pytest.mark.parametrize("method", ["byot", "cskd", "dml", "hinton_kd"])
def test_data_parallel_on_two_jax_devices_matches_one_device(jax_runs, method):
    assert jax_runs["data_parallel"]["devices"] == 2
    result = jax_runs["data_parallel"][method]
    assert result["moved"]["max_abs_change"] > 1e-2, result["moved"]
    assert result["data_parallel"]["max_rel_diff"] <= RTOL, (method, result["data_parallel"])
    assert (result["reference_logs"].pop("devices"),
            result["data_parallel_logs"].pop("devices")) == (1, 2)
    for term, value in result["reference_logs"].items():
        assert result["data_parallel_logs"][term] == pytest.approx(value, rel=1e-6), term


def test_byot_train_backend_jax_runs_the_tf_data_pipeline_and_resumes(jax_runs):
    result = jax_runs["train"]
    check_interrupted_run(result, "jax", replicas=2)  # data_parallel on 2 virtual devices
    # tf.distribute strategies are TensorFlow's: refused on JAX before any work.
    assert "--strategy mirrored is a tf.distribute strategy" in result["refused"]["mirrored"]
    assert result["refused_folders"] == []
