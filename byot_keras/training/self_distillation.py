"""The training model: a multi-exit network plus the self-distillation objective.

`SelfDistillationModel` only wires the objective (byot_keras.losses) to the network's
exits. It hooks `compute_loss`/`compute_metrics` rather than writing a `train_step`:
those two hooks are called by every backend's `fit`/`evaluate`, so the Keras training
loop (callbacks, distribution, `steps_per_execution`) stays untouched.
"""

from __future__ import annotations

import json

import keras
from keras import ops

from byot_keras import losses as losses_lib
from byot_keras.backend.compile_settings import deserialize_compile_config
from byot_keras.networks.structure import ExitInfo, forms_a_chain, structure_from_layer_names
from byot_keras.training.checks import assert_label_values, pin_image_shape
from byot_keras.training.schedule import (
    ScheduledModel,
    cross_replica_sum,
    per_replica_share,
)


def as_float32(outputs: dict) -> dict:
    """The outputs in float32 (a mixed_float16 / mixed_bfloat16 network computes in
    half precision; softmax, cross-entropy and the distillation terms are not)."""
    half = ("float16", "bfloat16")
    return {name: ops.cast(value, "float32")
            if keras.backend.standardize_dtype(value.dtype) in half else value
            for name, value in outputs.items()}


def resolve_objective(objective=None, method: str | None = None, options: dict | None = None
                      ) -> losses_lib.Objective:
    """The loss object from the ways users give it.

    `objective`: a loss object (`byot_keras.losses.BYOTLoss(...)`, `MSDLoss(...)`, ...),
    a preset name of `method`, a dict of `method`'s options (may hold "preset"), or None
    (the method's default preset). `method`: a name from `losses.list_methods()`
    (default "byot"). `options`: keyword overrides of the method's options.
    """
    options = dict(options or {})
    if isinstance(objective, losses_lib.Objective):
        if method not in (None, objective.method) or options:
            raise ValueError(
                f"Got the loss object {objective!r} together with method={method!r} / "
                f"options {sorted(options)}: give the loss object alone, or a method name "
                "with its options."
            )
        return objective
    if isinstance(objective, str):
        options["preset"] = objective
    elif isinstance(objective, dict):
        options = {**objective, **options}
    elif objective is not None:
        raise TypeError(
            "objective must be a loss object from byot_keras.losses, a preset name, or a "
            f"dict of options; got {type(objective).__name__}."
        )
    preset = options.pop("preset", None)
    return losses_lib.get_objective(method or "byot", preset, **options)


@keras.saving.register_keras_serializable(package="byot_keras")
class SelfDistillationModel(ScheduledModel):
    """Trains every exit of a multi-exit network at once with a self-distillation loss.

    Args:
        network: a functional model whose outputs are a dict with `exit_1..exit_N`
            (logits, deepest last) and `feature_1..feature_N` (pooled features).
        method: the self-distillation method, one of `byot_keras.losses.list_methods()`
            (default "byot").
        objective: a preset name of the method, a dict of its options, or a loss object
            (`byot_keras.losses.BYOTLoss("paper")`, `MSDLoss(alpha=0.2)`, ...).
        **options: the method's options (e.g. `temperature=4.0`); unknown ones raise and
            list the valid ones. Keras' own `name`, `trainable` and `dtype` pass through.
        input_normalization: what the training data pipeline did to pixel values,
            `{"scale", "mean", "std"}` (see `byot_keras.normalization`); saved with the
            model so that `byot_keras.export` builds it into the exported files. None:
            unknown (byot-train and byot-quickstart set it).

    Methods with a schedule (`msd`'s feature weight, `sdn`'s ramp) read the epoch from
    `fit`, and the run's length from `fit(epochs=...)` unless `total_epochs` is set; the
    epoch is saved with the model, so resumed training continues the schedule.

    `model(x)` and `predict` return `{"exit_k": logits}` for every exit; with
    `training=True` the features are returned too, for the loss. `fit` logs the total
    and the method's per-term losses (for byot `ce_loss`, `kd_loss`, `feature_loss`),
    `exit_k_accuracy` and `ensemble_accuracy` (mean of the exits' logits). `evaluate`
    drops the distillation terms. Labels are class ids of shape (batch,) or (batch, 1)
    (whole-number floats too) or one-hot / soft labels (batch, num_classes), in any order
    across calls; `fit`, `evaluate` and `predict` check images and labels before they
    start (byot_keras.training.checks).

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> model = zoo.alexnet_byot(num_classes=10, width_multiplier=0.125)
        >>> model.compile(optimizer="sgd")
        >>> logs = model.fit(np.zeros((4, 32, 32, 3)), np.arange(4), verbose=0)
        >>> sorted(logs.history)[:3]
        ['ce_loss', 'ensemble_accuracy', 'exit_1_accuracy']
    """

    def __init__(self, network: keras.Model, objective=None, method: str | None = None,
                 input_normalization: dict | None = None, exit_structure=None,
                 builder: dict | None = None, **kwargs):
        model_kwargs = {k: kwargs.pop(k) for k in ("name", "trainable", "dtype") if k in kwargs}
        super().__init__(**model_kwargs)
        output_names = sorted(network.output) if isinstance(network.output, dict) else []
        exit_names = [n for n in output_names if n.startswith("exit_")]
        num_exits = len(exit_names)
        expected = {f"{kind}_{k}" for kind in ("exit", "feature")
                    for k in range(1, num_exits + 1)}
        if num_exits < 1 or set(output_names) != expected:
            raise ValueError(
                "SelfDistillationModel needs a network whose outputs are a dict with keys "
                "exit_1..exit_N and feature_1..feature_N (build one with byot_keras.zoo); "
                f"got outputs {output_names or type(network.output).__name__}."
            )
        self.network = network
        # How the network was built (byot_keras.zoo) and its exits' structure
        # (byot_keras.networks.structure); None for models saved before they were kept.
        # Kept as JSON text: Keras would wrap dict and list attributes for tracking.
        self._builder_json = None if builder is None else json.dumps(builder)
        self._exit_structure_json = None if exit_structure is None else json.dumps(
            [e if isinstance(e, dict) else e.to_dict() for e in exit_structure])
        self.input_normalization = input_normalization
        self.objective = resolve_objective(objective, method, kwargs)
        if isinstance(self.objective, losses_lib.CohortObjective):
            raise ValueError(
                f"'{self.objective.method}' trains a cohort of networks: use "
                "byot_keras.training.CohortModel. Methods for one multi-exit network: "
                f"{', '.join(losses_lib.list_methods())}."
            )
        self.exit_names = [f"exit_{k}" for k in range(1, num_exits + 1)]
        self.num_classes = int(network.output[self.exit_names[-1]].shape[-1])

        self.objective.validate(num_exits)  # bad options fail now, not mid-fit
        self._feature_exits = self.objective.feature_exits(num_exits)
        deepest_dim = int(network.output[f"feature_{num_exits}"].shape[-1])
        self.adapters = []
        for k in self._feature_exits:
            dim = int(network.output[f"feature_{k}"].shape[-1])
            if self.objective.adaptation:
                adapter = keras.layers.Dense(deepest_dim, name=f"adaptation_{k}")
                adapter.build((None, dim))
                self.adapters.append(adapter)
            elif dim != deepest_dim:
                raise ValueError(
                    f"The feature term compares exit {k}'s feature ({dim} values) with the "
                    f"deepest exit's ({deepest_dim}); use adaptation=True or heads of the "
                    "deepest width."
                )

        self.track_schedule(self.objective)
        self.term_trackers = [keras.metrics.Mean(name=f"{t}_loss")
                              for t in self.objective.TERMS]
        self.exit_accuracy = [
            keras.metrics.SparseCategoricalAccuracy(name=f"{name}_accuracy")
            for name in self.exit_names
        ]
        self.ensemble_accuracy = keras.metrics.SparseCategoricalAccuracy(
            name="ensemble_accuracy"
        )
        self.built = True

    @property
    def num_exits(self) -> int:
        return len(self.exit_names)

    @property
    def exit_structure(self) -> tuple[ExitInfo, ...]:
        """Per exit: the trunk section it follows, its feature width, and whether it is
        a link of the early-exit chain or a parallel branch (ONE)."""
        if self._exit_structure_json is None:  # saved before the structure was recorded
            return structure_from_layer_names(self.network)
        return tuple(ExitInfo.from_dict(e) for e in json.loads(self._exit_structure_json))

    @property
    def builder(self) -> dict | None:
        """How the zoo built the model: {"name", "args", "kwargs", "num_classes",
        "input_shape"} (None for models saved before it was recorded)."""
        return None if self._builder_json is None else json.loads(self._builder_json)

    @property
    def exits_form_a_chain(self) -> bool:
        """Whether an early-exit cascade runs through the exits in order (not for ONE's
        side-by-side branches)."""
        return forms_a_chain(self.exit_structure)

    @property
    def paired_batches(self) -> bool:
        """Whether training needs class-paired batches (CS-KD)."""
        return bool(self.objective.PAIRED_BATCHES)

    @property
    def input_normalization(self) -> dict | None:
        """The training data's normalisation (`byot_keras.normalization`), or None."""
        if self._input_normalization is None:
            return None
        return {key: list(v) if isinstance(v, list) else v
                for key, v in self._input_normalization}

    @input_normalization.setter
    def input_normalization(self, value) -> None:
        from byot_keras.normalization import check_normalization

        channels = int(self.network.inputs[0].shape[-1] or 3)
        # Kept as a tuple of items: Keras would wrap a dict attribute for tracking.
        checked = check_normalization(value, channels, where="input_normalization")
        self._input_normalization = None if checked is None else tuple(checked.items())

    def _expected_image_shape(self) -> tuple | None:
        if len(self.network.inputs) != 1:
            return None
        return tuple(self.network.inputs[0].shape[1:])

    def _label_classes(self) -> int:
        return self.num_classes

    def call(self, inputs, training=None):
        expected = self._expected_image_shape()
        if expected is not None and None not in expected:
            inputs = pin_image_shape(inputs, expected, self.name)
        outputs = self.network(inputs, training=training)
        if training:
            return outputs
        return {name: outputs[name] for name in self.exit_names}

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        if loss is not None or metrics is not None:
            raise ValueError(
                "SelfDistillationModel computes its loss and metrics itself (set the loss "
                "with objective=..., e.g. zoo.resnet18_byot(objective='paper')); call "
                "compile(optimizer=...) without loss= and metrics=."
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        # Keras skips compile() on load when compile is overridden; ours is safe to call.
        # jit_compile goes back to this backend's default (byot_keras.backend).
        self.compile(**deserialize_compile_config(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y is None:
            raise ValueError("SelfDistillationModel needs labels: fit/evaluate on (x, y).")
        y = assert_label_values(y, self.num_classes)
        if training and self.adapters:
            y_pred = dict(y_pred)
            for k, adapter in zip(self._feature_exits, self.adapters):
                y_pred[f"feature_{k}"] = adapter(y_pred[f"feature_{k}"])
        y_pred = as_float32(y_pred)  # mixed precision: the loss is computed in float32
        terms = self.objective.terms(y, y_pred, sample_weight, training=training,
                                     cross_replica_sum=cross_replica_sum, **self.progress())
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
        y_pred = as_float32(y_pred)
        logits = [y_pred[name] for name in self.exit_names]
        for metric, exit_logits in zip(self.exit_accuracy, logits):
            metric.update_state(labels, exit_logits, sample_weight=sample_weight)
        self.ensemble_accuracy.update_state(labels, ops.mean(ops.stack(logits), axis=0),
                                            sample_weight=sample_weight)
        return self.get_metrics_result()

    def exit_model(self, exit) -> keras.Model:
        """A plain Keras model from the input to one exit's logits, holding only the
        layers that exit needs (what gets deployed). `exit` is 1..N or "exit_k"."""
        name = self.exit_name(exit)
        return keras.Model(self.network.inputs, self.network.get_layer(name).output,
                           name=f"{self.name}_{name}")

    def exit_name(self, exit) -> str:
        """The name ("exit_k") of exit `exit`, given as 1..N or "exit_k"; else ValueError."""
        if isinstance(exit, str) and exit in self.exit_names:
            return exit
        if isinstance(exit, int) and not isinstance(exit, bool) and 1 <= exit <= self.num_exits:
            return f"exit_{exit}"
        raise ValueError(
            f"Exit {exit!r} does not exist: this model has exits 1..{self.num_exits} "
            f"({', '.join(self.exit_names)})."
        )

    def exit_costs(self) -> list[dict]:
        """Per exit, for one image: `params` / `trainable_params` of its deployable
        sub-network, its multiply-accumulates `macs` and `flops` (2 x MACs), and
        `cascade_macs`: what an early-exit cascade has spent when it answers at this exit
        (the trunk up to here plus the heads of this and every earlier exit).
        See `byot_keras.costs` for what is counted."""
        from byot_keras.costs import count_macs

        costs = []
        for k, name in enumerate(self.exit_names, start=1):
            sub = self.exit_model(name)
            macs = count_macs(sub)
            cascade = keras.Model(
                self.network.inputs,
                [self.network.get_layer(n).output for n in self.exit_names[:k]],
            )
            costs.append({
                "exit": name,
                "params": int(sub.count_params()),
                "trainable_params": int(sum(int(ops.size(w)) for w in sub.trainable_weights)),
                "macs": macs,
                "flops": 2 * macs,
                "cascade_macs": count_macs(cascade),
            })
        return costs

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "network": keras.saving.serialize_keras_object(self.network),
            "objective": keras.saving.serialize_keras_object(self.objective),
            "exit_structure": [info.to_dict() for info in self.exit_structure],
            "builder": self.builder,
            "input_normalization": self.input_normalization,
        })
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(
            config["network"], custom_objects=custom_objects
        )
        config["objective"] = keras.saving.deserialize_keras_object(
            config["objective"], custom_objects=custom_objects
        )
        return cls(**config)
