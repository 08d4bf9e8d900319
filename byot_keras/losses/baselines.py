"""The baselines every comparison needs, on the same multi-exit networks:

- `ce`: cross-entropy on the deepest exit only (the plain network);
- `deep_supervision` (DSN, Lee et al., 2015): cross-entropy on every exit, no
  distillation;
- `sdn` (Shallow-Deep Networks, Kaya et al., ICML 2019): weighted cross-entropy on the
  internal classifiers, their weights ramped linearly over training;
- :func:`hinton_kd_loss` (Hinton et al., 2015): a pretrained teacher's softened
  prediction for every exit of a student (the model lives in byot_keras.training).
Formulas: ../shared/docs/methods.md, section 5.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from byot_keras.losses.core import (
    EPOCHS,
    WEIGHT,
    WEIGHT_LIST,
    Objective,
    batch_mean,
    cross_entropy,
    distillation,
    linear_ramp,
    optional,
    zero_like,
)


def weighted_ce_loss(labels, logits: Sequence, weights: Sequence, *, sample_weight=None
                     ) -> dict:
    """`sum_i weights[i] * CE(z_i, y)`: the loss of `ce`, `deep_supervision` and `sdn`.

    Example:
        >>> import numpy as np
        >>> logits = [np.zeros((2, 4), "float32")] * 2
        >>> round(float(weighted_ce_loss(np.array([0, 1]), logits, [0.5, 1.0])["ce"]), 4)
        2.0794
    """
    if len(weights) != len(logits):
        raise ValueError(f"{len(weights)} weights for {len(logits)} exits.")
    ce = zero_like(logits[-1])
    for weight, exit_logits in zip(weights, logits):
        if isinstance(weight, float | int) and weight == 0:
            continue
        ce = ce + ops.cast(weight, ce.dtype) * batch_mean(cross_entropy(labels, exit_logits),
                                                          sample_weight)
    return {"loss": ce, "ce": ce}


@keras.saving.register_keras_serializable(package="byot_keras")
class CELoss(Objective):
    """`method="ce"`: cross-entropy on the deepest exit only, the baseline. Shallow exits,
    if the network has any, get no gradient (the zoo builds no shallow exit for it by
    default).

    Example:
        >>> CELoss().config
        {}
    """

    method = "ce"
    TERMS = ("ce",)
    PRESETS = {"default": {}}
    PLAIN_NETWORK = True

    def compute(self, labels, logits, features, *, sample_weight, distill, cross_replica_sum,
                epoch, total_epochs) -> dict:
        weights = [0.0] * (len(logits) - 1) + [1.0]
        return weighted_ce_loss(labels, logits, weights, sample_weight=sample_weight)


@keras.saving.register_keras_serializable(package="byot_keras")
class DeepSupervisionLoss(Objective):
    """`method="deep_supervision"`: `deepest_ce_weight * CE(z_N) + shallow_ce_weight *
    sum_{i<N} CE(z_i)`, no distillation (defaults 1 and 1).

    Example:
        >>> DeepSupervisionLoss(shallow_ce_weight=0.3).config["shallow_ce_weight"]
        0.3
    """

    method = "deep_supervision"
    TERMS = ("ce",)
    PRESETS = {"default": dict(shallow_ce_weight=1.0, deepest_ce_weight=1.0)}
    OPTION_KINDS = {"shallow_ce_weight": WEIGHT, "deepest_ce_weight": WEIGHT}

    def compute(self, labels, logits, features, *, sample_weight, distill, cross_replica_sum,
                epoch, total_epochs) -> dict:
        weights = ([self.config["shallow_ce_weight"]] * (len(logits) - 1)
                   + [self.config["deepest_ce_weight"]])
        return weighted_ce_loss(labels, logits, weights, sample_weight=sample_weight)


def sdn_final_weights(num_exits: int) -> list[float]:
    """SDN's final internal-classifier weights: `0.9 * i / (N - 1)` for shallow exit i,
    which for six internal classifiers is the paper's [0.15, 0.3, 0.45, 0.6, 0.75, 0.9]."""
    shallow = num_exits - 1
    return [0.9 * i / shallow for i in range(1, shallow + 1)]


@keras.saving.register_keras_serializable(package="byot_keras")
class SDNLoss(Objective):
    """`method="sdn"`: `CE(z_N) + sum_{i<N} w_i(t) * CE(z_i)`, each `w_i` ramped linearly
    from `start_weight` at epoch 0 to its final value after `ramp_epochs` epochs.

    Options: `final_weights` (None: :func:`sdn_final_weights`, one per shallow exit),
    `start_weight` (0.01), `ramp_epochs` (None: the whole run, fit's `epochs`; or
    `total_epochs` if set), `deepest_ce_weight` (1). The start value and the ramp length
    are our documented choice; the paper gives the final weights. Epochs count from 0
    (Keras), so the ramp starts one epoch later than code that counts from 1.

    Example:
        >>> [round(float(w), 3) for w in SDNLoss().schedule(5, 10, num_exits=4)["weights"]]
        [0.16, 0.31, 0.46]
    """

    method = "sdn"
    TERMS = ("ce",)
    PRESETS = {"default": dict(final_weights=None, start_weight=0.01, ramp_epochs=None,
                               total_epochs=None, deepest_ce_weight=1.0)}
    OPTION_KINDS = {
        "final_weights": optional(WEIGHT_LIST, "the paper's 0.9 * i / (N - 1)"),
        "start_weight": WEIGHT, "ramp_epochs": EPOCHS, "total_epochs": EPOCHS,
        "deepest_ce_weight": WEIGHT,
    }

    def validate(self, num_exits: int) -> None:
        self._final(num_exits)

    def _final(self, num_exits: int) -> list[float]:
        final = self.config["final_weights"]
        if final is None:
            return sdn_final_weights(num_exits)
        if len(final) != num_exits - 1:
            raise ValueError(
                f"final_weights={list(final)} needs one weight per shallow exit "
                f"({num_exits - 1} for a {num_exits}-exit model)."
            )
        return [float(w) for w in final]

    @property
    def scheduled(self) -> bool:
        return True

    def schedule(self, epoch, total_epochs, num_exits: int = 4) -> dict:
        ramp = self.config["ramp_epochs"] or total_epochs
        return {"weights": [linear_ramp(epoch, ramp, final, self.config["start_weight"])
                            for final in self._final(num_exits)]}

    def compute(self, labels, logits, features, *, sample_weight, distill, cross_replica_sum,
                epoch, total_epochs) -> dict:
        shallow = self.schedule(epoch, total_epochs, len(logits))["weights"]
        weights = list(shallow) + [self.config["deepest_ce_weight"]]
        return weighted_ce_loss(labels, logits, weights, sample_weight=sample_weight)


def hinton_kd_loss(labels, student_logits: Sequence, teacher_logits, *, sample_weight=None,
                   alpha: float = 0.5, temperature: float = 4.0, distill: bool = True
                   ) -> dict:
    """Hinton KD for every exit of a student: `sum_i (1 - alpha) * CE(z_i, y) + alpha *
    T^2 * KL(softmax_T(sg(z_t)) || softmax_T(z_i))`.

    Example:
        >>> import numpy as np
        >>> z = [np.zeros((2, 3), "float32")]
        >>> round(float(hinton_kd_loss(np.array([0, 1]), z, z[0])["kd"]), 4)
        0.0
    """
    ce = zero_like(student_logits[-1])
    kd = zero_like(ce)
    for exit_logits in student_logits:
        ce = ce + (1.0 - alpha) * batch_mean(cross_entropy(labels, exit_logits), sample_weight)
        if distill and alpha:
            kd = kd + alpha * batch_mean(
                distillation(exit_logits, teacher_logits, temperature, "kl", True),
                sample_weight,
            )
    return {"loss": ce + kd, "ce": ce, "kd": kd}
