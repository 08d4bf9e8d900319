"""Batch normalization through TensorFlow's fused kernel.

Keras 3's `BatchNormalization` computes a training step's batch norm as a composite of
separate ops (moments, then the normalisation; their gradients likewise). On CPU these
memory-bound ops were the largest single cost of a training step after the convolutions
(benchmarks/what_we_tried.md). `FusedBatchNormalization` is the same layer, same weights,
same outputs and the same moving-average updates, whose training step runs TensorFlow's
`FusedBatchNormV3` (a oneDNN kernel on CPU) forward and backward. Anything the fused
kernel does not cover (another backend, float64 or half-precision inputs, not 4-D
channels-last, inference) takes Keras' own path.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(4, 3, 3, 2)).astype("float32")
    >>> fused, plain = FusedBatchNormalization(), keras.layers.BatchNormalization()
    >>> bool(np.allclose(fused(x, training=True), plain(x, training=True), atol=1e-5))
    True
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="byot_keras")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training step uses the fused kernel."""

    def _fusable(self, inputs) -> bool:
        return (keras.backend.backend() == "tensorflow" and self.axis in (-1, 3)
                and len(inputs.shape) == 4 and self.center and self.scale
                and not self.synchronized
                and keras.backend.standardize_dtype(inputs.dtype) == "float32")

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or not self._fusable(inputs):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
        # The kernel returns the unbiased batch variance; Keras' moving average (and so
        # this layer's) keeps the biased one.
        count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], variance.dtype)
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum
                                + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum
                                    + variance * (1.0 - self.momentum))
        return outputs
