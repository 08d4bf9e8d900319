"""The zoo's batch norm runs TensorFlow's fused kernel in training
(`byot_keras.networks.batch_norm`, the fast path), computing what Keras'
`BatchNormalization` computes: outputs, gradients and moving statistics of one layer, and
a whole network trained for a few steps either way."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks.keras_batchnorm import with_keras_batchnorm  # the zoo before the fused layer
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


def _weights_by_layer(network) -> dict:
    return {layer.name: [np.asarray(w) for w in layer.get_weights()]
            for layer in network.layers if layer.weights}


def test_weight_files_saved_with_either_batch_norm_class_load(tmp_path):
    """Keras files a .weights.h5 entry under the layer's class name, so the switch to the
    fused layer renamed every batch norm's entry; files from before must still load, by
    `model.load_weights`, `zoo.<builder>(weights=path)` and the other way round."""
    keras.utils.set_random_seed(0)
    old = with_keras_batchnorm(zoo.resnet18_byot(num_classes=10, width_multiplier=0.125))
    for variable in old.network.weights:  # distinct values, so any mix-up shows
        variable.assign(np.random.default_rng(len(variable.path)).normal(
            size=variable.shape).astype("float32"))
    old.save_weights(tmp_path / "old.weights.h5")
    old.network.save_weights(tmp_path / "old_network.weights.h5")
    expected = _weights_by_layer(old.network)

    def assert_same(network):
        loaded = _weights_by_layer(network)
        assert loaded.keys() == expected.keys()
        for name, arrays in expected.items():
            for a, b in zip(loaded[name], arrays):
                np.testing.assert_array_equal(a, b, err_msg=name)

    current = zoo.resnet18_byot(num_classes=10, width_multiplier=0.125)
    current.load_weights(tmp_path / "old.weights.h5")
    assert_same(current.network)
    assert_same(zoo.resnet18_byot(num_classes=10, width_multiplier=0.125,
                                  weights=str(tmp_path / "old_network.weights.h5")).network)
    # A file of today's layers into a model with Keras' layer (e.g. an older script).
    current.save_weights(tmp_path / "new.weights.h5")
    other = with_keras_batchnorm(zoo.resnet18_byot(num_classes=10, width_multiplier=0.125))
    other.load_weights(tmp_path / "new.weights.h5")
    assert_same(other.network)
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # the temporary copies are gone
        "new.weights.h5", "old.weights.h5", "old_network.weights.h5"]
