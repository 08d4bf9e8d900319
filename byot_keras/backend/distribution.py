"""Data parallelism on JAX for byot-train: `keras.distribution.DataParallel`.

TensorFlow runs its replicas through `tf.distribute` (byot_keras.train.distribute): each
replica computes its share of the batch, so the training models divide the loss by the
replica count and sum the feature term's norm across replicas
(byot_keras.training.schedule). On JAX, `DataParallel` shards the batch over the devices
but the step stays one program over the whole batch (XLA's SPMD partitioner inserts the
collectives): the loss, its per-term logs and the gradients are the one-device ones with
no scaling (tests/test_jax_backend.py compares the weights on 2 virtual CPU devices).

Several devices on one CPU: `XLA_FLAGS=--xla_force_host_platform_device_count=2`, set
before JAX starts.
"""

from __future__ import annotations

import keras


class DataParallelRun:
    """What byot-train needs of a strategy (`scope()`, `num_replicas_in_sync`,
    `cluster_resolver`), for `keras.distribution.DataParallel` over `devices` (default:
    every local device). The distribution must be current both while the model is built
    and while it trains: byot-train runs the whole run inside `scope()`."""

    cluster_resolver = None

    def __init__(self, devices=()):
        if keras.backend.backend() != "jax":
            raise ValueError(
                f"--strategy data_parallel runs on the JAX backend (keras.distribution); "
                f"Keras runs on {keras.backend.backend()} here: use --backend jax, or "
                "--strategy mirrored on TensorFlow (Keras has no data parallelism on "
                "torch).")
        available = keras.distribution.list_devices()
        chosen = list(devices) or available
        unknown = sorted(set(chosen) - set(available))
        if unknown:
            raise ValueError(f"--devices {','.join(unknown)}: not among this machine's "
                             f"devices ({', '.join(available)}).")
        self.distribution = keras.distribution.DataParallel(devices=chosen)
        self.num_replicas_in_sync = len(chosen)

    def scope(self):
        return self.distribution.scope()
