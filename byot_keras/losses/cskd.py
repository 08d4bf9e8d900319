"""CS-KD, class-wise self-knowledge distillation (Yun, Park, Lee & Shin, "Regularizing
Class-wise Predictions via Self-knowledge Distillation", CVPR 2020, arXiv 2003.13964).

A network learns from its own prediction on *another* image of the same class: for each
training image `x` with label `y` and a partner `x'` of class `y`,
`CE(z(x), y) + kd_weight * T^2 * KL(softmax_T(sg(z(x'))) || softmax_T(z(x)))`.
Formula and defaults (T = 4, lambda = 1): ../shared/docs/methods.md, section 5.

Training batches must hold class pairs interleaved, `x_1, x'_1, x_2, x'_2, ...`
(`byot_keras.data.pipeline.pair_by_class`, or `training_dataset(..., class_pairs=True)`):
pairs stay together when a `tf.distribute` strategy splits a batch into contiguous
per-replica slices of even size. Evaluation batches need no pairs.
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

PAIRING_HELP = ("CS-KD trains on class-paired batches (x_1, x'_1, x_2, x'_2, ...) where each "
                "x'_i has x_i's label: build them with byot_keras.data.pipeline.pair_by_class "
                "or training_dataset(..., class_pairs=True), and use an even batch size. "
                "fit shuffles NumPy arrays example by example, which splits pairs: pass "
                "paired arrays with shuffle=False, or a paired tf.data.Dataset.")


def anchors_and_partners(values):
    """Splits an interleaved batch `(a_1, p_1, a_2, p_2, ...)` into `(a, p)` along axis 0."""
    pairs = ops.reshape(values, (-1, 2, *values.shape[1:]))
    return pairs[:, 0], pairs[:, 1]


def cskd_loss(labels, logits: Sequence, *, temperature: float = 4.0, kd_weight: float = 1.0,
              kd_temperature_squared: bool = True, sample_weight=None, distill: bool = True
              ) -> dict:
    """CS-KD for every exit in `logits` (the plain network: one).

    With `distill` (training), the batch is class pairs, interleaved: for each exit,
    `CE(z(a_i), y_i) + kd_weight * T^2 * KL(softmax_T(sg(z(p_i))) || softmax_T(z(a_i)))`
    averaged over the anchors `a_i`; the partners `p_i` give only the (stop-gradient)
    soft target, as in the paper. Without `distill` (evaluation), `CE` over every example.
    `sample_weight` weighs the anchors (a partner's weight is not used).

    Example:
        >>> import numpy as np
        >>> z = np.array([[2.0, 0.0], [0.0, 2.0]], "float32")  # a pair that disagrees
        >>> terms = cskd_loss(np.array([0, 0]), [z])
        >>> round(float(terms["ce"]), 4), round(float(terms["kd"]), 4)
        (0.1269, 1.9593)
    """
    ce = zero_like(logits[-1])
    kd = zero_like(ce)
    if not distill:
        for exit_logits in logits:
            ce = ce + batch_mean(cross_entropy(labels, exit_logits), sample_weight)
        return {"loss": ce, "ce": ce, "kd": kd}
    anchor_labels, _ = anchors_and_partners(labels)
    anchor_weight = None
    if sample_weight is not None:
        anchor_weight, _ = anchors_and_partners(ops.reshape(sample_weight, (-1,)))
    for exit_logits in logits:
        anchor, partner = anchors_and_partners(exit_logits)
        ce = ce + batch_mean(cross_entropy(anchor_labels, anchor), anchor_weight)
        kd = kd + kd_weight * batch_mean(
            distillation(anchor, partner, temperature, "kl", kd_temperature_squared),
            anchor_weight)
    return {"loss": ce + kd, "ce": ce, "kd": kd}


@keras.saving.register_keras_serializable(package="byot_keras")
class CSKDLoss(Objective):
    """`method="cskd"`: class-wise self-knowledge distillation on the plain network (the
    zoo builds no shallow exit for it by default; given exits, each gets the same loss).

    Options: `temperature` (4), `kd_weight` (lambda, 1), `kd_temperature_squared` (True:
    the KL is multiplied by T^2, the usual scaling of a KD term; methods.md does not
    say). Training batches must be class pairs (see the module docstring); a batch whose
    pairs differ in label stops training with an error saying how to build paired
    batches.

    Example:
        >>> CSKDLoss(temperature=3.0).config["temperature"]
        3.0
    """

    method = "cskd"
    TERMS = ("ce", "kd")
    PRESETS = {"default": dict(temperature=4.0, kd_weight=1.0, kd_temperature_squared=True)}
    OPTION_KINDS = {"temperature": POSITIVE, "kd_weight": WEIGHT, "kd_temperature_squared": FLAG}
    PLAIN_NETWORK = True
    PAIRED_BATCHES = True

    def compute(self, labels, logits, features, *, sample_weight, distill, cross_replica_sum,
                epoch, total_epochs) -> dict:
        if distill:
            labels, logits = check_class_pairs(labels, logits)
        return cskd_loss(labels, logits, temperature=self.config["temperature"],
                         kd_weight=self.config["kd_weight"],
                         kd_temperature_squared=self.config["kd_temperature_squared"],
                         sample_weight=sample_weight, distill=distill)


def check_class_pairs(labels, logits: Sequence):
    """`(labels, logits)`, computed only after checking (at run time, inside `fit` too)
    that the batch is even and its pairs share a label; else an error that says how to
    build paired batches."""
    if keras.backend.backend() != "tensorflow":
        return labels, logits  # the check needs graph-mode assertions
    import tensorflow as tf

    labels = tf.convert_to_tensor(labels)
    even = tf.debugging.assert_equal(
        tf.shape(labels)[0] % 2, 0,
        message=f"The batch has an odd number of examples. {PAIRING_HELP}")
    with tf.control_dependencies([even]):
        anchor, partner = anchors_and_partners(labels)
    same = tf.debugging.assert_equal(
        anchor, partner, message=f"A batch's pairs differ in label. {PAIRING_HELP}")
    with tf.control_dependencies([even, same]):
        return tf.identity(labels), [tf.identity(z) for z in logits]
