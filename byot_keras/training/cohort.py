"""`CohortModel`: several networks, possibly of different architectures, trained together
in one `fit`, each taught by the others (byot_keras.losses.cohort)."""

from __future__ import annotations

import keras
from keras import ops

from byot_keras import losses as losses_lib
from byot_keras.backend.compile_settings import deserialize_compile_config
from byot_keras.training.checks import assert_label_values, pin_image_shape
from byot_keras.training.schedule import ScheduledModel, cross_replica_sum, per_replica_share


def _member_network(member: keras.Model, index: int) -> keras.Model:
    """The functional model that gives a member's logits: a single-exit zoo model's
    network, or any model with one logits output."""
    from byot_keras.training.self_distillation import SelfDistillationModel

    if isinstance(member, SelfDistillationModel):
        if member.num_exits != 1:
            raise ValueError(
                f"Cohort member {index} ({member.name}) has {member.num_exits} exits; members "
                "are single-exit networks. Build them with the plain registry names (e.g. "
                "zoo.create_model('alexnet')) or with method='ce'."
            )
        return keras.Model(member.network.inputs, member.network.get_layer("exit_1").output,
                           name=member.name)
    outputs = member.outputs if hasattr(member, "outputs") else None
    if not outputs or len(outputs) != 1 or len(outputs[0].shape) != 2:
        raise ValueError(
            f"Cohort member {index} ({member.name}) must output one (batch, classes) logits "
            f"tensor; got outputs {[tuple(o.shape) for o in outputs or []]}."
        )
    return member


@keras.saving.register_keras_serializable(package="byot_keras")
class CohortModel(ScheduledModel):
    """Trains K networks together; the cohort teaches each member.

    Args:
        members: K >= 2 models on the same input: single-exit zoo models (e.g.
            `zoo.create_model("alexnet", num_classes=100)`) or any Keras model with one
            logits output.
        method: "multistructure" (default; the cohort's ensemble teaches every member,
            distillation on in growing periodic windows) or "dml" (deep mutual learning).
        objective: a preset name of the method, a dict of its options, or a loss object
            from `byot_keras.losses`.
        **options: the method's options (e.g. `on_epochs=5`, `max_weight=2.0`).

    `model(x)` returns `{"member_k": logits}`. `fit` logs `ce_loss`, `kd_loss`,
    `member_k_accuracy` and `ensemble_accuracy` (mean of the members' logits); `evaluate`
    drops the distillation term. `member(k)` is member k's network, to save or export like
    any other model.

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> nets = [zoo.create_model(n, num_classes=10, width_multiplier=0.125)
        ...         for n in ("alexnet", "resnet18")]
        >>> cohort = CohortModel(nets, method="dml")
        >>> cohort.compile(optimizer="sgd")
        >>> logs = cohort.fit(np.zeros((4, 32, 32, 3)), np.arange(4), verbose=0)
        >>> sorted(logs.history)[:3]
        ['ce_loss', 'ensemble_accuracy', 'kd_loss']
    """

    def __init__(self, members, method: str | None = None, objective=None, **kwargs):
        model_kwargs = {k: kwargs.pop(k) for k in ("name", "trainable", "dtype") if k in kwargs}
        super().__init__(**model_kwargs)
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"A cohort needs at least two members; got {len(members)}.")
        self.members = members
        self.networks = [_member_network(m, k) for k, m in enumerate(members, start=1)]
        shapes = {tuple(n.inputs[0].shape[1:]) for n in self.networks}
        classes = {int(n.outputs[0].shape[-1]) for n in self.networks}
        if len(shapes) != 1 or len(classes) != 1:
            raise ValueError(
                f"Cohort members must share the input shape and class count; got input "
                f"shapes {sorted(shapes)} and class counts {sorted(classes)}."
            )
        self.num_classes = classes.pop()
        self.objective = _resolve_cohort_objective(objective, method, kwargs)
        self.member_names = [f"member_{k}" for k in range(1, len(members) + 1)]
        self.track_schedule(self.objective)
        self.term_trackers = [keras.metrics.Mean(name=f"{t}_loss")
                              for t in self.objective.TERMS]
        self.member_accuracy = [keras.metrics.SparseCategoricalAccuracy(name=f"{n}_accuracy")
                                for n in self.member_names]
        self.ensemble_accuracy = keras.metrics.SparseCategoricalAccuracy(
            name="ensemble_accuracy")
        self.built = True

    def member(self, index: int) -> keras.Model:
        """Member `index` (1..K) as it was given, e.g. to save or export it."""
        if isinstance(index, bool) or not isinstance(index, int) or not (
                1 <= index <= len(self.members)):
            raise ValueError(
                f"Member {index!r} does not exist: this cohort has members "
                f"1..{len(self.members)}."
            )
        return self.members[index - 1]

    def _expected_image_shape(self) -> tuple | None:
        return tuple(self.networks[0].inputs[0].shape[1:])

    def _label_classes(self) -> int:
        return self.num_classes

    def call(self, inputs, training=None):
        expected = self._expected_image_shape()
        if None not in expected:
            inputs = pin_image_shape(inputs, expected, self.name)
        return {name: network(inputs, training=training)
                for name, network in zip(self.member_names, self.networks)}

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        if loss is not None or metrics is not None:
            raise ValueError(
                "CohortModel computes its loss and metrics itself (choose the loss with "
                "method=... and its options); call compile(optimizer=...) without loss= and "
                "metrics=."
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        # jit_compile goes back to this backend's default (byot_keras.backend).
        self.compile(**deserialize_compile_config(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y is None:
            raise ValueError("CohortModel needs labels: fit/evaluate on (x, y).")
        y = assert_label_values(y, self.num_classes)
        logits = [y_pred[name] for name in self.member_names]
        progress = self.progress() or {"epoch": 0.0, "total_epochs": 1.0}
        terms = self.objective.compute(y, logits, None, sample_weight=sample_weight,
                                       distill=training, cross_replica_sum=cross_replica_sum,
                                       **progress)
        for tracker, term in zip(self.term_trackers, self.objective.TERMS):
            tracker.update_state(terms[term])
        total = terms["loss"]
        if self.losses:
            # Added one by one: ops.sum of a list converts it through NumPy on JAX, which
            # fails on traced values (the weight-decay regularizers').
            for extra in self.losses:
                total = total + ops.cast(extra, total.dtype)
        return per_replica_share(total)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels = losses_lib.sparse_labels(y, self.num_classes)
        logits = [y_pred[name] for name in self.member_names]
        for metric, member_logits in zip(self.member_accuracy, logits):
            metric.update_state(labels, member_logits, sample_weight=sample_weight)
        self.ensemble_accuracy.update_state(labels, ops.mean(ops.stack(logits), axis=0),
                                            sample_weight=sample_weight)
        return self.get_metrics_result()

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "members": [keras.saving.serialize_keras_object(m) for m in self.members],
            "objective": keras.saving.serialize_keras_object(self.objective),
        })
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        config = dict(config)
        config["members"] = [keras.saving.deserialize_keras_object(m, custom_objects=custom_objects)
                             for m in config["members"]]
        config["objective"] = keras.saving.deserialize_keras_object(
            config["objective"], custom_objects=custom_objects)
        return cls(**config)


def _resolve_cohort_objective(objective, method, options) -> losses_lib.CohortObjective:
    from byot_keras.training.self_distillation import resolve_objective

    if method is None and not isinstance(objective, losses_lib.Objective):
        method = "multistructure"
    resolved = resolve_objective(objective, method, options)
    if not isinstance(resolved, losses_lib.CohortObjective):
        raise ValueError(
            f"CohortModel needs a cohort method ({', '.join(losses_lib.list_methods('cohort'))}); "
            f"got '{resolved.method}', which trains one multi-exit network "
            "(use SelfDistillationModel / the zoo's method= for it)."
        )
    return resolved
