"""A measurement aid, not library code: a zoo model with Keras 3's own
`BatchNormalization` in place of the zoo's `FusedBatchNormalization`
(byot_keras.networks.batch_norm), to measure what the fused kernel gives.
"""

from __future__ import annotations

import keras


def with_keras_batchnorm(model):
    """A new `SelfDistillationModel` like `model` (same method and options, same weights)
    whose network computes every batch norm with Keras' composite ops."""
    from byot_keras.networks.batch_norm import FusedBatchNormalization
    from byot_keras.training.self_distillation import SelfDistillationModel

    def clone(layer):
        if isinstance(layer, FusedBatchNormalization):
            return keras.layers.BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    network = keras.models.clone_model(model.network, clone_function=clone)
    network.set_weights(model.network.get_weights())
    return SelfDistillationModel(network, objective=model.objective)
