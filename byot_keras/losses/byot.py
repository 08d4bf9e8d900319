"""The BYOT loss, written once with `keras.ops`.

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

from byot_keras.losses.core import (
    EXIT_CHOICE,
    FEATURE_REDUCTIONS,
    FLAG,
    KD_FORMS,
    POSITIVE,
    WEIGHT,
    Objective,
    batch_mean,
    cross_entropy,
    distillation,
    feature_distance,
    resolve_exit_choice,
)

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
    ce = deepest_ce_weight * batch_mean(cross_entropy(labels, teacher), sample_weight)
    for student in logits[:-1]:
        ce = ce + shallow_ce_weight * batch_mean(cross_entropy(labels, student),
                                                  sample_weight)
    kd = ops.zeros((), dtype=ce.dtype)
    feature = ops.zeros((), dtype=ce.dtype)
    if distill and kd_weight and kd_exits:
        for exit_number in kd_exits:
            per_example = distillation(logits[exit_number - 1], teacher, temperature, kd_form,
                                       kd_temperature_squared)
            kd = kd + kd_weight * batch_mean(per_example, sample_weight)
    if distill and feature_weight and feature_exits:
        if features is None:
            raise ValueError("The feature term is active but no features were given.")
        for exit_number in feature_exits:
            feature = feature + feature_weight * feature_distance(
                features[exit_number - 1], features[-1], feature_reduction, cross_replica_sum
            )
    return {"loss": ce + kd + feature, "ce": ce, "kd": kd, "feature": feature}


@keras.saving.register_keras_serializable(package="byot_keras")
class BYOTLoss(Objective):
    """The BYOT loss as a configurable, serializable object (`method="byot"`).

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

    method = "byot"
    PRESETS = PRESETS
    TERMS = TERMS
    CHOICES = {"kd_form": KD_FORMS, "feature_reduction": FEATURE_REDUCTIONS}
    OPTION_KINDS = {
        "shallow_ce_weight": WEIGHT, "deepest_ce_weight": WEIGHT, "kd_weight": WEIGHT,
        "temperature": POSITIVE, "kd_temperature_squared": FLAG, "kd_exits": EXIT_CHOICE,
        "feature_weight": WEIGHT, "feature_exits": EXIT_CHOICE, "adaptation": FLAG,
    }

    @property
    def adaptation(self) -> bool:
        return bool(self.config["adaptation"]) and self.uses_features

    @property
    def uses_features(self) -> bool:
        return bool(self.config["feature_weight"])

    def kd_exits(self, num_exits: int) -> list[int]:
        return resolve_exit_choice(self.config["kd_exits"], range(1, num_exits), "kd_exits")

    def feature_exits(self, num_exits: int) -> list[int]:
        if not self.uses_features:
            return []
        return resolve_exit_choice(self.config["feature_exits"], range(1, num_exits),
                                   "feature_exits")

    def validate(self, num_exits: int) -> None:
        self.kd_exits(num_exits)
        self.feature_exits(num_exits)

    def compute(self, labels, logits, features, *, sample_weight, distill, cross_replica_sum,
                epoch, total_epochs) -> dict:
        num_exits = len(logits)
        options = {k: v for k, v in self.config.items()
                   if k not in ("adaptation", "kd_exits", "feature_exits")}
        return byot_loss(
            labels, logits, features, sample_weight=sample_weight,
            kd_exits=self.kd_exits(num_exits), feature_exits=self.feature_exits(num_exits),
            distill=distill, cross_replica_sum=cross_replica_sum, **options,
        )
