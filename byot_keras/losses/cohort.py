"""Online distillation between separate networks trained together (a cohort).

- `multistructure`: "Multistructure-Based Collaborative Online Distillation" (Gao, Lan,
  Mi, Feng, Xu, Peng, Entropy 2019, 21(4):357). Networks of different architectures
  learn from the labels and from the cohort's ensemble, which is the teacher of every
  member: `CE(z_k, y) + w(t) * T^2 * KL(softmax_T(teacher) || softmax_T(z_k))` with
  `teacher = sg(aggregate(z_1..z_K))`. The distillation weight `w(t)` follows
  "discontinuous distillation with progressively enhanced constraints": it is on only in
  periodic windows, stronger from window to window (:func:`discontinuous_weight`).
  How the ensemble is formed and the exact schedule are not confirmed by the paper: the
  aggregate (mean of logits or of probabilities, with or without the member itself),
  the window lengths and the weight growth are options; `constant` is the comparison.
- `dml`: Deep Mutual Learning (Zhang et al., CVPR 2018): `CE(z_k, y) + 1/(K-1) *
  sum_{l != k} KL(p_l || p_k)`, peers treated as constants.
Formulas: ../shared/docs/methods.md, sections 4 and 5.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from byot_keras.losses.core import (
    FLAG,
    POSITIVE,
    WEIGHT,
    Objective,
    batch_mean,
    check_temperature,
    cross_entropy,
    distillation,
    integer_at_least,
    zero_like,
)

AGGREGATES = ("logits", "probabilities")
SCHEDULES = ("discontinuous", "constant")


def ensemble_teacher(member_logits: Sequence, temperature: float, aggregate: str = "logits",
                     exclude=None):
    """The cohort's teacher as logits: the mean of the members' logits, or (for
    "probabilities") `T * log(mean_l softmax(z_l / T))`, whose softened softmax is the
    mean of the softened probabilities. `exclude`: index of a member to leave out.
    Stop-gradient."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"Unknown aggregate '{aggregate}'. Valid: {', '.join(AGGREGATES)}.")
    check_temperature(temperature)
    chosen = [z for index, z in enumerate(member_logits) if index != exclude]
    stacked = ops.stack([ops.stop_gradient(z) for z in chosen])
    if aggregate == "logits":
        return ops.mean(stacked, axis=0)
    probabilities = ops.mean(ops.softmax(stacked / temperature, axis=-1), axis=0)
    return temperature * ops.log(ops.maximum(probabilities, 1e-12))


def multistructure_loss(labels, member_logits: Sequence, *, sample_weight=None,
                        weight=1.0, temperature: float = 3.0, aggregate: str = "logits",
                        exclude_self: bool = False, distill: bool = True) -> dict:
    """The cohort loss (sum over members) and its terms for one batch.

    Args:
        labels: sparse class ids or one-hot labels.
        member_logits: each member's logits.
        weight: the distillation weight `w(t)` now (float or tensor).
        temperature: T; the KL term carries T^2.
        aggregate, exclude_self: how the teacher is formed (see :func:`ensemble_teacher`).
        distill: False keeps only the CE terms (evaluation).

    Returns:
        dict with "loss" and the terms "ce" and "kd" (summed over members, weight applied).

    Example:
        >>> import numpy as np
        >>> z = [np.zeros((2, 3), "float32"), np.eye(2, 3, dtype="float32")]
        >>> round(float(multistructure_loss(np.array([0, 1]), z)["kd"]), 4)
        0.0583
    """
    if len(member_logits) < 2:
        raise ValueError("A cohort needs at least two members.")
    ce = zero_like(member_logits[0])
    kd = zero_like(ce)
    shared = None if exclude_self else ensemble_teacher(member_logits, temperature, aggregate)
    for index, logits in enumerate(member_logits):
        ce = ce + batch_mean(cross_entropy(labels, logits), sample_weight)
        if distill:
            teacher = shared if shared is not None else ensemble_teacher(
                member_logits, temperature, aggregate, exclude=index)
            kd = kd + batch_mean(distillation(logits, teacher, temperature, "kl", True),
                                 sample_weight)
    kd = ops.cast(weight, kd.dtype) * kd
    return {"loss": ce + kd, "ce": ce, "kd": kd}


def dml_loss(labels, member_logits: Sequence, *, sample_weight=None, temperature: float = 1.0,
             distill: bool = True) -> dict:
    """Deep Mutual Learning, summed over members; peers are stop-gradient. The KL carries
    no T^2 factor (the formula in ../shared/docs/methods.md uses T = 1).

    Example:
        >>> import numpy as np
        >>> z = [np.zeros((2, 3), "float32"), np.zeros((2, 3), "float32")]
        >>> float(dml_loss(np.array([0, 1]), z)["kd"])
        0.0
    """
    count = len(member_logits)
    if count < 2:
        raise ValueError("A cohort needs at least two members.")
    ce = zero_like(member_logits[0])
    kd = zero_like(ce)
    for index, logits in enumerate(member_logits):
        ce = ce + batch_mean(cross_entropy(labels, logits), sample_weight)
        if distill:
            for peer_index, peer in enumerate(member_logits):
                if peer_index != index:
                    kd = kd + batch_mean(distillation(logits, peer, temperature, "kl"),
                                         sample_weight) / (count - 1)
    return {"loss": ce + kd, "ce": ce, "kd": kd}


def discontinuous_weight(epoch, on_epochs: int, off_epochs: int, start_weight: float,
                         weight_step: float, max_weight: float):
    """The distillation weight of "discontinuous distillation with progressively enhanced
    constraints": epochs cycle through `on_epochs` with distillation, then `off_epochs`
    without; in window n (0-based) the weight is `min(max_weight, start_weight +
    n * weight_step)`, and 0 outside the windows. Works on floats and tensors.

    Example:
        >>> [float(discontinuous_weight(e, 2, 1, 0.5, 0.25, 1.0)) for e in range(7)]
        [0.5, 0.5, 0.0, 0.75, 0.75, 0.0, 1.0]
    """
    if on_epochs < 1 or off_epochs < 0:
        raise ValueError(
            f"on_epochs must be >= 1 and off_epochs >= 0; got {on_epochs} and {off_epochs}."
        )
    epoch = ops.floor(ops.cast(epoch, "float32"))
    cycle = float(on_epochs + off_epochs)
    window = ops.floor(epoch / cycle)
    inside = (epoch - window * cycle) < on_epochs
    weight = ops.minimum(start_weight + window * weight_step, max_weight)
    return ops.where(inside, weight, 0.0)


class CohortObjective(Objective):
    """Base of the cohort objectives: `compute` gets the members' logits."""


@keras.saving.register_keras_serializable(package="byot_keras")
class MultistructureLoss(CohortObjective):
    """`method="multistructure"` for a CohortModel.

    Presets: "discontinuous" (default: distillation on for `on_epochs`=10, off for
    `off_epochs`=5, weight 0.25 in the first window, +0.25 per window, at most 1) and
    "constant" (weight `max_weight` every epoch, the comparison). T = 3, teacher = mean
    of all members' logits. The window lengths and weights are our documented choice.

    Example:
        >>> MultistructureLoss().schedule(epoch=12, total_epochs=100)["weight"]
        0.0
    """

    method = "multistructure"
    TERMS = ("ce", "kd")
    CHOICES = {"aggregate": AGGREGATES, "schedule": SCHEDULES}
    OPTION_KINDS = {
        "on_epochs": integer_at_least(1), "off_epochs": integer_at_least(0),
        "start_weight": WEIGHT, "weight_step": WEIGHT, "max_weight": WEIGHT,
        "temperature": POSITIVE, "exclude_self": FLAG,
    }
    PRESETS = {
        "discontinuous": dict(schedule="discontinuous", on_epochs=10, off_epochs=5,
                              start_weight=0.25, weight_step=0.25, max_weight=1.0,
                              temperature=3.0, aggregate="logits", exclude_self=False),
        "constant": dict(schedule="constant", on_epochs=10, off_epochs=5, start_weight=0.25,
                         weight_step=0.25, max_weight=1.0, temperature=3.0,
                         aggregate="logits", exclude_self=False),
    }

    @property
    def scheduled(self) -> bool:
        return self.config["schedule"] == "discontinuous"

    def schedule(self, epoch, total_epochs) -> dict:
        c = self.config
        if c["schedule"] == "constant":
            return {"weight": c["max_weight"]}
        weight = discontinuous_weight(epoch, c["on_epochs"], c["off_epochs"],
                                      c["start_weight"], c["weight_step"], c["max_weight"])
        return {"weight": float(weight) if isinstance(epoch, int | float) else weight}

    def compute(self, labels, logits, features, *, sample_weight, distill, cross_replica_sum,
                epoch, total_epochs) -> dict:
        c = self.config
        return multistructure_loss(
            labels, logits, sample_weight=sample_weight,
            weight=self.schedule(epoch, total_epochs)["weight"],
            temperature=c["temperature"], aggregate=c["aggregate"],
            exclude_self=c["exclude_self"], distill=distill,
        )


@keras.saving.register_keras_serializable(package="byot_keras")
class DMLLoss(CohortObjective):
    """`method="dml"` for a CohortModel: Deep Mutual Learning, T = 1 by default.

    Example:
        >>> DMLLoss(temperature=2.0).config["temperature"]
        2.0
    """

    method = "dml"
    TERMS = ("ce", "kd")
    PRESETS = {"default": dict(temperature=1.0)}
    OPTION_KINDS = {"temperature": POSITIVE}

    def compute(self, labels, logits, features, *, sample_weight, distill, cross_replica_sum,
                epoch, total_epochs) -> dict:
        return dml_loss(labels, logits, sample_weight=sample_weight,
                        temperature=self.config["temperature"], distill=distill)
