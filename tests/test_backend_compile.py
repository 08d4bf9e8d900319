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
