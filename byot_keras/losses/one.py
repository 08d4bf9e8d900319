"""ONE, on-the-fly native ensemble (Lan, Zhu & Gong, "Knowledge Distillation by On-the-Fly
Native Ensemble", NeurIPS 2018, arXiv 1806.04606).

K branches share the low layers of one network; a gate weighs the branches' logits into
a teacher, `z_t = sum_b g_b * z_b`, and every branch learns from it:
`sum_b CE(z_b, y) + CE(z_t, y) + w(t) * T^2 * sum_b KL(softmax_T(sg(z_t)) ||
softmax_T(z_b))`. ../shared/docs/methods.md, section 5. The zoo builds the branches and
the gate (`zoo.resnet18_byot(method="one")`): exits 1..K are the branches, exit K + 1 the
gated teacher.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from byot_keras.losses.core import (
    POSITIVE,
    WEIGHT,
    Objective,
    batch_mean,
    cross_entropy,
    distillation,
    integer_at_least,
    linear_ramp,
    optional,
    zero_like,
)


def one_loss(labels, branch_logits: Sequence, teacher_logits, *, temperature: float = 3.0,
             kd_weight=1.0, sample_weight=None, distill: bool = True) -> dict:
    """`sum_b CE(z_b, y) + CE(z_t, y) + kd_weight * T^2 * sum_b KL(softmax_T(sg(z_t)) ||
    softmax_T(z_b))`. The teacher's own CE reaches the branches and the gate through
    `z_t`; its soft target does not (stop-gradient). Without `distill`, no KD term.

    Example:
        >>> import numpy as np
        >>> z = [np.array([[2.0, 0.0]], "float32"), np.array([[0.0, 2.0]], "float32")]
        >>> teacher = 0.5 * z[0] + 0.5 * z[1]
        >>> terms = one_loss(np.array([0]), z, teacher)
        >>> round(float(terms["ce"]), 4), round(float(terms["kd"]), 4)
        (2.947, 0.982)
    """
    ce = batch_mean(cross_entropy(labels, teacher_logits), sample_weight)
    kd = zero_like(ce)
    for logits in branch_logits:
        ce = ce + batch_mean(cross_entropy(labels, logits), sample_weight)
        if distill:
            kd = kd + batch_mean(distillation(logits, teacher_logits, temperature, "kl", True),
                                 sample_weight)
    kd = kd * ops.cast(kd_weight, kd.dtype)  # a scheduled weight is float32
    return {"loss": ce + kd, "ce": ce, "kd": kd}


@keras.saving.register_keras_serializable(package="byot_keras")
class ONELoss(Objective):
    """`method="one"`: K branches and their gated ensemble, trained together.

    Options: `branches` (K, 3), `temperature` (3), `kd_weight` (1), and the KD weight's
    ramp-up: `ramp` ("sigmoid": `kd_weight * exp(-5 * (1 - t)^2)`, the ramp of Laine &
    Aila's temporal ensembling; or "linear": `kd_weight * t`), with `t = min(1, epoch /
    ramp_epochs)`, over `ramp_epochs` (80; None: `kd_weight` from the start). methods.md
    says the KD term is ramped without giving the ramp: its shape and length are our
    defaults. For short runs give a shorter `ramp_epochs`. The network's exits 1..K must
    be the branches and exit K + 1 the gated teacher, as the zoo builds them.

    Example:
        >>> ONELoss(branches=4).config["branches"]
        4
        >>> round(float(ONELoss().schedule(40, 300)["kd_weight"]), 4)  # exp(-1.25)
        0.2865
    """

    method = "one"
    TERMS = ("ce", "kd")
    PRESETS = {"default": dict(branches=3, temperature=3.0, kd_weight=1.0, ramp="sigmoid",
                               ramp_epochs=80)}
    CHOICES = {"ramp": ("sigmoid", "linear")}
    OPTION_KINDS = {"branches": integer_at_least(2), "temperature": POSITIVE,
                    "kd_weight": WEIGHT, "ramp_epochs": optional(POSITIVE, "no ramp")}

    def network_options(self) -> dict:
        # K copies of the last stage side by side, and a gate: not a chain of exits.
        return {"branches": self.config["branches"]}

    def validate(self, num_exits: int) -> None:
        if num_exits != self.config["branches"] + 1:
            raise ValueError(
                f"method 'one' with branches={self.config['branches']} needs "
                f"{self.config['branches'] + 1} exits (the branches, then the gated "
                f"teacher); the network has {num_exits}. Build it with "
                "zoo.<resnet model>(method='one', branches=...).")

    @property
    def scheduled(self) -> bool:
        return self.config["ramp_epochs"] is not None

    def schedule(self, epoch, total_epochs) -> dict:
        ramp, weight = self.config["ramp_epochs"], self.config["kd_weight"]
        if ramp is None:
            return {"kd_weight": weight}
        if self.config["ramp"] == "linear":
            return {"kd_weight": linear_ramp(epoch, ramp, weight)}
        progress = linear_ramp(epoch, ramp, 1.0)
        return {"kd_weight": weight * ops.exp(-5.0 * ops.square(1.0 - progress))}

    def compute(self, labels, logits, features, *, sample_weight, distill, cross_replica_sum,
                epoch, total_epochs) -> dict:
        return one_loss(labels, logits[:-1], logits[-1], temperature=self.config["temperature"],
                        kd_weight=self.schedule(epoch, total_epochs)["kd_weight"],
                        sample_weight=sample_weight, distill=distill)
