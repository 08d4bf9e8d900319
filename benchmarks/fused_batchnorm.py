"""A measurement aid, not library code: the zoo's networks with every 4-D batch norm
computed by TensorFlow's fused kernel (`FusedBatchNormV3`, which oneDNN implements on
CPU) instead of Keras 3's composite of separate ops.

The profiles show Keras 3's `BatchNormalization` (moments, then normalisation, as
separate Mul/Sub/Mean/Tile ops forward and backward) among the largest costs of a
training step on CPU, in the backbone and even more in the exits' heads. The benchmark
times the same models with this layer to show what a fused batch norm in the zoo would
give; `fused_matches_keras` checks that it computes the same thing.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="byot_benchmarks")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` (channels-last, 4-D inputs) through
    `tf.compat.v1.nn.fused_batch_norm`; same weights, outputs and statistics updates."""

    def call(self, inputs, training=None, mask=None):
        import tensorflow as tf

        if training and self.trainable:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
            # The fused kernel returns the unbiased batch variance; Keras keeps the
            # biased one in its moving average.
            count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], variance.dtype)
            variance = variance * (count - 1.0) / count
            self.moving_mean.assign(self.moving_mean * self.momentum
                                    + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum
                                        + variance * (1.0 - self.momentum))
            return outputs
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma, self.beta, mean=self.moving_mean,
            variance=self.moving_variance, epsilon=self.epsilon, is_training=False)
        return outputs


def _fusable(layer) -> bool:
    return (type(layer) is keras.layers.BatchNormalization and layer.axis in (-1, 3)
            and len(layer.input.shape) == 4 and layer.center and layer.scale
            and not layer.synchronized)


def with_fused_batchnorm(model):
    """A new `SelfDistillationModel` like `model` (same method and options) whose
    network uses :class:`FusedBatchNormalization` for every 4-D batch norm."""
    from byot_keras.training.self_distillation import SelfDistillationModel

    def clone(layer):
        if _fusable(layer):
            return FusedBatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    network = keras.models.clone_model(model.network, clone_function=clone)
    network.set_weights(model.network.get_weights())
    return SelfDistillationModel(network, objective=model.objective)


def fused_matches_keras(seed: int = 0, atol: float = 1e-4) -> bool:
    """Whether the fused layer gives Keras' outputs and moving statistics after a
    training call, and Keras' inference outputs."""
    import numpy as np

    x = np.random.default_rng(seed).normal(2.0, 3.0, size=(8, 5, 5, 6)).astype("float32")
    reference = keras.layers.BatchNormalization(momentum=0.9)
    fused = FusedBatchNormalization(momentum=0.9)
    reference.build(x.shape)
    fused.build(x.shape)
    outputs = [layer(x, training=True) for layer in (reference, fused)]
    same = np.allclose(outputs[0], outputs[1], atol=atol)
    for name in ("moving_mean", "moving_variance"):
        same &= np.allclose(getattr(reference, name), getattr(fused, name), atol=atol)
    inference = [layer(x, training=False) for layer in (reference, fused)]
    return bool(same and np.allclose(inference[0], inference[1], atol=atol))
