"""What every training model here shares: the data-parallel loss scaling and the epoch
counter that scheduled loss weights read."""

from __future__ import annotations

import inspect

import keras

from byot_keras.saving import ReadsOlderWeightFiles
from byot_keras.training.checks import CheckedInputs


def num_replicas() -> int:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.get_strategy().num_replicas_in_sync
    return 1


def per_replica_share(total):
    """Each replica returns its share of the loss; Keras sums the replicas' gradients
    (as its own losses do, which divide by the replica count)."""
    replicas = num_replicas()
    return total / replicas if replicas > 1 else total


def cross_replica_sum(value):
    """Sum of a scalar over the replicas of the current tf.distribute replica context."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            return context.all_reduce(tf.distribute.ReduceOp.SUM, value)
    return value


class EpochClock(keras.callbacks.Callback):
    """Tells a model which epoch of how many is running, for scheduled loss weights
    (MSD's beta, SDN's ramp, the cohort's distillation windows). `on_epoch_begin` gets
    the absolute epoch, so resumed runs (`initial_epoch`, BackupAndRestore) continue the
    schedule where it stopped."""

    def __init__(self, model: ScheduledModel, total_epochs: int):
        super().__init__()
        self._target = model
        self._total = total_epochs

    def on_train_begin(self, logs=None):
        self._target.schedule_total_epochs.assign(float(self._total))

    def on_epoch_begin(self, epoch, logs=None):
        self._target.schedule_epoch.assign(float(epoch))


class ScheduledModel(CheckedInputs, ReadsOlderWeightFiles, keras.Model):
    """A keras.Model whose loss may depend on the epoch, and whose fit / evaluate /
    predict check their data first (:class:`byot_keras.training.checks.CheckedInputs`)
    and whose `load_weights` also reads files of older versions
    (:func:`byot_keras.saving.load_weights`).

    `track_schedule(objective)` (in `__init__`) adds two saved, non-trainable variables,
    `schedule_epoch` and `schedule_total_epochs`, when the objective has a schedule;
    `fit` then adds an :class:`EpochClock`, and `progress()` gives the loss its inputs.
    """

    _scheduled = False

    def track_schedule(self, objective) -> None:
        self._scheduled = bool(objective.scheduled)
        if self._scheduled:
            self.schedule_epoch = self.add_weight(
                shape=(), initializer="zeros", trainable=False, name="schedule_epoch")
            self.schedule_total_epochs = self.add_weight(
                shape=(), initializer="ones", trainable=False, name="schedule_total_epochs")

    def progress(self) -> dict:
        if not self._scheduled:
            return {}
        return {"epoch": self.schedule_epoch, "total_epochs": self.schedule_total_epochs}

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`; with a scheduled loss it also keeps the model's epoch counter
        in step with the run."""
        if not self._scheduled:
            return super().fit(*args, **kwargs)
        bound = inspect.signature(keras.Model.fit).bind(self, *args, **kwargs)
        bound.apply_defaults()
        clock = EpochClock(self, bound.arguments["epochs"])
        callbacks = bound.arguments["callbacks"]
        if isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks.append(clock)
        else:
            callbacks = [*(callbacks or []), clock]
        bound.arguments["callbacks"] = callbacks
        return super().fit(*bound.args[1:], **bound.kwargs)
