"""EED, Exit-Ensemble Distillation (Lee & Lee, 2021, arXiv 2104.00299).

The teacher is the ensemble of all exits, and the deepest exit is distilled too:
`sum_i CE(z_i, y) + L_O + L_F`, with the targets `z_hat = sg(mean_i z_i)` and
`f_hat = sg(mean_i f_i)`:
- `L_O`, "mse" (default): `sum_i mean_c (z_i - z_hat)^2`; "kd": `0.1 * T^2 *
  sum_i SoftCE(softmax_T(z_hat), log_softmax_T(z_i))`, T = 3;
- `L_F = sum_i mean((f_i - f_hat)^2 * 1[f_i > 0 or f_hat > 0])` (the mask skips
  dimensions where both are zero after the ReLU).
Formulas and defaults: ../shared/docs/methods.md, section 3.
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
    cross_entropy,
    distillation,
    zero_like,
)

OUTPUT_FORMS = ("mse", "kd")


def eed_loss(
    labels,
    logits: Sequence,
    features: Sequence | None = None,
    *,
    sample_weight=None,
    output_form: str = "mse",
    output_weight: float = 1.0,
    kd_weight: float = 0.1,
    temperature: float = 3.0,
    feature_weight: float = 1.0,
    feature_mask: bool = True,
    distill: bool = True,
) -> dict:
    """The EED loss and its terms for one batch.

    Args:
        labels: sparse class ids or one-hot labels.
        logits: each exit's logits, shallow to deep.
        features: each exit's feature (all the same shape); needed when
            `feature_weight` is not 0.
        output_form: "mse" or "kd" (see the module docstring).
        output_weight: multiplies the output term (either form).
        kd_weight, temperature: the "kd" form's 0.1 and T (the T^2 factor is part of it).
        feature_weight: multiplies the feature term.
        feature_mask: apply the `f_i > 0 or f_hat > 0` mask.
        distill: False keeps only the CE term (evaluation).

    Returns:
        dict with "loss" and the terms "ce", "output", "feature" (weights applied).

    Example:
        >>> import numpy as np
        >>> logits = [np.zeros((2, 3), "float32"), np.eye(2, 3, dtype="float32")]
        >>> round(float(eed_loss(np.array([0, 1]), logits, feature_weight=0.0)["output"]), 4)
        0.1667
    """
    if output_form not in OUTPUT_FORMS:
        raise ValueError(
            f"Unknown output_form '{output_form}'. Valid: {', '.join(OUTPUT_FORMS)}."
        )
    if len(logits) < 1:
        raise ValueError("eed_loss needs the logits of at least one exit.")
    ce = zero_like(logits[-1])
    for exit_logits in logits:
        ce = ce + batch_mean(cross_entropy(labels, exit_logits), sample_weight)
    output = zero_like(ce)
    feature = zero_like(ce)
    if distill and output_weight:
        target = ops.stop_gradient(ops.mean(ops.stack(list(logits)), axis=0))
        for exit_logits in logits:
            if output_form == "mse":
                per_example = ops.mean(ops.square(exit_logits - target), axis=-1)
            else:
                per_example = kd_weight * distillation(exit_logits, target, temperature,
                                                       "soft_ce", temperature_squared=True)
            output = output + batch_mean(per_example, sample_weight)
        output = output_weight * output
    if distill and feature_weight:
        if features is None:
            raise ValueError("The EED feature term is active but no features were given.")
        shapes = {tuple(f.shape[1:]) for f in features}
        if len(shapes) != 1:
            raise ValueError(
                f"EED averages the exits' features, which needs one shape; got {sorted(shapes)}. "
                "Use heads of the deepest width (the zoo's default head_width)."
            )
        target = ops.stop_gradient(ops.mean(ops.stack(list(features)), axis=0))
        for exit_feature in features:
            squared = ops.square(exit_feature - target)
            if feature_mask:
                active = ops.logical_or(exit_feature > 0, target > 0)
                squared = squared * ops.cast(active, squared.dtype)
            feature = feature + ops.mean(squared)
        feature = feature_weight * feature
    return {"loss": ce + output + feature, "ce": ce, "output": output, "feature": feature}


@keras.saving.register_keras_serializable(package="byot_keras")
class EEDLoss(Objective):
    """EED as a serializable objective (`method="eed"`).

    Presets: "mse" (the paper's default output term) and "kd" (0.1 * T^2 soft CE, T=3).
    Both use the masked feature term with weight 1. The heads of the public code are
    plain 3x3 stride-2 conv stacks (`head="conv"` in the zoo).

    Example:
        >>> EEDLoss("kd").config["output_form"]
        'kd'
    """

    method = "eed"
    TERMS = ("ce", "output", "feature")
    HEAD = "conv"
    CHOICES = {"output_form": OUTPUT_FORMS}
    OPTION_KINDS = {"output_weight": WEIGHT, "kd_weight": WEIGHT, "temperature": POSITIVE,
                    "feature_weight": WEIGHT, "feature_mask": FLAG}
    PRESETS = {
        "mse": dict(output_form="mse", output_weight=1.0, kd_weight=0.1, temperature=3.0,
                    feature_weight=1.0, feature_mask=True),
        "kd": dict(output_form="kd", output_weight=1.0, kd_weight=0.1, temperature=3.0,
                   feature_weight=1.0, feature_mask=True),
    }

    @property
    def uses_features(self) -> bool:
        return bool(self.config["feature_weight"])

    def feature_exits(self, num_exits: int) -> list[int]:
        return list(range(1, num_exits)) if self.uses_features else []

    def compute(self, labels, logits, features, *, sample_weight, distill, cross_replica_sum,
                epoch, total_epochs) -> dict:
        return eed_loss(labels, logits, features, sample_weight=sample_weight, distill=distill,
                        **self.config)
