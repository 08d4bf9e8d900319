"""Self-distillation losses, written once with `keras.ops`.

BYOT ("Be Your Own Teacher", Zhang et al., ICCV 2019, arXiv 1905.08094): every shallow
exit learns from the labels, from the deepest exit's softened prediction and from the
deepest exit's feature; the deepest exit learns from the labels only. Teacher terms are
stop-gradient. Formulas, presets and what the paper leaves open:
../shared/docs/methods.md, section 1, and the README's "Methods" section.

Two layers of API:
- :func:`byot_loss`: a pure function on lists of logits and features, every knob a
  keyword argument; returns the named terms.
- :class:`BYOTLoss`: a serializable object holding a preset plus overrides, called on
  the model's output dict like a Keras loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
from keras import ops

KD_FORMS = ("soft_ce", "kl")
FEATURE_REDUCTIONS = ("frobenius", "squared_sum", "mean_squared")
TERMS = ("ce", "kd", "feature")

PRESETS: dict[str, dict] = {
    # The official code, which produced the published numbers.
    "official": dict(
        shallow_ce_weight=0.7, deepest_ce_weight=1.0, kd_weight=0.3, temperature=3.0,
        kd_form="soft_ce", kd_temperature_squared=False, kd_exits="all",
        feature_weight=0.03, feature_reduction="frobenius", feature_exits="all_but_last",
        adaptation=True,
    ),
    # The ICCV text: KL with T^2, squared L2 feature distance, every shallow exit. The
    # text gives no values for alpha and lambda: the official code's are reused.
    "paper": dict(
        shallow_ce_weight=0.7, deepest_ce_weight=1.0, kd_weight=0.3, temperature=3.0,
        kd_form="kl", kd_temperature_squared=True, kd_exits="all",
        feature_weight=0.03, feature_reduction="squared_sum", feature_exits="all",
        adaptation=False,
    ),
}


def sparse_labels(labels, num_classes: int):
    """Integer class ids of shape (batch,) from sparse (batch,)/(batch, 1) or one-hot
    (batch, num_classes) labels; anything else raises a ValueError."""
    shape = tuple(labels.shape)
    if len(shape) == 2 and shape[-1] == num_classes and num_classes > 1:
        return ops.argmax(labels, axis=-1)
    if len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1):
        return ops.cast(ops.reshape(labels, (-1,)), "int32")
    raise ValueError(
        f"Labels of shape {shape} do not fit {num_classes} classes: give integer class ids "
        f"of shape (batch,) or (batch, 1), or one-hot / soft labels of shape "
        f"(batch, {num_classes})."
    )


def cross_entropy(labels, logits):
    """Per-example cross-entropy from logits; sparse or one-hot/soft labels."""
    num_classes = logits.shape[-1]
    if len(labels.shape) == 2 and labels.shape[-1] == num_classes and num_classes > 1:
        return ops.categorical_crossentropy(ops.cast(labels, logits.dtype), logits,
                                            from_logits=True)
    return ops.sparse_categorical_crossentropy(sparse_labels(labels, num_classes), logits,
                                               from_logits=True)


def distillation(student_logits, teacher_logits, temperature: float, form: str = "soft_ce",
                 temperature_squared: bool = False):
    """Per-example soft-target term; the teacher is stop-gradient.

    "soft_ce": -sum p_T(teacher) * log p_T(student); "kl": KL(p_T(teacher) || p_T(student)).
    Both have the same gradient; "kl" is 0 when the student matches the teacher.
    """
    if form not in KD_FORMS:
        raise ValueError(f"Unknown kd_form '{form}'. Valid forms: {', '.join(KD_FORMS)}.")
    teacher = ops.stop_gradient(teacher_logits) / temperature
    student_log_probs = ops.log_softmax(student_logits / temperature, axis=-1)
    teacher_probs = ops.softmax(teacher, axis=-1)
    if form == "kl":
        values = ops.sum(teacher_probs * (ops.log_softmax(teacher, axis=-1) - student_log_probs),
                         axis=-1)
    else:
        values = -ops.sum(teacher_probs * student_log_probs, axis=-1)
    if temperature_squared:
        values = values * (temperature ** 2)
    return values


def feature_distance(student, teacher, reduction: str = "frobenius",
                     cross_replica_sum: Callable | None = None):
    """Distance between a student feature batch and the stop-gradient teacher feature.

    - "frobenius": the Frobenius norm of the difference over the whole batch (not
      squared, not averaged), as in the official code. It is not a mean, so under data
      parallelism the squared sum is added up across replicas first
      (`cross_replica_sum`) to give the global batch's norm.
    - "squared_sum": squared L2 distance per example, averaged over the batch.
    - "mean_squared": mean over batch and feature dimensions.
    """
    diff = student - ops.stop_gradient(teacher)
    if reduction == "frobenius":
        total = ops.sum(ops.square(diff))
        if cross_replica_sum is not None:
            total = cross_replica_sum(total)
        # sqrt has an infinite slope at 0; this keeps the gradient finite there.
        positive = total > 0
        return ops.where(positive, ops.sqrt(ops.where(positive, total, 1.0)), 0.0)
    if reduction == "squared_sum":
        return ops.mean(ops.sum(ops.square(diff), axis=-1))
    if reduction == "mean_squared":
        return ops.mean(ops.square(diff))
    raise ValueError(
        f"Unknown feature_reduction '{reduction}'. Valid: {', '.join(FEATURE_REDUCTIONS)}."
    )


def _batch_mean(values, sample_weight=None):
    # Keras' "sum_over_batch_size": sum(w * l) / batch.
    if sample_weight is None:
        return ops.mean(values)
    weights = ops.cast(ops.reshape(sample_weight, (-1,)), values.dtype)
    return ops.sum(values * weights) / ops.cast(ops.shape(values)[0], values.dtype)


def byot_loss(
    labels,
    logits: Sequence,
    features: Sequence | None = None,
    *,
    sample_weight=None,
    shallow_ce_weight: float = 0.7,
    deepest_ce_weight: float = 1.0,
    kd_weight: float = 0.3,
    temperature: float = 3.0,
    kd_form: str = "soft_ce",
    kd_temperature_squared: bool = False,
    kd_exits: Sequence[int] | None = None,
    feature_weight: float = 0.03,
    feature_reduction: str = "frobenius",
    feature_exits: Sequence[int] | None = None,
    distill: bool = True,
    cross_replica_sum: Callable | None = None,
) -> dict:
    """The BYOT loss and its terms for one batch.

    Args:
        labels: sparse class ids (batch,) / (batch, 1), or one-hot (batch, classes).
        logits: each exit's logits, shallow to deep; the last is the teacher.
        features: each exit's feature as compared (after any adaptation layer), same
            order; needed when a feature term is active.
        sample_weight: optional per-example weights for the CE and KD terms.
        shallow_ce_weight / deepest_ce_weight: CE weight of shallow exits / the deepest.
        kd_weight, temperature, kd_form, kd_temperature_squared: the soft-target term
            (see :func:`distillation`), applied to the shallow exits in `kd_exits`.
        feature_weight, feature_reduction: the hint term (see :func:`feature_distance`),
            applied to the shallow exits in `feature_exits`.
        kd_exits / feature_exits: 1-based shallow exit numbers; None = all shallow exits.
        distill: False drops the KD and feature terms (evaluation).
        cross_replica_sum: sums a scalar over data-parallel replicas (see
            :func:`feature_distance`); None on a single device.

    Returns:
        dict with "loss" (the total) and the terms "ce", "kd", "feature".

    Example:
        >>> import numpy as np
        >>> logits = [np.zeros((2, 3), "float32"), np.eye(2, 3, dtype="float32")]
        >>> terms = byot_loss(np.array([0, 1]), logits, feature_weight=0.0)
        >>> sorted(terms)
        ['ce', 'feature', 'kd', 'loss']
    """
    num_exits = len(logits)
    if num_exits < 1:
        raise ValueError("byot_loss needs the logits of at least one exit.")
    shallow = list(range(1, num_exits))
    kd_exits = shallow if kd_exits is None else list(kd_exits)
    feature_exits = shallow if feature_exits is None else list(feature_exits)
    for label, chosen in (("kd_exits", kd_exits), ("feature_exits", feature_exits)):
        if any(e not in shallow for e in chosen):
            raise ValueError(f"{label}={chosen} is invalid: shallow exits are {shallow}.")

    teacher = logits[-1]
    ce = deepest_ce_weight * _batch_mean(cross_entropy(labels, teacher), sample_weight)
    for student in logits[:-1]:
        ce = ce + shallow_ce_weight * _batch_mean(cross_entropy(labels, student),
                                                  sample_weight)
    kd = ops.zeros((), dtype=ce.dtype)
    feature = ops.zeros((), dtype=ce.dtype)
    if distill and kd_weight and kd_exits:
        for exit_number in kd_exits:
            per_example = distillation(logits[exit_number - 1], teacher, temperature, kd_form,
                                       kd_temperature_squared)
            kd = kd + kd_weight * _batch_mean(per_example, sample_weight)
    if distill and feature_weight and feature_exits:
        if features is None:
            raise ValueError("The feature term is active but no features were given.")
        for exit_number in feature_exits:
            feature = feature + feature_weight * feature_distance(
                features[exit_number - 1], features[-1], feature_reduction, cross_replica_sum
            )
    return {"loss": ce + kd + feature, "ce": ce, "kd": kd, "feature": feature}


def _resolve_exit_choice(choice, num_exits: int, option: str) -> list[int]:
    shallow = list(range(1, num_exits))
    if choice == "all":
        return shallow
    if choice == "all_but_last":
        return shallow[:-1]
    if isinstance(choice, str):
        raise ValueError(
            f"{option}='{choice}' is invalid: use 'all', 'all_but_last' or a list of exits."
        )
    chosen = [int(e) for e in choice]
    if any(e not in shallow for e in chosen):
        raise ValueError(
            f"{option}={list(choice)} is invalid for a {num_exits}-exit model: shallow exits "
            f"are {shallow}."
        )
    return chosen


@keras.saving.register_keras_serializable(package="byot_keras")
class BYOTLoss:
    """The BYOT loss as a configurable, serializable object.

    Args:
        preset: "official" (the code behind the published numbers) or "paper".
        **overrides: any option of the preset (see `BYOTLoss.options()`), e.g.
            `temperature=4.0`, `kd_temperature_squared=True`, `feature_weight=0.0`,
            `feature_exits=[1, 2, 3]`, `adaptation=False`.

    Called on labels and the network's output dict (`exit_k` logits and `feature_k`
    vectors), it returns the scalar total; :meth:`terms` returns every term.

    Example:
        >>> loss = BYOTLoss("paper", temperature=4.0)
        >>> loss.get_config()["temperature"]
        4.0
    """

    def __init__(self, preset: str = "official", **overrides):
        if preset not in PRESETS:
            raise ValueError(
                f"Unknown BYOT loss preset '{preset}'. Valid presets: {', '.join(PRESETS)}."
            )
        unknown = sorted(set(overrides) - set(PRESETS[preset]))
        if unknown:
            raise ValueError(
                f"Unknown BYOT loss option(s) {unknown}. Valid options: "
                f"{', '.join(PRESETS[preset])}."
            )
        self.preset = preset
        self.overrides = dict(overrides)
        self.config = {**PRESETS[preset], **overrides}
        if self.config["kd_form"] not in KD_FORMS:
            raise ValueError(
                f"Unknown kd_form '{self.config['kd_form']}'. Valid: {', '.join(KD_FORMS)}."
            )
        if self.config["feature_reduction"] not in FEATURE_REDUCTIONS:
            raise ValueError(
                f"Unknown feature_reduction '{self.config['feature_reduction']}'. "
                f"Valid: {', '.join(FEATURE_REDUCTIONS)}."
            )
        if self.config["temperature"] <= 0:
            raise ValueError(f"temperature must be > 0, got {self.config['temperature']}.")

    @staticmethod
    def options(preset: str = "official") -> dict:
        """The options of a preset and their values."""
        return dict(PRESETS[preset])

    @property
    def adaptation(self) -> bool:
        """Whether shallow features pass a learned Dense before the feature term."""
        return bool(self.config["adaptation"]) and self.uses_features

    @property
    def uses_features(self) -> bool:
        return bool(self.config["feature_weight"])

    def kd_exits(self, num_exits: int) -> list[int]:
        return _resolve_exit_choice(self.config["kd_exits"], num_exits, "kd_exits")

    def feature_exits(self, num_exits: int) -> list[int]:
        if not self.uses_features:
            return []
        return _resolve_exit_choice(self.config["feature_exits"], num_exits, "feature_exits")

    def terms(self, y_true, y_pred: dict, sample_weight=None, *, training: bool = True,
              cross_replica_sum: Callable | None = None) -> dict:
        """All terms for the output dict `y_pred` ({"exit_k": logits, "feature_k": ...})."""
        num_exits = sum(1 for key in y_pred if key.startswith("exit_"))
        logits = [y_pred[f"exit_{k}"] for k in range(1, num_exits + 1)]
        distill = training
        features = None
        if distill and self.uses_features:
            features = [y_pred[f"feature_{k}"] for k in range(1, num_exits + 1)]
        options = {k: v for k, v in self.config.items()
                   if k not in ("adaptation", "kd_exits", "feature_exits")}
        return byot_loss(
            y_true, logits, features, sample_weight=sample_weight,
            kd_exits=self.kd_exits(num_exits), feature_exits=self.feature_exits(num_exits),
            distill=distill, cross_replica_sum=cross_replica_sum, **options,
        )

    def __call__(self, y_true, y_pred: dict, sample_weight=None):
        return self.terms(y_true, y_pred, sample_weight)["loss"]

    def get_config(self) -> dict:
        return {"preset": self.preset, **self.overrides}

    @classmethod
    def from_config(cls, config: dict) -> BYOTLoss:
        return cls(**config)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.overrides.items())
        return f"BYOTLoss({self.preset!r}{extra})"
