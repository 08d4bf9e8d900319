"""The method losses (MSD, EED, the baselines, the cohort methods) against independent
NumPy references.

The references are written from the formulas in ../shared/docs/methods.md, sections 2-5,
and the option contracts in the byot_keras.losses module docstrings; they never call the
library. Where methods.md leaves a choice open, the reference follows the documented
default and says so. Inputs are fixed random float32 arrays: 4 exits (3 cohort members),
batch 8, 10 classes, logits of scale ~3, 12-d features with negative entries (so EED's
ReLU mask removes some dimensions).
"""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

from byot_keras.losses import (
    CELoss,
    DeepSupervisionLoss,
    DMLLoss,
    EEDLoss,
    MSDLoss,
    MultistructureLoss,
    SDNLoss,
    cosine_anneal,
    discontinuous_weight,
    dml_loss,
    eed_loss,
    ensemble_teacher,
    get_objective,
    hinton_kd_loss,
    linear_ramp,
    list_methods,
    method_options,
    msd_loss,
    multistructure_loss,
    sdn_final_weights,
    weighted_ce_loss,
)

BATCH, CLASSES, DIM, EXITS, MEMBERS = 8, 10, 12, 4, 3
RTOL, ATOL = 1e-5, 1e-6
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-7

RNG = np.random.default_rng(19111809)
LOGITS = [(3.0 * RNG.normal(size=(BATCH, CLASSES))).astype("float32") for _ in range(EXITS)]
FEATURES = [RNG.normal(size=(BATCH, DIM)).astype("float32") for _ in range(EXITS)]
MEMBER_LOGITS = [(3.0 * RNG.normal(size=(BATCH, CLASSES))).astype("float32")
                 for _ in range(MEMBERS)]
TEACHER_LOGITS = (3.0 * RNG.normal(size=(BATCH, CLASSES))).astype("float32")
LABEL_IDS = np.array([3, 0, 9, 1, 3, 7, 5, 2], dtype="int32")
SAMPLE_WEIGHT = np.array([1.0, 0.0, 2.5, 0.5, 1.0, 1.5, 0.25, 3.0], dtype="float32")

LABEL_FORMS = {
    "sparse_b": LABEL_IDS,
    "sparse_b1": LABEL_IDS.reshape(-1, 1),
    "one_hot": np.eye(CLASSES, dtype="float32")[LABEL_IDS],
}


# --------------------------------------------------------------------------------------
# NumPy reference (float64), from the formulas
# --------------------------------------------------------------------------------------

def np_log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def np_softmax(z):
    return np.exp(np_log_softmax(z))


def np_one_hot(labels):
    return np.eye(CLASSES)[np.asarray(labels).reshape(-1).astype(int)]


def np_cross_entropy(z):
    """Per-example CE(z, y) for the fixed labels."""
    return -(np_one_hot(LABEL_IDS) * np_log_softmax(z)).sum(axis=-1)


def np_kl(teacher_probs, student_logits, temperature):
    """Per-example KL(p_teacher || softmax_T(z_student))."""
    p = np.asarray(teacher_probs, dtype=np.float64)
    return (p * (np.log(p) - np_log_softmax(np.asarray(student_logits) / temperature))).sum(-1)


def np_soft_ce(teacher_probs, student_logits, temperature):
    """Per-example -sum p_teacher * log_softmax_T(z_student)."""
    return -(teacher_probs * np_log_softmax(np.asarray(student_logits) / temperature)).sum(-1)


def np_batch_mean(per_example, sample_weight=None):
    """Keras' "sum_over_batch_size": sum(w * l) / batch."""
    w = np.ones(BATCH) if sample_weight is None else np.asarray(sample_weight, np.float64)
    return float(np.sum(w.reshape(-1) * per_example) / BATCH)


def ref_msd(logits, features=None, *, alpha=0.1, temperature=3.0, t_squared=False, beta=0.0,
            reduction="squared_sum", sample_weight=None):
    """methods.md section 2: (1 - alpha) * sum_n CE + alpha / (N - 1) * sum_i sum_{j != i}
    KL(p_j || p_i) + beta * sum_{i<N} ||f_i - f_N||^2 (per example, averaged over the
    batch for "squared_sum"; the feature term is batch-level and takes no sample weight,
    the convention of the BYOT feature term)."""
    n = len(logits)
    ce = (1 - alpha) * sum(np_batch_mean(np_cross_entropy(z), sample_weight) for z in logits)
    kd = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                values = np_kl(np_softmax(logits[j] / temperature), logits[i], temperature)
                kd += np_batch_mean(values * (temperature ** 2 if t_squared else 1.0),
                                    sample_weight)
    kd *= alpha / (n - 1)
    feature = 0.0
    if beta:
        deepest = np.asarray(features[-1], np.float64)
        for f in features[:-1]:
            diff = np.asarray(f, np.float64) - deepest
            if reduction == "squared_sum":
                feature += np.mean(np.sum(diff ** 2, axis=-1))
            elif reduction == "mean_squared":
                feature += np.mean(diff ** 2)
            else:  # frobenius
                feature += np.sqrt(np.sum(diff ** 2))
        feature *= beta
    return {"ce": ce, "kd": kd, "feature": feature, "loss": ce + kd + feature}


def eed_mask(features):
    """1[f_i > 0 or f_hat > 0] per exit."""
    f_hat = np.mean(np.asarray(features, np.float64), axis=0)
    return [((np.asarray(f) > 0) | (f_hat > 0)).astype(np.float64) for f in features]


def ref_eed(logits, features=None, *, output_form="mse", output_weight=1.0, kd_weight=0.1,
            temperature=3.0, feature_weight=1.0, feature_mask=True, sample_weight=None):
    """methods.md section 3: sum_i CE + L_O + L_F with z_hat = mean z_i, f_hat = mean f_i."""
    ce = sum(np_batch_mean(np_cross_entropy(z), sample_weight) for z in logits)
    z_hat = np.mean(np.asarray(logits, np.float64), axis=0)
    output = 0.0
    for z in logits:
        if output_form == "mse":
            per_example = np.mean((np.asarray(z, np.float64) - z_hat) ** 2, axis=-1)
        else:
            per_example = kd_weight * temperature ** 2 * np_soft_ce(
                np_softmax(z_hat / temperature), z, temperature)
        output += np_batch_mean(per_example, sample_weight)
    output *= output_weight
    feature = 0.0
    if feature_weight:
        f_hat = np.mean(np.asarray(features, np.float64), axis=0)
        masks = eed_mask(features) if feature_mask else [1.0] * len(features)
        for f, mask in zip(features, masks):
            feature += np.mean((np.asarray(f, np.float64) - f_hat) ** 2 * mask)
        feature *= feature_weight
    return {"ce": ce, "output": output, "feature": feature, "loss": ce + output + feature}


def ref_weighted_ce(logits, weights, sample_weight=None):
    return sum(w * np_batch_mean(np_cross_entropy(z), sample_weight)
               for w, z in zip(weights, logits))


def ref_hinton(students, teacher, *, alpha=0.5, temperature=4.0, sample_weight=None):
    """methods.md section 5, applied to every exit of the student and summed."""
    p_teacher = np_softmax(np.asarray(teacher) / temperature)
    ce = sum((1 - alpha) * np_batch_mean(np_cross_entropy(z), sample_weight) for z in students)
    kd = sum(alpha * temperature ** 2 * np_batch_mean(np_kl(p_teacher, z, temperature),
                                                      sample_weight) for z in students)
    return {"ce": ce, "kd": kd, "loss": ce + kd}


def cohort_teacher_probs(members, k, *, temperature, aggregate, exclude_self):
    """softmax_T of the teacher of member k (methods.md section 4)."""
    chosen = [np.asarray(z, np.float64) for i, z in enumerate(members)
              if not (exclude_self and i == k)]
    if aggregate == "logits":
        return np_softmax(np.mean(chosen, axis=0) / temperature)
    return np.mean([np_softmax(z / temperature) for z in chosen], axis=0)


def ref_multistructure(members, *, weight=1.0, temperature=3.0, aggregate="logits",
                       exclude_self=False, sample_weight=None):
    """sum_k CE(z_k, y) + w * T^2 * KL(softmax_T(teacher) || softmax_T(z_k))."""
    ce = sum(np_batch_mean(np_cross_entropy(z), sample_weight) for z in members)
    kd = 0.0
    for k, z in enumerate(members):
        p = cohort_teacher_probs(members, k, temperature=temperature, aggregate=aggregate,
                                 exclude_self=exclude_self)
        kd += np_batch_mean(temperature ** 2 * np_kl(p, z, temperature), sample_weight)
    kd *= weight
    return {"ce": ce, "kd": kd, "loss": ce + kd}


def ref_dml(members, *, temperature=1.0, sample_weight=None):
    """sum_k CE + 1/(K-1) sum_{l != k} KL(p_l || p_k), p = softmax_T (no T^2 factor:
    methods.md's DML formula has none)."""
    count = len(members)
    ce = sum(np_batch_mean(np_cross_entropy(z), sample_weight) for z in members)
    kd = 0.0
    for k, z in enumerate(members):
        for peer_index, peer in enumerate(members):
            if peer_index != k:
                kd += np_batch_mean(np_kl(np_softmax(peer / temperature), z, temperature),
                                    sample_weight) / (count - 1)
    return {"ce": ce, "kd": kd, "loss": ce + kd}


def ref_cosine(t, t_total, begin, end):
    """beta(t) = end + (begin - end) / 2 * (1 + cos(pi * t / t_total)), held at end after."""
    progress = min(t / t_total, 1.0)
    return end + 0.5 * (begin - end) * (1.0 + math.cos(math.pi * progress))


def ref_sdn_weight(epoch, ramp_epochs, final, start):
    """The SDN public code's ramp (yigitcankaya/Shallow-Deep-Networks, train_networks.py:
    `np.minimum(max_coeffs, 0.01 + epoch * (max_coeffs / epochs))`), start generalised."""
    return min(final, start + epoch * final / ramp_epochs)


def ref_discontinuous(epoch, on_epochs, off_epochs, start, step, cap):
    """Walk the epochs: a window opens every on+off epochs and lasts `on_epochs`; the n-th
    window (0-based) uses min(cap, start + n * step); between windows the weight is 0."""
    window, position = -1, 0
    for e in range(int(math.floor(epoch)) + 1):
        position = e % (on_epochs + off_epochs)
        if position == 0:
            window += 1
    return min(cap, start + window * step) if position < on_epochs else 0.0


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------

def outputs_dict(logits=LOGITS, features=FEATURES):
    out = {f"exit_{k}": z for k, z in enumerate(logits, start=1)}
    if features is not None:
        out.update({f"feature_{k}": f for k, f in enumerate(features, start=1)})
    return out


def to_float(value):
    return float(keras.ops.convert_to_numpy(value))


def assert_terms_close(actual, expected):
    assert set(actual) == set(expected), f"terms {sorted(actual)} != {sorted(expected)}"
    for name, value in expected.items():
        np.testing.assert_allclose(to_float(actual[name]), value, rtol=RTOL, atol=ATOL,
                                   err_msg=f"term {name!r}")


def cohort_terms(objective, members=MEMBER_LOGITS, *, labels=LABEL_IDS, sample_weight=None,
                 distill=True, epoch=0.0, total_epochs=100.0):
    """A cohort objective's terms: `compute` gets the members' logits."""
    return objective.compute(labels, list(members), None, sample_weight=sample_weight,
                             distill=distill, cross_replica_sum=None, epoch=epoch,
                             total_epochs=total_epochs)


def tape_gradients(loss_fn, *arrays):
    """d loss_fn(*variables) / d each variable (unconnected = 0), float64 NumPy."""
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("GradientTape checks need the TensorFlow backend")
    variables = [[tf.Variable(a) for a in group] for group in arrays]
    with tf.GradientTape() as tape:
        value = loss_fn(*variables)
    flat = [v for group in variables for v in group]
    grads = tape.gradient(value, flat, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    grads = [g.numpy().astype(np.float64) for g in grads]
    out, offset = [], 0
    for group in variables:
        out.append(grads[offset:offset + len(group)])
        offset += len(group)
    return out


def assert_grad_close(actual, expected, what):
    assert np.abs(expected).max() > 1e-4, f"{what}: vacuous comparison"
    np.testing.assert_allclose(actual, expected, rtol=GRAD_RTOL, atol=GRAD_ATOL, err_msg=what)


# --------------------------------------------------------------------------------------
# The reference itself
# --------------------------------------------------------------------------------------

def test_reference_sanity():
    """KL(p || p) = 0, soft-CE = KL + teacher entropy, and the inputs exercise EED's mask
    (some dimensions are masked out, some kept)."""
    p = np_softmax(LOGITS[0] / 3.0)
    np.testing.assert_allclose(np_kl(p, LOGITS[0], 3.0), 0.0, atol=1e-12)
    q = np_softmax(LOGITS[1] / 3.0)
    entropy = -(q * np.log(q)).sum(-1)
    np.testing.assert_allclose(np_soft_ce(q, LOGITS[0], 3.0),
                               np_kl(q, LOGITS[0], 3.0) + entropy, rtol=1e-12)
    kept = np.mean(eed_mask(FEATURES))
    assert 0.3 < kept < 0.95, f"mask keeps {kept:.2f} of the entries"
    assert ref_discontinuous(6, 2, 1, 0.5, 0.25, 1.0) == 1.0  # the docstring's example
    assert ref_discontinuous(5, 2, 1, 0.5, 0.25, 1.0) == 0.0


# --------------------------------------------------------------------------------------
# MSD values
# --------------------------------------------------------------------------------------

MSD_OPTIONS = dict(alpha=0.3, temperature=2.5, beta=0.05)


@pytest.mark.parametrize("label_form", sorted(LABEL_FORMS))
def test_msd_loss_matches_reference(label_form):
    expected = ref_msd(LOGITS, FEATURES, **MSD_OPTIONS)
    assert min(expected.values()) > 1e-3  # every term active
    for detach in (True, False):  # detaching changes gradients, never the value
        actual = msd_loss(LABEL_FORMS[label_form], LOGITS, FEATURES, detach_teacher=detach,
                          **MSD_OPTIONS)
        assert_terms_close(actual, expected)


def test_msd_temperature_squared_scales_only_the_kd_term():
    plain = ref_msd(LOGITS, FEATURES, **MSD_OPTIONS)
    squared = ref_msd(LOGITS, FEATURES, **MSD_OPTIONS, t_squared=True)
    np.testing.assert_allclose(squared["kd"], plain["kd"] * 2.5 ** 2, rtol=1e-12)
    actual = msd_loss(LABEL_IDS, LOGITS, FEATURES, kd_temperature_squared=True, **MSD_OPTIONS)
    np.testing.assert_allclose(to_float(actual["kd"]), squared["kd"], rtol=RTOL)


@pytest.mark.parametrize("reduction", ["mean_squared", "frobenius"])
def test_msd_other_feature_reductions(reduction):
    expected = ref_msd(LOGITS, FEATURES, **MSD_OPTIONS, reduction=reduction)
    actual = msd_loss(LABEL_IDS, LOGITS, FEATURES, feature_reduction=reduction,
                      **MSD_OPTIONS)
    assert_terms_close(actual, expected)


def test_msd_sample_weight():
    expected = ref_msd(LOGITS, FEATURES, **MSD_OPTIONS, sample_weight=SAMPLE_WEIGHT)
    unweighted = ref_msd(LOGITS, FEATURES, **MSD_OPTIONS)
    assert not np.isclose(expected["ce"], unweighted["ce"], rtol=1e-3)
    assert not np.isclose(expected["kd"], unweighted["kd"], rtol=1e-3)
    for weights in (SAMPLE_WEIGHT, SAMPLE_WEIGHT.reshape(-1, 1)):
        actual = msd_loss(LABEL_IDS, LOGITS, FEATURES, sample_weight=weights, **MSD_OPTIONS)
        assert_terms_close(actual, expected)


@pytest.mark.parametrize("epoch", [3, 14])
def test_msd_object_at_an_epoch(epoch):
    """MSDLoss.terms reads beta from the cosine schedule at `epoch` of `total_epochs`."""
    loss = MSDLoss(alpha=0.2, temperature=4.0, kd_temperature_squared=True,
                   beta_begin=0.5, beta_end=0.1)
    beta = ref_cosine(epoch, 10, 0.5, 0.1)
    expected = ref_msd(LOGITS, FEATURES, alpha=0.2, temperature=4.0, t_squared=True,
                       beta=beta)
    actual = loss.terms(LABEL_IDS, outputs_dict(), epoch=float(epoch), total_epochs=10.0)
    assert_terms_close({k: actual[k] for k in expected}, expected)
    # A fixed `total_epochs` option overrides the run length given by the model.
    fixed = MSDLoss(alpha=0.2, temperature=4.0, kd_temperature_squared=True,
                    beta_begin=0.5, beta_end=0.1, total_epochs=10)
    actual = fixed.terms(LABEL_IDS, outputs_dict(), epoch=float(epoch), total_epochs=999.0)
    np.testing.assert_allclose(to_float(actual["feature"]), expected["feature"], rtol=RTOL)


def test_msd_default_object():
    """Preset "default": alpha 0.1, T 3, no T^2, beta 0.01 -> 0, squared L2."""
    expected = ref_msd(LOGITS, FEATURES, alpha=0.1, temperature=3.0,
                       beta=ref_cosine(2, 8, 0.01, 0.0))
    actual = MSDLoss().terms(LABEL_IDS, outputs_dict(), epoch=2.0, total_epochs=8.0)
    assert_terms_close({k: actual[k] for k in expected}, expected)


# --------------------------------------------------------------------------------------
# EED values
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("feature_mask", [True, False])
@pytest.mark.parametrize("output_form", ["mse", "kd"])
def test_eed_matches_reference(output_form, feature_mask):
    expected = ref_eed(LOGITS, FEATURES, output_form=output_form, feature_mask=feature_mask)
    assert_terms_close(eed_loss(LABEL_IDS, LOGITS, FEATURES, output_form=output_form,
                                feature_mask=feature_mask), expected)
    loss = EEDLoss(output_form, feature_mask=feature_mask)
    assert_terms_close(loss.terms(LABEL_IDS, outputs_dict()), expected)


@pytest.mark.parametrize("label_form", ["sparse_b1", "one_hot"])
def test_eed_label_forms(label_form):
    expected = ref_eed(LOGITS, FEATURES, output_form="kd")
    np.testing.assert_allclose(to_float(EEDLoss("kd")(LABEL_FORMS[label_form], outputs_dict())),
                               expected["loss"], rtol=RTOL)


def test_eed_mask_and_options_move_the_value():
    masked = ref_eed(LOGITS, FEATURES)["feature"]
    unmasked = ref_eed(LOGITS, FEATURES, feature_mask=False)["feature"]
    assert masked < 0.95 * unmasked
    expected = ref_eed(LOGITS, FEATURES, output_form="kd", output_weight=0.5, kd_weight=0.2,
                       temperature=2.0, feature_weight=3.0)
    actual = eed_loss(LABEL_IDS, LOGITS, FEATURES, output_form="kd", output_weight=0.5,
                      kd_weight=0.2, temperature=2.0, feature_weight=3.0)
    assert_terms_close(actual, expected)


@pytest.mark.parametrize("output_form", ["mse", "kd"])
def test_eed_sample_weight(output_form):
    """CE and the per-example output term take the weights; the feature term (a mean over
    batch and dimensions) does not."""
    expected = ref_eed(LOGITS, FEATURES, output_form=output_form, sample_weight=SAMPLE_WEIGHT)
    unweighted = ref_eed(LOGITS, FEATURES, output_form=output_form)
    assert not np.isclose(expected["output"], unweighted["output"], rtol=1e-3)
    actual = EEDLoss(output_form).terms(LABEL_IDS, outputs_dict(), SAMPLE_WEIGHT)
    assert_terms_close(actual, expected)


# --------------------------------------------------------------------------------------
# Baselines: weighted CE and Hinton KD
# --------------------------------------------------------------------------------------

def test_weighted_ce_loss():
    weights = [0.25, 0.0, 0.5, 1.5]
    expected = ref_weighted_ce(LOGITS, weights, SAMPLE_WEIGHT)
    actual = weighted_ce_loss(LABEL_IDS, LOGITS, weights, sample_weight=SAMPLE_WEIGHT)
    assert_terms_close(actual, {"ce": expected, "loss": expected})


@pytest.mark.parametrize("label_form", sorted(LABEL_FORMS))
def test_ce_and_deep_supervision(label_form):
    labels = LABEL_FORMS[label_form]
    ce = ref_weighted_ce(LOGITS, [0, 0, 0, 1.0])
    assert_terms_close(CELoss().terms(labels, outputs_dict(features=None)),
                       {"ce": ce, "loss": ce})
    dsn = ref_weighted_ce(LOGITS, [1.0] * EXITS)
    assert_terms_close(DeepSupervisionLoss().terms(labels, outputs_dict(features=None)),
                       {"ce": dsn, "loss": dsn})
    dsn = ref_weighted_ce(LOGITS, [0.3, 0.3, 0.3, 0.8], SAMPLE_WEIGHT)
    loss = DeepSupervisionLoss(shallow_ce_weight=0.3, deepest_ce_weight=0.8)
    assert_terms_close(loss.terms(labels, outputs_dict(features=None), SAMPLE_WEIGHT),
                       {"ce": dsn, "loss": dsn})


@pytest.mark.parametrize("epoch", [0, 4, 10, 25])
def test_sdn_terms_at_an_epoch(epoch):
    """Default SDN: final weights 0.9 i / (N-1), from 0.01, ramped over the run (10)."""
    finals = [0.3, 0.6, 0.9]
    weights = [ref_sdn_weight(epoch, 10, f, 0.01) for f in finals] + [1.0]
    expected = ref_weighted_ce(LOGITS, weights, SAMPLE_WEIGHT)
    actual = SDNLoss().terms(LABEL_IDS, outputs_dict(features=None), SAMPLE_WEIGHT,
                             epoch=float(epoch), total_epochs=10.0)
    assert_terms_close(actual, {"ce": expected, "loss": expected})


@pytest.mark.parametrize("label_form", ["sparse_b1", "one_hot"])
@pytest.mark.parametrize("alpha,temperature", [(0.5, 4.0), (0.3, 2.0)])
def test_hinton_kd_matches_reference(alpha, temperature, label_form):
    students = LOGITS[:3]
    expected = ref_hinton(students, TEACHER_LOGITS, alpha=alpha, temperature=temperature,
                          sample_weight=SAMPLE_WEIGHT)
    actual = hinton_kd_loss(LABEL_FORMS[label_form], students, TEACHER_LOGITS,
                            alpha=alpha, temperature=temperature, sample_weight=SAMPLE_WEIGHT)
    assert_terms_close(actual, expected)


# --------------------------------------------------------------------------------------
# Cohort values
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize("aggregate", ["logits", "probabilities"])
def test_multistructure_matches_reference(aggregate, exclude_self):
    options = dict(temperature=2.0, aggregate=aggregate, exclude_self=exclude_self)
    expected = ref_multistructure(MEMBER_LOGITS, weight=0.7, **options)
    actual = multistructure_loss(LABEL_IDS, MEMBER_LOGITS, weight=0.7, **options)
    assert_terms_close(actual, expected)
    # The object in its "constant" preset uses max_weight every epoch.
    loss = MultistructureLoss("constant", max_weight=0.7, **options)
    assert_terms_close(cohort_terms(loss, epoch=12.0), expected)


def test_multistructure_teacher_choices_differ():
    """Each option gives a different teacher on these inputs (the checks are not vacuous)."""
    values = {(a, e): ref_multistructure(MEMBER_LOGITS, aggregate=a, exclude_self=e)["kd"]
              for a in ("logits", "probabilities") for e in (False, True)}
    assert len({round(v, 6) for v in values.values()}) == 4, values


@pytest.mark.parametrize("label_form", sorted(LABEL_FORMS))
def test_multistructure_labels_and_sample_weight(label_form):
    expected = ref_multistructure(MEMBER_LOGITS, sample_weight=SAMPLE_WEIGHT)
    actual = multistructure_loss(LABEL_FORMS[label_form], MEMBER_LOGITS,
                                 sample_weight=SAMPLE_WEIGHT)
    assert_terms_close(actual, expected)


def test_ensemble_teacher_softens_to_the_mean_probability():
    """"probabilities": softmax_T(teacher logits) is the mean of softmax_T(z_l)."""
    teacher = ensemble_teacher(MEMBER_LOGITS, 2.0, "probabilities", exclude=1)
    expected = np.mean([np_softmax(MEMBER_LOGITS[i] / 2.0) for i in (0, 2)], axis=0)
    np.testing.assert_allclose(np_softmax(keras.ops.convert_to_numpy(teacher) / 2.0),
                               expected, rtol=1e-5, atol=1e-7)
    teacher = ensemble_teacher(MEMBER_LOGITS, 2.0, "logits")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(teacher),
                               np.mean(MEMBER_LOGITS, axis=0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_dml_matches_reference(temperature):
    expected = ref_dml(MEMBER_LOGITS, temperature=temperature, sample_weight=SAMPLE_WEIGHT)
    actual = dml_loss(LABEL_IDS, MEMBER_LOGITS, temperature=temperature,
                      sample_weight=SAMPLE_WEIGHT)
    assert_terms_close(actual, expected)
    loss = DMLLoss(temperature=temperature)
    assert_terms_close(cohort_terms(loss, sample_weight=SAMPLE_WEIGHT), expected)


# --------------------------------------------------------------------------------------
# distill=False / training=False keeps only the CE terms
# --------------------------------------------------------------------------------------

def test_without_distillation_only_ce_remains():
    cases = {
        "msd": (msd_loss(LABEL_IDS, LOGITS, FEATURES, distill=False, **MSD_OPTIONS),
                ref_msd(LOGITS, **{**MSD_OPTIONS, "beta": 0.0})["ce"]),
        "eed": (eed_loss(LABEL_IDS, LOGITS, FEATURES, distill=False),
                ref_eed(LOGITS, FEATURES)["ce"]),
        "hinton": (hinton_kd_loss(LABEL_IDS, LOGITS, TEACHER_LOGITS, distill=False),
                   ref_hinton(LOGITS, TEACHER_LOGITS)["ce"]),
        "multistructure": (multistructure_loss(LABEL_IDS, MEMBER_LOGITS, distill=False),
                           ref_multistructure(MEMBER_LOGITS)["ce"]),
        "dml": (dml_loss(LABEL_IDS, MEMBER_LOGITS, distill=False),
                ref_dml(MEMBER_LOGITS)["ce"]),
        "MSDLoss": (MSDLoss().terms(LABEL_IDS, outputs_dict(), training=False),
                    ref_msd(LOGITS)["ce"]),
        "EEDLoss": (EEDLoss("kd").terms(LABEL_IDS, outputs_dict(), training=False),
                    ref_eed(LOGITS, FEATURES)["ce"]),
        "MultistructureLoss": (cohort_terms(MultistructureLoss("constant"), distill=False),
                               ref_multistructure(MEMBER_LOGITS)["ce"]),
        "DMLLoss": (cohort_terms(DMLLoss(), distill=False), ref_dml(MEMBER_LOGITS)["ce"]),
    }
    for name, (terms, ce) in cases.items():
        for term, value in terms.items():
            expected = ce if term in ("ce", "loss") else 0.0
            np.testing.assert_allclose(to_float(value), expected, rtol=RTOL, atol=0,
                                       err_msg=f"{name}: term {term!r}")


# --------------------------------------------------------------------------------------
# Gradients (TensorFlow backend): which tensors the teacher terms reach
# --------------------------------------------------------------------------------------

def grad_kl_student(teacher_probs, student_logits, temperature):
    """d KL(p || softmax_T(z)) / dz = (softmax_T(z) - p) / T per example."""
    return (np_softmax(np.asarray(student_logits) / temperature) - teacher_probs) / temperature


def grad_kl_teacher(teacher_logits, student_logits, temperature):
    """d KL(softmax_T(a) || softmax_T(z)) / da = p * (log p - log q - KL) / T."""
    log_p = np_log_softmax(np.asarray(teacher_logits) / temperature)
    log_q = np_log_softmax(np.asarray(student_logits) / temperature)
    p = np.exp(log_p)
    kl = (p * (log_p - log_q)).sum(-1, keepdims=True)
    return p * (log_p - log_q - kl) / temperature


@pytest.mark.parametrize("detach,t_squared", [(True, False), (True, True), (False, False)])
def test_msd_kd_gradient(detach, t_squared):
    """detach_teacher=True: d kd / d z_k is what it would be with every teacher a constant
    (only z_k's student role); False adds the teacher-role gradient of every pair."""
    alpha, temperature = 0.3, 2.5
    (grads,) = tape_gradients(
        lambda z: msd_loss(LABEL_IDS, z, alpha=alpha, temperature=temperature,
                           kd_temperature_squared=t_squared, detach_teacher=detach)["kd"],
        LOGITS)
    scale = alpha / (EXITS - 1) / BATCH * (temperature ** 2 if t_squared else 1.0)
    for k in range(EXITS):
        as_student = sum(grad_kl_student(np_softmax(LOGITS[j] / temperature), LOGITS[k],
                                         temperature) for j in range(EXITS) if j != k)
        as_teacher = sum(grad_kl_teacher(LOGITS[k], LOGITS[i], temperature)
                         for i in range(EXITS) if i != k)
        assert np.abs(as_teacher).max() > 1e-3  # the two cases really differ
        expected = scale * (as_student if detach else as_student + as_teacher)
        assert_grad_close(grads[k], expected, f"d kd / d z_{k + 1}, detach={detach}")


@pytest.mark.parametrize("detach", [True, False])
def test_msd_feature_and_ce_gradients(detach):
    """Feature term beta * sum_{i<N} mean_b ||f_i - f_N||^2: detach_feature_teacher=True
    stops it at f_N; methods.md's loss3 (no sg) is the default, False. CE reaches every
    exit."""
    alpha, beta = 0.3, 0.05

    def ce_plus_feature(z, f):
        terms = msd_loss(LABEL_IDS, z, f, alpha=alpha, beta=beta,
                         detach_feature_teacher=detach)
        return terms["ce"] + terms["feature"]

    logit_grads, feature_grads = tape_gradients(ce_plus_feature, LOGITS, FEATURES)
    deepest = FEATURES[-1].astype(np.float64)
    diffs = [f.astype(np.float64) - deepest for f in FEATURES[:-1]]
    for k, diff in enumerate(diffs):
        assert_grad_close(feature_grads[k], beta * 2.0 * diff / BATCH, f"d feature / d f_{k}")
    if detach:
        assert np.all(feature_grads[-1] == 0.0), "the detached feature term reached f_N"
    else:
        assert_grad_close(feature_grads[-1], -beta * 2.0 * sum(diffs) / BATCH, "d / d f_N")
    target = np_one_hot(LABEL_IDS)
    for k in range(EXITS):
        assert_grad_close(logit_grads[k], (1 - alpha) * (np_softmax(LOGITS[k]) - target) / BATCH,
                          f"d ce / d z_{k + 1}")


def test_eed_output_gradient_mse():
    """d L_O / d z_i = 2 / C * (z_i - z_hat) / batch with z_hat constant. (For the MSE form
    the z_hat path sums to zero over exits, so this value alone cannot tell sg from no sg;
    the KD-form and feature checks below can.)"""
    (grads,) = tape_gradients(
        lambda z: eed_loss(LABEL_IDS, z, feature_weight=0.0)["output"], LOGITS)
    z_hat = np.mean(np.asarray(LOGITS, np.float64), axis=0)
    for k in range(EXITS):
        expected = 2.0 / CLASSES * (LOGITS[k] - z_hat) / BATCH
        assert_grad_close(grads[k], expected, f"d output / d z_{k + 1}")


def test_eed_output_gradient_kd_stops_at_the_ensemble():
    """KD form: d / d z_i = 0.1 * T^2 * (softmax_T(z_i) - softmax_T(z_hat)) / T / batch; a
    gradient through z_hat would add sum_j d SoftCE_j / d z_hat / N."""
    temperature = 3.0
    (grads,) = tape_gradients(
        lambda z: eed_loss(LABEL_IDS, z, output_form="kd", feature_weight=0.0)["output"],
        LOGITS)
    z_hat = np.mean(np.asarray(LOGITS, np.float64), axis=0)
    p_hat = np_softmax(z_hat / temperature)
    for k in range(EXITS):
        expected = 0.1 * temperature ** 2 * grad_kl_student(p_hat, LOGITS[k], temperature)
        assert_grad_close(grads[k], expected / BATCH, f"d output / d z_{k + 1}")


def test_eed_feature_gradient_stops_at_the_ensemble():
    """d L_F / d f_i = 2 * (f_i - f_hat) * mask_i / (batch * dim), f_hat constant."""
    (grads,) = tape_gradients(
        lambda f: eed_loss(LABEL_IDS, LOGITS, f)["feature"], FEATURES)
    f_hat = np.mean(np.asarray(FEATURES, np.float64), axis=0)
    masks = eed_mask(FEATURES)
    through_target = -sum(2.0 * (f - f_hat) * m for f, m in zip(FEATURES, masks))
    assert np.abs(through_target).max() > 1e-2  # without sg the gradient would differ
    for k in range(EXITS):
        expected = 2.0 * (FEATURES[k] - f_hat) * masks[k] / (BATCH * DIM)
        assert_grad_close(grads[k], expected, f"d feature / d f_{k + 1}")


@pytest.mark.parametrize("aggregate,exclude_self", [("logits", False), ("probabilities", True)])
def test_multistructure_teacher_is_constant(aggregate, exclude_self):
    """d kd / d z_k = w * T^2 * (softmax_T(z_k) - p_teacher) / T / batch."""
    weight, temperature = 0.7, 2.0
    (grads,) = tape_gradients(
        lambda z: multistructure_loss(LABEL_IDS, z, weight=weight, temperature=temperature,
                                      aggregate=aggregate, exclude_self=exclude_self)["kd"],
        MEMBER_LOGITS)
    for k in range(MEMBERS):
        p = cohort_teacher_probs(MEMBER_LOGITS, k, temperature=temperature,
                                 aggregate=aggregate, exclude_self=exclude_self)
        expected = weight * temperature ** 2 * grad_kl_student(p, MEMBER_LOGITS[k],
                                                               temperature) / BATCH
        assert_grad_close(grads[k], expected, f"d kd / d z_{k + 1}")


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_dml_peers_are_constant(temperature):
    (grads,) = tape_gradients(
        lambda z: dml_loss(LABEL_IDS, z, temperature=temperature)["kd"], MEMBER_LOGITS)
    for k in range(MEMBERS):
        expected = sum(grad_kl_student(np_softmax(MEMBER_LOGITS[peer] / temperature),
                                       MEMBER_LOGITS[k], temperature)
                       for peer in range(MEMBERS) if peer != k) / (MEMBERS - 1) / BATCH
        assert_grad_close(grads[k], expected, f"d kd / d z_{k + 1}")


def test_hinton_teacher_gets_no_gradient():
    alpha, temperature = 0.3, 2.0
    student_grads, teacher_grads = tape_gradients(
        lambda s, t: hinton_kd_loss(LABEL_IDS, s, t[0], alpha=alpha,
                                    temperature=temperature)["loss"],
        LOGITS[:2], [TEACHER_LOGITS])
    assert np.all(teacher_grads[0] == 0.0), "the teacher received a gradient"
    p_teacher = np_softmax(TEACHER_LOGITS / temperature)
    target = np_one_hot(LABEL_IDS)
    for k, z in enumerate(LOGITS[:2]):
        expected = ((1 - alpha) * (np_softmax(z) - target)
                    + alpha * temperature ** 2 * grad_kl_student(p_teacher, z, temperature))
        assert_grad_close(student_grads[k], expected / BATCH, f"d loss / d z_{k + 1}")


def test_ce_loss_trains_only_the_deepest_exit():
    (grads,) = tape_gradients(
        lambda z: CELoss()(LABEL_IDS, outputs_dict(z, None)), LOGITS)
    for k in range(EXITS - 1):
        assert np.all(grads[k] == 0.0), f"shallow exit {k + 1} received a gradient"
    expected = (np_softmax(LOGITS[-1]) - np_one_hot(LABEL_IDS)) / BATCH
    assert_grad_close(grads[-1], expected, "d ce / d z_N")


# --------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("begin,end,total", [(0.01, 0.0, 10), (1.0, 0.2, 7), (0.0, 0.5, 4)])
def test_cosine_anneal(begin, end, total):
    np.testing.assert_allclose(to_float(cosine_anneal(0, total, begin, end)), begin, rtol=1e-6)
    np.testing.assert_allclose(to_float(cosine_anneal(total / 2, total, begin, end)),
                               (begin + end) / 2, rtol=1e-6)
    for epoch in (total, total + 1, 3 * total):
        np.testing.assert_allclose(to_float(cosine_anneal(epoch, total, begin, end)), end,
                                   rtol=1e-6, atol=1e-7)
    epochs = np.linspace(0, 1.2 * total, 13).astype("float32")  # one tensor of epochs
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(cosine_anneal(keras.ops.convert_to_tensor(epochs), total,
                                                 begin, end)),
        [ref_cosine(float(e), total, begin, end) for e in epochs], rtol=1e-5, atol=1e-7)


def test_linear_ramp():
    for epoch in (0, 1, 2.5, 5, 6, 30):
        np.testing.assert_allclose(to_float(linear_ramp(epoch, 8, 0.6, 0.05)),
                                   ref_sdn_weight(epoch, 8, 0.6, 0.05), rtol=1e-6)


def test_msd_schedule():
    loss = MSDLoss(beta_begin=0.2, beta_end=0.02)
    assert loss.scheduled and loss.uses_features
    for epoch in (0, 5, 10, 15, 20, 25):
        np.testing.assert_allclose(to_float(loss.schedule(epoch, 20)["beta"]),
                                   ref_cosine(epoch, 20, 0.2, 0.02), rtol=1e-5)
    assert not MSDLoss(beta_begin=0.1, beta_end=0.1).scheduled
    no_features = MSDLoss(beta_begin=0.0, beta_end=0.0)
    assert not no_features.uses_features
    expected = ref_msd(LOGITS)
    actual = no_features.terms(LABEL_IDS, outputs_dict(features=None), epoch=3.0,
                               total_epochs=10.0)
    assert_terms_close({k: actual[k] for k in expected}, expected)


def test_sdn_final_weights():
    np.testing.assert_allclose(sdn_final_weights(7), [0.15, 0.3, 0.45, 0.6, 0.75, 0.9],
                               rtol=1e-12)
    np.testing.assert_allclose(sdn_final_weights(4), [0.3, 0.6, 0.9], rtol=1e-12)


def test_sdn_schedule():
    default = SDNLoss()
    for epoch in (0, 1, 4, 9, 10, 40):
        actual = [to_float(w) for w in default.schedule(epoch, 10, num_exits=7)["weights"]]
        expected = [ref_sdn_weight(epoch, 10, f, 0.01) for f in sdn_final_weights(7)]
        np.testing.assert_allclose(actual, expected, rtol=1e-6)
        if epoch >= 10:  # capped at the final weights
            np.testing.assert_allclose(actual, sdn_final_weights(7), rtol=1e-6)
    custom = SDNLoss(final_weights=[0.2, 0.4, 0.5], start_weight=0.0, ramp_epochs=5)
    for epoch in (0, 2, 5, 8):  # ramp_epochs wins over the run length
        actual = [to_float(w) for w in custom.schedule(epoch, 100)["weights"]]
        np.testing.assert_allclose(
            actual, [ref_sdn_weight(epoch, 5, f, 0.0) for f in (0.2, 0.4, 0.5)], rtol=1e-6,
            atol=1e-8)
    with pytest.raises(ValueError, match="one weight per shallow exit"):
        SDNLoss(final_weights=[0.5, 0.9]).validate(4)


DISCONTINUOUS_CASES = [
    (2, 1, 0.5, 0.25, 1.0),
    (10, 5, 0.25, 0.25, 1.0),
    (3, 0, 0.1, 0.2, 0.5),  # no off epochs: always on, still growing per window
    (1, 2, 0.3, 0.0, 1.0),  # no growth
]


@pytest.mark.parametrize("on,off,start,step,cap", DISCONTINUOUS_CASES)
def test_discontinuous_weight(on, off, start, step, cap):
    epochs = np.array(list(range(60)) + [4.5, 17.25], dtype="float32")
    tensor = keras.ops.convert_to_tensor(epochs)  # one call for every epoch
    actual = keras.ops.convert_to_numpy(discontinuous_weight(tensor, on, off, start, step, cap))
    expected = [ref_discontinuous(float(e), on, off, start, step, cap) for e in epochs]
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=0)
    assert max(actual) == pytest.approx(min(cap, start + (59 // (on + off)) * step))
    for epoch in (0, 7, 31):  # plain Python numbers
        assert to_float(discontinuous_weight(epoch, on, off, start, step, cap)) == (
            pytest.approx(ref_discontinuous(epoch, on, off, start, step, cap)))


def test_multistructure_presets_schedules():
    discontinuous = MultistructureLoss()  # the first preset is the default
    assert discontinuous.preset == "discontinuous" and discontinuous.scheduled
    weights = keras.ops.convert_to_numpy(
        discontinuous.schedule(keras.ops.convert_to_tensor(np.arange(60.0)), 100)["weight"])
    np.testing.assert_allclose(
        weights, [ref_discontinuous(e, 10, 5, 0.25, 0.25, 1.0) for e in range(60)], rtol=1e-6)
    assert 0.0 in weights and max(weights) == pytest.approx(1.0)
    for epoch in (9, 10, 29, 46):  # Python numbers give Python floats
        weight = discontinuous.schedule(epoch, 100)["weight"]
        assert isinstance(weight, float)
        assert weight == pytest.approx(ref_discontinuous(epoch, 10, 5, 0.25, 0.25, 1.0))
    constant = MultistructureLoss("constant")
    assert not constant.scheduled
    assert all(constant.schedule(e, 100)["weight"] == pytest.approx(1.0) for e in range(60))
    # The weight reaches the loss: 0 in an off window, the window's weight in an on window.
    unit_kd = ref_multistructure(MEMBER_LOGITS)["kd"]
    off = cohort_terms(discontinuous, epoch=12.0)
    assert to_float(off["kd"]) == 0.0
    on = cohort_terms(discontinuous, epoch=16.0)
    np.testing.assert_allclose(to_float(on["kd"]), 0.5 * unit_kd, rtol=RTOL)
    np.testing.assert_allclose(to_float(cohort_terms(constant, epoch=12.0)["kd"]), unit_kd,
                               rtol=RTOL)


# --------------------------------------------------------------------------------------
# Objects: registry, construction, serialization
# --------------------------------------------------------------------------------------

COHORT = ("multistructure", "dml")
MULTI_EXIT = ("byot", "ce", "cskd", "deep_supervision", "eed", "msd", "one", "sdn")
ALL_METHODS = MULTI_EXIT + COHORT
OVERRIDES = {
    "byot": {"temperature": 4.0, "feature_exits": [1, 3]},
    "ce": {},
    "cskd": {"temperature": 3.0, "kd_weight": 0.5},
    "one": {"temperature": 2.0, "ramp": "linear", "ramp_epochs": 5},
    "deep_supervision": {"shallow_ce_weight": 0.5},
    "eed": {"feature_mask": False, "temperature": 2.0},
    "msd": {"alpha": 0.25, "detach_teacher": False, "total_epochs": 20},
    "sdn": {"final_weights": [0.1, 0.2, 0.3], "ramp_epochs": 4},
    "multistructure": {"aggregate": "probabilities", "exclude_self": True, "on_epochs": 3},
    "dml": {"temperature": 2.0},
}


def test_list_methods():
    assert list_methods() == sorted(MULTI_EXIT)
    assert list_methods("cohort") == sorted(COHORT)
    with pytest.raises(ValueError, match=r"Unknown kind 'single'.*multi_exit.*cohort"):
        list_methods("single")


def objective_value(objective, method):
    if method in COHORT:
        return to_float(cohort_terms(objective, epoch=16.0)["loss"])
    # CS-KD trains on class pairs: the batch's examples 2i and 2i + 1 share a label.
    labels = np.repeat(LABEL_IDS[::2], 2) if objective.PAIRED_BATCHES else LABEL_IDS
    return to_float(objective.terms(labels, outputs_dict(), epoch=3.0, total_epochs=10.0)
                    ["loss"])


@pytest.mark.parametrize("with_overrides", [False, True])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_objects_round_trip(method, with_overrides):
    overrides = OVERRIDES[method] if with_overrides else {}
    presets = list(method_options(method))
    for preset in presets:
        loss = get_objective(method, preset, **overrides)
        assert loss.method == method and loss.preset == preset
        assert loss.config == {**method_options(method)[preset], **overrides}
        config = loss.get_config()
        assert config == {"preset": preset, **overrides}
        restored = type(loss).from_config(json.loads(json.dumps(config)))
        assert restored.config == loss.config and repr(restored) == repr(loss)
        serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
        revived = keras.saving.deserialize_keras_object(serialized)
        assert type(revived) is type(loss) and revived.config == loss.config
        if with_overrides and preset == presets[-1]:  # and the revived object computes
            value = objective_value(loss, method)
            assert np.isfinite(value) and value > 0
            assert objective_value(revived, method) == pytest.approx(value, rel=1e-7)
    default = get_objective(method)
    assert default.preset == presets[0] and default.get_config() == {"preset": presets[0]}
    assert get_objective(default) is default


def test_unknown_method_lists_every_method():
    with pytest.raises(ValueError, match="Unknown method 'msdd'") as info:
        get_objective("msdd")
    missing = [m for m in ALL_METHODS if m not in str(info.value)]
    assert not missing, f"{missing} missing from: {info.value}"


@pytest.mark.parametrize("method", ALL_METHODS)
def test_unknown_preset_and_option_list_the_valid_ones(method):
    with pytest.raises(ValueError, match=f"Unknown {method} preset 'nope'") as info:
        get_objective(method, "nope")
    missing = [p for p in method_options(method) if p not in str(info.value)]
    assert not missing, f"{missing} missing from: {info.value}"
    with pytest.raises(ValueError, match="temprature") as info:
        get_objective(method, temprature=2.0)
    options = next(iter(method_options(method).values()))
    missing = [o for o in options if o not in str(info.value)]
    assert not missing, f"{missing} missing from: {info.value}"


def test_objective_instance_with_options_is_rejected():
    with pytest.raises(ValueError, match="give one or the other"):
        get_objective(MSDLoss(), alpha=0.2)


@pytest.mark.parametrize("method", ["msd", "eed", "multistructure", "dml"])
@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_non_positive_temperature(method, temperature):
    with pytest.raises(ValueError, match=f"temperature must be a number > 0, got {temperature}"):
        get_objective(method, temperature=temperature)


@pytest.mark.parametrize("make,pattern", [
    (lambda: EEDLoss(output_form="l1"), r"output_form 'l1'.*mse.*kd"),
    (lambda: eed_loss(LABEL_IDS, LOGITS, FEATURES, output_form="l1"),
     r"output_form 'l1'.*mse.*kd"),
    (lambda: MultistructureLoss(aggregate="median"), r"aggregate 'median'.*logits.*probab"),
    (lambda: multistructure_loss(LABEL_IDS, MEMBER_LOGITS, aggregate="median"),
     r"aggregate 'median'.*logits.*probabilities"),
    (lambda: MultistructureLoss(schedule="cyclic"), r"schedule 'cyclic'.*discontinuous.*const"),
    (lambda: MSDLoss(feature_reduction="l1"), r"feature_reduction 'l1'.*frobenius.*squared_"),
    (lambda: discontinuous_weight(3, 0, 0, 0.1, 0.1, 1.0), r"on_epochs must be >= 1"),
    (lambda: msd_loss(LABEL_IDS, LOGITS, None, beta=0.1), "no features"),
    (lambda: msd_loss(LABEL_IDS, LOGITS, FEATURES[:-1] + [FEATURES[-1][:, :6]], beta=0.1),
     r"shapes differ: \(12,\) vs \(6,\)"),
    (lambda: eed_loss(LABEL_IDS, LOGITS, None), "no features"),
    (lambda: multistructure_loss(LABEL_IDS, MEMBER_LOGITS[:1]), "at least two members"),
    (lambda: dml_loss(LABEL_IDS, MEMBER_LOGITS[:1]), "at least two members"),
    (lambda: weighted_ce_loss(LABEL_IDS, LOGITS, [1.0, 1.0]), "2 weights for 4 exits"),
], ids=["eed-form", "eed_loss-form", "ms-aggregate", "ms_loss-aggregate", "ms-schedule",
        "msd-reduction", "window", "msd-no-features", "msd-shapes", "eed-no-features",
        "ms-one-member", "dml-one-member", "ce-weights"])
def test_bad_values_raise_clearly(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()
