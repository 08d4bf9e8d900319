"""The zoo's batch norm runs TensorFlow's fused kernel in training
(`byot_keras.networks.batch_norm`, the fast path), computing what Keras'
`BatchNormalization` computes: outputs, gradients and moving statistics of one layer, and
a whole network trained for a few steps either way."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from byot_keras import zoo
from byot_keras.networks.batch_norm import FusedBatchNormalization


def one_training_call(layer, x, upstream):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(y * upstream)  # an arbitrary upstream gradient
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return y.numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("shape", [(8, 5, 5, 6), (3, 1, 1, 4)])
def test_one_layer_matches_keras_outputs_gradients_and_statistics(shape):
    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, size=shape), tf.float32)
    reference = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    fused = FusedBatchNormalization(momentum=0.9, epsilon=1e-5)
    for layer in (reference, fused):
        layer.build(shape)
        layer.set_weights([np.linspace(0.5, 1.5, shape[-1]), np.linspace(-1, 1, shape[-1]),
                           np.zeros(shape[-1]), np.ones(shape[-1])])
    upstream = tf.constant(np.random.default_rng(1).normal(size=shape), tf.float32)
    (y_ref, g_ref), (y_fused, g_fused) = (one_training_call(layer, x, upstream)
                                          for layer in (reference, fused))
    np.testing.assert_allclose(y_fused, y_ref, atol=2e-5)
    for got, want in zip(g_fused, g_ref):  # d/dx, d/dgamma, d/dbeta
        np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(getattr(fused, name).numpy(),
                                   getattr(reference, name).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused(x, training=False), reference(x, training=False),
                               atol=2e-5)


def test_float64_takes_keras_path_exactly():
    x = np.random.default_rng(1).normal(size=(4, 3, 3, 2))
    reference = keras.layers.BatchNormalization(dtype="float64")
    fused = FusedBatchNormalization(dtype="float64")
    np.testing.assert_array_equal(fused(x, training=True), reference(x, training=True))


def test_a_network_trained_either_way_ends_as_close_to_exact_as_keras(monkeypatch):
    """Two SGD steps of a small network three ways: the fused path (float32), Keras' own
    batch norm (float32) and Keras' in float64 (the reference). Fused float32 must be as
    close to the reference as Keras' float32 is: the same mathematics, other round-off."""
    calls = []
    fused_call = tf.compat.v1.nn.fused_batch_norm

    def counting(*args, **kwargs):
        calls.append(kwargs.get("is_training"))
        return fused_call(*args, **kwargs)

    keras.utils.set_random_seed(0)
    initial = zoo.resnet18_byot(num_classes=10, width_multiplier=0.125, exits=[2],
                                head="bottleneck").get_weights()

    def train(fused: bool, dtype: str):
        monkeypatch.setattr(tf.compat.v1.nn, "fused_batch_norm", counting)
        if not fused:  # the standard layer's own computation, for every batch norm
            monkeypatch.setattr(FusedBatchNormalization, "_fusable", lambda self, x: False)
        keras.config.set_floatx(dtype)
        keras.config.set_dtype_policy(dtype)
        try:
            model = zoo.resnet18_byot(num_classes=10, width_multiplier=0.125, exits=[2],
                                      head="bottleneck")
            model.set_weights([w.astype(dtype) for w in initial])  # the same start
            model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
            rng = np.random.default_rng(0)
            x = rng.normal(size=(32, 32, 32, 3)).astype(dtype)
            y = rng.integers(0, 10, size=32)
            model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)  # 2 steps
            weights = [w.numpy().astype("float64") for w in model.network.weights]
        finally:
            keras.config.set_floatx("float32")
            keras.config.set_dtype_policy("float32")
            monkeypatch.undo()
        return weights

    fast = train(True, "float32")
    assert calls and all(calls)  # the fused kernel did the training-time batch norms
    calls.clear()
    standard = train(False, "float32")
    exact = train(False, "float64")
    assert not calls

    def error(weights):
        return max(float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-2)
                   for a, b in zip(weights, exact))

    assert error(standard) < 1e-2  # float32 round-off after two steps
    assert error(fast) <= 3 * error(standard) + 1e-4, (error(fast), error(standard))


def test_saved_models_load_with_either_layer(tmp_path):
    keras.utils.set_random_seed(0)
    model = zoo.resnet18(num_classes=10, width_multiplier=0.125)
    model.save(tmp_path / "fused.keras")
    loaded = keras.saving.load_model(tmp_path / "fused.keras")
    x = np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["exit_1"],
                               model.predict(x, verbose=0)["exit_1"], atol=1e-5)
