"""Where a run computes: the `tf.distribute` strategy, this worker's role, and how the
global batch splits over the replicas. Create the strategy before any other TensorFlow
work (collective ops are configured at start-up)."""

from __future__ import annotations

import json
import os

import keras


def select_strategy(name: str, devices=(), tpu: str | None = None):
    """The `tf.distribute` strategy called `name` (see `config.STRATEGIES`).

    "mirrored": all local GPUs (or `devices`, e.g. ["/cpu:0", "/cpu:1"]);
    "multiworker": `MultiWorkerMirroredStrategy`, the cluster from `TF_CONFIG`;
    "tpu": `TPUStrategy` on the TPU named `tpu` (default: the local/Cloud TPU VM);
    "data_parallel": `keras.distribution.DataParallel` over `devices` (default all), on
    the JAX backend (byot_keras.backend.distribution).
    Create it before any other TensorFlow work (collective ops are configured at start-up).
    """
    if name == "data_parallel":  # JAX: keras.distribution, not tf.distribute
        from byot_keras.backend.distribution import DataParallelRun

        return DataParallelRun(devices)
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(list(devices) or None)
    if name == "multiworker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except Exception as error:
            raise ValueError(f"--strategy tpu: no TPU could be reached (tpu={tpu!r}): "
                             f"{error}") from error
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown strategy '{name}'. Valid: default, mirrored, multiworker, tpu, "
                     "data_parallel.")


def _check_tf_config() -> dict:
    text = os.environ.get("TF_CONFIG")
    example = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    if not text:
        raise ValueError("--strategy multiworker needs the TF_CONFIG environment variable on "
                         f"every worker, e.g. TF_CONFIG='{example}' (index 1 on the second).")
    try:
        tf_config = json.loads(text)
        workers = tf_config["cluster"]["worker"]
        task = tf_config["task"]
        int(task["index"])
        str(task["type"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"TF_CONFIG is not valid ({error}); expected e.g. '{example}'.") from error
    if not isinstance(workers, list) or not workers:
        raise ValueError(f"TF_CONFIG lists no workers; expected e.g. '{example}'.")
    return tf_config


def worker_role(strategy) -> tuple[bool, str]:
    """(is this the chief?, a name for this worker). Single-process strategies: chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    task_id = getattr(resolver, "task_id", None)
    if not task_type or task_type in ("chief", "tpu_worker") or resolver is None:
        return True, "chief"
    cluster = resolver.cluster_spec().as_dict()
    is_chief = task_type == "worker" and task_id == 0 and "chief" not in cluster
    return is_chief, f"{task_type}_{task_id}"


def check_global_batch(batch_size: int, replicas: int) -> int:
    """The per-replica batch; the global `batch_size` must split evenly."""
    if batch_size % replicas:
        raise ValueError(
            f"--batch_size {batch_size} (the global batch) does not split evenly over "
            f"{replicas} replicas; use a multiple of {replicas}, e.g. "
            f"{max(replicas, batch_size // replicas * replicas)}.")
    return batch_size // replicas


def work_around_keras_multiworker_bugs(model: keras.Model) -> None:
    """Two Keras 3.15 bugs break `fit` under MultiWorkerMirroredStrategy
    (keras-team/keras#20585, open; tensorflow/tensorflow#72388); both are patched on this
    model instance only:

    1. `fit`/`evaluate` first average one batch across workers with
       `strategy.reduce("MEAN", (x, y))`, which fails for a tuple of per-replica values,
       only to build the model, metrics and optimizer symbolically. Ours are built
       already (the optimizer explicitly), so the step is skipped.
    2. Each step's logs are averaged with `strategy.reduce("MEAN", v, axis=0)`, which
       fails for the scalar metric values. The steps return them with shape (1,); the
       values are already synchronised, so the mean across workers is the value. (Epoch
       logs are read from the metrics themselves and stay scalars.)
    """
    from keras import ops

    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None

    def with_vector_logs(step):
        def wrapped(data):
            return {name: ops.reshape(value, (1,)) for name, value in step(data).items()}
        return wrapped

    model.train_step = with_vector_logs(model.train_step)
    model.test_step = with_vector_logs(model.test_step)
