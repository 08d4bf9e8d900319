"""A `.keras` file carries Keras' resolved `jit_compile` (True when saved on JAX); the
training models compile a loaded file with this backend's default instead
(byot_keras.backend.compile_settings), so TensorFlow does not train it through XLA on CPU.
tests/test_jax_backend.py checks the same with a file really trained on JAX."""

from __future__ import annotations

import numpy as np
import pytest


def _toy():
    import keras

    from byot_keras.training import SelfDistillationModel

    inputs = keras.Input((6,))
    outputs = {}
    trunk = inputs
    for k in (1, 2):
        trunk = keras.layers.Dense(4, activation="relu", name=f"feature_{k}")(trunk)
        outputs[f"feature_{k}"] = trunk
        outputs[f"exit_{k}"] = keras.layers.Dense(3, name=f"exit_{k}")(trunk)
    return SelfDistillationModel(keras.Model(inputs, outputs))


def test_a_file_recording_jit_compile_true_loads_with_this_backends_default(tmp_path):
    """A file saved on JAX records jit_compile=True (the resolved "auto"); loaded on
    TensorFlow it must not train through XLA unless asked again."""
    import keras
    import tensorflow as tf

    from byot_keras import saving
    from byot_keras.training import CohortModel

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("with a GPU TensorFlow's default is XLA")
    members = [keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)], name=n)
               for n in ("a", "b")]
    for name, model in (("single", _toy()), ("cohort", CohortModel(members, method="dml"))):
        model.compile(optimizer="sgd", jit_compile=True)
        assert model.get_compile_config()["jit_compile"] is True
        model.save(tmp_path / f"{name}.keras")
        loaded = saving.load_model(tmp_path / f"{name}.keras")
        assert loaded.jit_compile is False, name
        loaded.fit(np.ones((4, 6), "float32"), np.arange(4) % 3, verbose=0)
        assert loaded.train_function is not None


def _as_saved_on_torch(path):
    """Rewrites the .keras file at `path` the way Keras writes it on the torch backend:
    there `keras.optimizers.SGD(...)` (Adam, ...) builds a private subclass, and the
    compile config names its module (tests/test_torch_backend.py checks a file really
    trained on torch)."""
    import json
    import zipfile

    def rewrite(value):
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        if not isinstance(value, dict):
            return value
        value = {k: rewrite(v) for k, v in value.items()}
        if value.get("class_name") in ("SGD", "Adam") and "module" in value:
            value["module"] = ("keras.src.backend.torch.optimizers.torch_"
                               + value["class_name"].lower())
        return value

    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    config["compile_config"] = rewrite(config["compile_config"])
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return config["compile_config"]


@pytest.mark.parametrize("kind", ["sgd", "adam_loss_scaled"])
def test_a_file_naming_torchs_optimizer_subclass_loads_with_the_public_class(tmp_path, kind):
    """The module a file saved on torch names does not import here (no torch, or another
    backend's optimizer step if it does): the public class is built, with the saved
    state."""
    import keras

    from byot_keras import saving
    from byot_keras.training import CohortModel

    x, y = np.ones((4, 6), "float32"), np.arange(4) % 3
    members = [keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)], name=n)
               for n in ("a", "b")]
    for name, model in (("single", _toy()), ("cohort", CohortModel(members, method="dml"))):
        if kind == "sgd":
            optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
        else:
            optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3))
        model.compile(optimizer=optimizer)
        model.fit(x, y, batch_size=2, verbose=0)
        path = tmp_path / f"{name}.keras"
        model.save(path)
        saved = _as_saved_on_torch(path)
        inner = saved["optimizer"] if kind == "sgd" else \
            saved["optimizer"]["config"]["inner_optimizer"]
        assert inner["module"].startswith("keras.src.backend.torch.optimizers."), saved
        loaded = saving.load_model(path)
        optimizer = loaded.optimizer
        if kind == "sgd":
            assert type(optimizer) is keras.optimizers.SGD, name
            assert float(optimizer.momentum) == 0.9
        else:
            assert type(optimizer) is keras.optimizers.LossScaleOptimizer, name
            assert type(optimizer.inner_optimizer) is keras.optimizers.Adam, name
        assert int(optimizer.iterations) == 2, name  # the saved state, not a fresh one
        np.testing.assert_array_equal(loaded.predict(x, verbose=0)[loaded_key(loaded)],
                                      model.predict(x, verbose=0)[loaded_key(loaded)])
        loaded.fit(x, y, batch_size=2, verbose=0)
        assert int(loaded.optimizer.iterations) == 4, name


def loaded_key(model) -> str:
    return (getattr(model, "exit_names", None) or model.member_names)[-1]
