"""Mixed precision (`byot-train --precision`): the network computes in half precision,
the variables and the loss stay float32, and the loss equals the float32 formula (NumPy)
applied to the network's own half-precision logits."""

import keras
import numpy as np
import pytest

from byot_keras import zoo
from byot_keras.train.trainer import dtype_policy


def numpy_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_half_precision_network_float32_loss(precision):
    keras.utils.set_random_seed(0)
    with dtype_policy(precision):
        model = zoo.resnet18(num_classes=5, width_multiplier=0.125, method="ce")
        model.compile(optimizer=keras.optimizers.SGD(0.01))
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    images = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
    labels = np.arange(8) % 5
    logits = model.network(images, training=False)["exit_1"]
    assert keras.backend.standardize_dtype(logits.dtype) == precision.split("_")[1]
    loss = model.evaluate(images, labels, batch_size=8, verbose=0, return_dict=True)["loss"]
    # The reference: float32 cross-entropy of the network's own (half-precision) logits.
    reference = numpy_cross_entropy(np.asarray(logits, np.float32), labels)
    assert loss == pytest.approx(reference, rel=1e-5)
    if precision == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    history = model.fit(images, labels, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
