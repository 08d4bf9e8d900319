"""MSD, Multi-Self-Distillation (Luan et al., 2019, arXiv 1911.09418).

Every exit learns from every other exit, not only from the deepest:
`(1 - alpha) * sum_n CE(z_n, y) + alpha * 1/(N-1) * sum_i sum_{j != i} KL(p_j || p_i)
+ beta(t) * sum_{i<N} ||f_i - f_N||^2`, with `beta` annealed by a cosine from
`beta_begin` to `beta_end` over training. The exits' features must have the deepest
feature's shape: the paper's "sampling-based branch augmentation" heads (extra
backbone blocks, `head="blocks"` in the zoo) give exactly that.

The paper does not confirm alpha, T, the beta range, whether the teacher side of the KL
is detached, or a T^2 factor; each is an option with a documented default
(../shared/docs/methods.md, section 2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
from keras import ops

from byot_keras.losses.core import (
    EPOCHS,
    FEATURE_REDUCTIONS,
    FLAG,
    FRACTION,
    POSITIVE,
    WEIGHT,
    Objective,
    batch_mean,
    cosine_anneal,
    cross_entropy,
    distillation,
    feature_distance,
    zero_like,
)


def msd_loss(
    labels,
    logits: Sequence,
    features: Sequence | None = None,
    *,
    sample_weight=None,
    alpha: float = 0.1,
    temperature: float = 3.0,
    kd_temperature_squared: bool = False,
    detach_teacher: bool = True,
    detach_feature_teacher: bool = False,
    beta=0.0,
    feature_reduction: str = "squared_sum",
    distill: bool = True,
    cross_replica_sum: Callable | None = None,
) -> dict:
    """The MSD loss and its terms for one batch.

    Args:
        labels: sparse class ids or one-hot labels.
        logits: each exit's logits, shallow to deep.
        features: each exit's feature (all of the deepest feature's shape); needed when
            `beta` is not 0.
        alpha: weight of the all-to-all KL term; the CE sum gets `1 - alpha`.
        temperature, kd_temperature_squared: softening of the KL term.
        detach_teacher: stop the gradient through the teacher side of every KL pair.
        detach_feature_teacher: stop the gradient through `f_N` in the feature term (the
            paper's formula has no stop-gradient there, hence False by default).
        beta: the feature term's weight at this point of training (a float or tensor;
            see :func:`byot_keras.losses.core.cosine_anneal`).
        feature_reduction: see :func:`byot_keras.losses.core.feature_distance`.
        distill: False keeps only the CE term (evaluation).

    Returns:
        dict with "loss" and the terms "ce" ((1 - alpha) * CE sum), "kd" and "feature"
        (weights applied).

    Example:
        >>> import numpy as np
        >>> logits = [np.zeros((2, 3), "float32"), np.eye(2, 3, dtype="float32")]
        >>> round(float(msd_loss(np.array([0, 1]), logits)["kd"]), 4)
        0.0026
    """
    num_exits = len(logits)
    if num_exits < 1:
        raise ValueError("msd_loss needs the logits of at least one exit.")
    ce = zero_like(logits[-1])
    for exit_logits in logits:
        ce = ce + batch_mean(cross_entropy(labels, exit_logits), sample_weight)
    ce = (1.0 - alpha) * ce
    kd = zero_like(ce)
    feature = zero_like(ce)
    if distill and alpha and num_exits > 1:
        for i, student in enumerate(logits):
            for j, teacher in enumerate(logits):
                if i != j:
                    kd = kd + batch_mean(
                        distillation(student, teacher, temperature, "kl",
                                     kd_temperature_squared, detach_teacher),
                        sample_weight,
                    )
        kd = alpha * kd / (num_exits - 1)
    if distill and num_exits > 1 and not (isinstance(beta, float | int) and beta == 0):
        if features is None:
            raise ValueError("The MSD feature term is active but no features were given.")
        for student in features[:-1]:
            if tuple(student.shape[1:]) != tuple(features[-1].shape[1:]):
                raise ValueError(
                    f"MSD compares every exit's feature with the deepest one's, but shapes "
                    f"differ: {tuple(student.shape[1:])} vs {tuple(features[-1].shape[1:])}. "
                    "Build the model with head='blocks' (branch augmentation) or heads of "
                    "the deepest width."
                )
            feature = feature + feature_distance(student, features[-1], feature_reduction,
                                                 cross_replica_sum, detach_feature_teacher)
        feature = ops.cast(beta, feature.dtype) * feature
    return {"loss": ce + kd + feature, "ce": ce, "kd": kd, "feature": feature}


@keras.saving.register_keras_serializable(package="byot_keras")
class MSDLoss(Objective):
    """MSD as a serializable objective (`method="msd"`).

    Preset "default": alpha 0.1, T 3, KL without T^2, the KL's teacher side detached, the
    feature term as written (no stop-gradient on `f_N`), beta cosine-annealed from 0.01
    to 0 over the run (`total_epochs`: None = fit's `epochs`), squared L2 feature
    distance. Every value is our documented choice where the paper is silent (alpha 0.1
    and T 3 follow ../shared/docs/methods.md). The feature term, like BYOT's, ignores
    `sample_weight` (the CE and KL terms use it).

    Example:
        >>> loss = MSDLoss(alpha=0.2)
        >>> round(float(loss.schedule(epoch=5, total_epochs=10)["beta"]), 4)
        0.005
    """

    method = "msd"
    TERMS = ("ce", "kd", "feature")
    HEAD = "blocks"
    CHOICES = {"feature_reduction": FEATURE_REDUCTIONS}
    OPTION_KINDS = {
        "alpha": FRACTION, "temperature": POSITIVE, "kd_temperature_squared": FLAG,
        "detach_teacher": FLAG, "detach_feature_teacher": FLAG, "beta_begin": WEIGHT,
        "beta_end": WEIGHT, "total_epochs": EPOCHS,
    }
    PRESETS = {
        "default": dict(
            alpha=0.1, temperature=3.0, kd_temperature_squared=False, detach_teacher=True,
            detach_feature_teacher=False, beta_begin=0.01, beta_end=0.0, total_epochs=None,
            feature_reduction="squared_sum",
        ),
    }

    @property
    def uses_features(self) -> bool:
        return bool(self.config["beta_begin"] or self.config["beta_end"])

    def feature_exits(self, num_exits: int) -> list[int]:
        return list(range(1, num_exits)) if self.uses_features else []

    @property
    def scheduled(self) -> bool:
        return self.config["beta_begin"] != self.config["beta_end"]

    def schedule(self, epoch, total_epochs) -> dict:
        return {"beta": cosine_anneal(epoch, total_epochs, self.config["beta_begin"],
                                      self.config["beta_end"])}

    def compute(self, labels, logits, features, *, sample_weight, distill, cross_replica_sum,
                epoch, total_epochs) -> dict:
        beta = self.schedule(epoch, total_epochs)["beta"] if self.uses_features else 0.0
        options = {k: self.config[k] for k in ("alpha", "temperature", "kd_temperature_squared",
                                               "detach_teacher", "detach_feature_teacher",
                                               "feature_reduction")}
        return msd_loss(labels, logits, features, sample_weight=sample_weight, beta=beta,
                        distill=distill, cross_replica_sum=cross_replica_sum, **options)
