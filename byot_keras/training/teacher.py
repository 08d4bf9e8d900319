"""`TeacherDistillationModel`: classic teacher -> student knowledge distillation (Hinton
et al., 2015) into every exit of a multi-exit student, on Keras' own
`keras.distillation.Distiller`."""

from __future__ import annotations

import keras
from keras import ops

from byot_keras import losses as losses_lib
from byot_keras.backend.compile_settings import deserialize_compile_config
from byot_keras.losses.core import FRACTION, POSITIVE
from byot_keras.saving import ReadsOlderWeightFiles
from byot_keras.training.checks import CheckedInputs, assert_label_values
from byot_keras.training.schedule import num_replicas
from byot_keras.training.self_distillation import SelfDistillationModel


class _GlobalMean(keras.metrics.Mean):
    """Mean of a loss term that arrives scaled by 1 / replicas."""

    def update_state(self, values, sample_weight=None):
        return super().update_state(ops.multiply(values, num_replicas()), sample_weight)


def _logits_model(model: keras.Model, role: str) -> keras.Model:
    """A model's deepest logits as a plain functional model."""
    if isinstance(model, SelfDistillationModel):
        deepest = model.exit_names[-1]
        return keras.Model(model.network.inputs, model.network.get_layer(deepest).output,
                           name=f"{model.name}_{deepest}")
    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:
        raise ValueError(
            f"The {role} must be a zoo model or a model with one logits output; "
            f"{model.name} has outputs {[tuple(o.shape) for o in outputs or []]}."
        )
    return model


@keras.saving.register_keras_serializable(package="byot_keras")
class TeacherDistillationModel(CheckedInputs, ReadsOlderWeightFiles,
                               keras.distillation.Distiller):
    """A pretrained teacher taught to every exit of a multi-exit student.

    Per exit i: `(1 - alpha) * CE(z_i, y) + alpha * T^2 * KL(softmax_T(z_t) ||
    softmax_T(z_i))` (`byot_keras.losses.hinton_kd_loss`); the teacher is frozen. This
    is `keras.distillation.Distiller` with a `LogitsDistillation` per exit, so Keras
    keeps the loss bookkeeping, including the per-replica scaling under tf.distribute.

    Args:
        teacher: a trained zoo model (its deepest exit teaches) or any model with one
            logits output.
        student: a zoo model (`SelfDistillationModel`); every exit learns.
        alpha: weight of the distillation term (the CE gets `1 - alpha`).
        temperature: T.

    `compile(optimizer=...)` sets the per-exit CE losses and accuracies itself. After
    `fit`, `student` is the trained zoo model, ready to save or export. `fit`,
    `evaluate` and `predict` check images and labels first, as the zoo models do.

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> teacher = zoo.alexnet(num_classes=10, width_multiplier=0.25)  # yours: trained
        >>> student = zoo.alexnet_byot(num_classes=10, width_multiplier=0.125)
        >>> kd = TeacherDistillationModel(teacher, student, alpha=0.5, temperature=4.0)
        >>> kd.compile(optimizer="sgd")
        >>> logs = kd.fit(np.zeros((4, 32, 32, 3)), np.arange(4), verbose=0)
        >>> "exit_3_accuracy" in logs.history
        True
    """

    def __init__(self, teacher: keras.Model, student: SelfDistillationModel,
                 alpha: float = 0.5, temperature: float = 4.0, **kwargs):
        for key in ("distillation_losses", "distillation_loss_weights", "student_loss_weight"):
            kwargs.pop(key, None)  # set from alpha and temperature (from_config)
        if not isinstance(student, SelfDistillationModel):
            raise ValueError(
                "The student must be a zoo model (a SelfDistillationModel); got "
                f"{type(student).__name__}."
            )
        FRACTION.check("alpha", alpha, "TeacherDistillationModel option")
        POSITIVE.check("temperature", temperature, "TeacherDistillationModel option")
        teacher_logits = _logits_model(teacher, "teacher")
        exit_names = student.exit_names
        # The teacher's logits once per student exit, so the two output dicts match.
        repeated = {name: keras.layers.Identity(name=f"teacher_for_{name}")(
            teacher_logits.outputs[0]) for name in exit_names}
        teacher_per_exit = keras.Model(teacher_logits.inputs, repeated,
                                       name=f"{teacher.name}_per_exit")
        student_exits = keras.Model(
            student.network.inputs,
            {name: student.network.get_layer(name).output for name in exit_names},
            name=f"{student.name}_exits",
        )
        super().__init__(
            teacher=teacher_per_exit,
            student=student_exits,
            distillation_losses=keras.distillation.LogitsDistillation(
                temperature=temperature,
                loss={name: keras.losses.KLDivergence() for name in exit_names},
            ),
            student_loss_weight=1.0 - alpha,
            **kwargs,
        )
        # Not tracked: Keras tracks (and saves) the layers through teacher/student above;
        # the student's own training-only layers (BYOT adaptation) take no part here.
        object.__setattr__(self, "teacher_model", teacher)
        object.__setattr__(self, "student_model", student)
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.exit_names = list(exit_names)
        # The Distiller logs its terms after Keras' per-replica loss scaling, so under N
        # replicas they would read 1/N of the global batch's value; these trackers undo it.
        self.student_loss_tracker = _GlobalMean(name="student_loss")
        self.distillation_loss_tracker = _GlobalMean(name="distillation_loss")
        self.total_loss_tracker = _GlobalMean(name="total_loss")
        self.exit_accuracy = [keras.metrics.SparseCategoricalAccuracy(name=f"{name}_accuracy")
                              for name in exit_names]
        self.ensemble_accuracy = keras.metrics.SparseCategoricalAccuracy(
            name="ensemble_accuracy")

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        if loss is not None:
            raise ValueError(
                "TeacherDistillationModel sets the per-exit cross-entropy itself; call "
                "compile(optimizer=...) without loss=."
            )
        loss = {name: keras.losses.SparseCategoricalCrossentropy(from_logits=True)
                for name in self.exit_names}
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
        # Keras 3.15's Distiller stores the loss dict as a tracked attribute (a
        # TrackedDict), which keras.tree then refuses to pair with the plain dicts of
        # labels and predictions; a plain dict, set past the tracker, pairs fine.
        object.__setattr__(self, "_student_loss", dict(self._student_loss))

    def compile_from_config(self, config):
        # Keras skips compile() on load when compile is overridden; ours is safe to call.
        # The optimizer as its public class (a file saved on torch: byot_keras.backend).
        config = deserialize_compile_config(config)
        self.compile(optimizer=config["optimizer"])
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _per_exit(self, y):
        # One label tensor serves every exit.
        if isinstance(y, dict):
            return y
        return {name: y for name in self.exit_names}

    def _expected_image_shape(self) -> tuple | None:
        return tuple(self.student.inputs[0].shape[1:])

    def _label_classes(self) -> int:
        return self._num_classes()

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y is not None:
            y = assert_label_values(y, self._num_classes())
            y = self._per_exit(losses_lib.sparse_labels(y, self._num_classes()))
        return super().compute_loss(x, y, y_pred, sample_weight, training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels = losses_lib.sparse_labels(y, self._num_classes())
        logits = [y_pred[name] for name in self.exit_names]
        for metric, exit_logits in zip(self.exit_accuracy, logits):
            metric.update_state(labels, exit_logits, sample_weight=sample_weight)
        self.ensemble_accuracy.update_state(labels, ops.mean(ops.stack(logits), axis=0),
                                            sample_weight=sample_weight)
        return self.get_metrics_result()

    def _num_classes(self) -> int:
        return int(self.student.outputs[0].shape[-1])

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "teacher": keras.saving.serialize_keras_object(self.teacher_model),
            "student": keras.saving.serialize_keras_object(self.student_model),
            "alpha": self.alpha,
            "temperature": self.temperature,
        }

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        for key in ("teacher", "student"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
