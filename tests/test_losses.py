"""The BYOT loss against an independent NumPy reference.

The reference below is written from the formulas in ../shared/docs/methods.md, section 1
(and the option contract in byot_keras/losses.py docstrings); it does not call the
library. Inputs are fixed random arrays: 4 exits, batch 5, 7 classes, 6-d features.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from byot_keras.losses import BYOTLoss, byot_loss
from byot_keras.training import SelfDistillationModel

BATCH, CLASSES, DIM, EXITS = 5, 7, 6, 4
RTOL, ATOL = 1e-5, 1e-6

# The two presets, as methods.md states them (the reference's own copy, not the library's).
REFERENCE_PRESETS = {
    "official": dict(
        shallow_ce_weight=0.7, deepest_ce_weight=1.0, kd_weight=0.3, temperature=3.0,
        kd_form="soft_ce", kd_temperature_squared=False, kd_exits="all",
        feature_weight=0.03, feature_reduction="frobenius", feature_exits="all_but_last",
        adaptation=True,
    ),
    "paper": dict(
        shallow_ce_weight=0.7, deepest_ce_weight=1.0, kd_weight=0.3, temperature=3.0,
        kd_form="kl", kd_temperature_squared=True, kd_exits="all",
        feature_weight=0.03, feature_reduction="squared_sum", feature_exits="all",
        adaptation=False,
    ),
}
OPTION_NAMES = sorted(REFERENCE_PRESETS["official"])


# --------------------------------------------------------------------------------------
# NumPy reference
# --------------------------------------------------------------------------------------

def np_log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def np_one_hot(labels, classes=CLASSES):
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[-1] == classes:
        return labels.astype(np.float64)
    ids = labels.reshape(-1).astype(int)
    return np.eye(classes)[ids]


def resolve_exits(choice, num_exits=EXITS):
    shallow = list(range(1, num_exits))
    if choice == "all":
        return shallow
    if choice == "all_but_last":
        return shallow[:-1]
    return list(choice)


def reference_terms(labels, logits, features, cfg, sample_weight=None):
    """Every term of the BYOT loss, in float64."""
    logits = [np.asarray(z, dtype=np.float64) for z in logits]
    target = np_one_hot(labels)
    batch = target.shape[0]
    weights = (np.ones(batch) if sample_weight is None
               else np.asarray(sample_weight, dtype=np.float64).reshape(-1))

    def batch_mean(per_example):  # sum(w * l) / batch
        return float(np.sum(weights * per_example) / batch)

    def cross_entropy(z):
        return -(target * np_log_softmax(z)).sum(axis=-1)

    teacher = logits[-1]
    ce = cfg["deepest_ce_weight"] * batch_mean(cross_entropy(teacher))
    for student in logits[:-1]:
        ce += cfg["shallow_ce_weight"] * batch_mean(cross_entropy(student))

    temperature = cfg["temperature"]
    teacher_log_p = np_log_softmax(teacher / temperature)
    teacher_p = np.exp(teacher_log_p)
    kd = 0.0
    for k in resolve_exits(cfg["kd_exits"], len(logits)):
        student_log_p = np_log_softmax(logits[k - 1] / temperature)
        if cfg["kd_form"] == "kl":
            per_example = (teacher_p * (teacher_log_p - student_log_p)).sum(axis=-1)
        else:
            per_example = -(teacher_p * student_log_p).sum(axis=-1)
        if cfg["kd_temperature_squared"]:
            per_example = per_example * temperature ** 2
        kd += cfg["kd_weight"] * batch_mean(per_example)

    feature = 0.0
    if cfg["feature_weight"]:
        deepest = np.asarray(features[-1], dtype=np.float64)
        for k in resolve_exits(cfg["feature_exits"], len(logits)):
            diff = np.asarray(features[k - 1], dtype=np.float64) - deepest
            if cfg["feature_reduction"] == "frobenius":
                distance = np.sqrt(np.sum(diff ** 2))
            elif cfg["feature_reduction"] == "squared_sum":
                distance = np.mean(np.sum(diff ** 2, axis=-1))
            else:  # mean_squared
                distance = np.mean(diff ** 2)
            feature += cfg["feature_weight"] * distance
    return {"ce": ce, "kd": kd, "feature": feature, "loss": ce + kd + feature}


def library_kwargs(cfg, num_exits=EXITS):
    """The reference configuration as `byot_loss` keyword arguments."""
    kwargs = {k: v for k, v in cfg.items() if k != "adaptation"}
    kwargs["kd_exits"] = resolve_exits(cfg["kd_exits"], num_exits)
    kwargs["feature_exits"] = resolve_exits(cfg["feature_exits"], num_exits)
    return kwargs


# --------------------------------------------------------------------------------------
# Fixed inputs
# --------------------------------------------------------------------------------------

RNG = np.random.default_rng(20190805)
LOGITS = [(2.0 * RNG.normal(size=(BATCH, CLASSES))).astype("float32") for _ in range(EXITS)]
FEATURES = [RNG.normal(size=(BATCH, DIM)).astype("float32") for _ in range(EXITS)]
LABEL_IDS = np.array([0, 3, 6, 2, 3], dtype="int32")
SAMPLE_WEIGHT = np.array([1.0, 0.0, 2.5, 0.5, 1.0], dtype="float32")

LABEL_FORMS = {
    "sparse_b": LABEL_IDS,
    "sparse_b1": LABEL_IDS.reshape(-1, 1),
    "one_hot": np.eye(CLASSES, dtype="float32")[LABEL_IDS],
}


def outputs_dict(logits=LOGITS, features=FEATURES):
    out = {f"exit_{k}": z for k, z in enumerate(logits, start=1)}
    out.update({f"feature_{k}": f for k, f in enumerate(features, start=1)})
    return out


def to_float(value):
    return float(keras.ops.convert_to_numpy(value))


def assert_terms_close(actual, expected):
    for name in ("ce", "kd", "feature", "loss"):
        np.testing.assert_allclose(to_float(actual[name]), expected[name], rtol=RTOL,
                                   atol=ATOL, err_msg=f"term {name!r}")


# --------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------

def test_reference_sanity():
    """The reference itself: KL = soft-CE - teacher entropy, and every term is active."""
    cfg = dict(REFERENCE_PRESETS["official"])
    soft = reference_terms(LABEL_IDS, LOGITS, FEATURES, cfg)
    kl = reference_terms(LABEL_IDS, LOGITS, FEATURES, {**cfg, "kd_form": "kl"})
    teacher_p = np.exp(np_log_softmax(LOGITS[-1].astype(np.float64) / 3.0))
    entropy = -(teacher_p * np.log(teacher_p)).sum(axis=-1).mean()
    np.testing.assert_allclose(soft["kd"] - kl["kd"], 0.3 * 3 * entropy, rtol=1e-12)
    assert soft["ce"] > 0 and soft["kd"] > 0 and soft["feature"] > 0


@pytest.mark.parametrize("label_form", sorted(LABEL_FORMS))
@pytest.mark.parametrize("preset", sorted(REFERENCE_PRESETS))
def test_presets_match_reference(preset, label_form):
    labels = LABEL_FORMS[label_form]
    cfg = REFERENCE_PRESETS[preset]
    expected = reference_terms(LABEL_IDS, LOGITS, FEATURES, cfg)

    assert_terms_close(byot_loss(labels, LOGITS, FEATURES, **library_kwargs(cfg)), expected)

    loss = BYOTLoss(preset)
    assert_terms_close(loss.terms(labels, outputs_dict()), expected)
    np.testing.assert_allclose(to_float(loss(labels, outputs_dict())), expected["loss"],
                               rtol=RTOL, atol=ATOL)


def test_byot_loss_defaults_are_the_official_form():
    """`byot_loss` without keywords: official weights and T, KD on every shallow exit and
    the feature term on every shallow exit (exit lists default to all shallow exits)."""
    cfg = {**REFERENCE_PRESETS["official"], "feature_exits": "all"}
    expected = reference_terms(LABEL_IDS, LOGITS, FEATURES, cfg)
    assert_terms_close(byot_loss(LABEL_IDS, LOGITS, FEATURES), expected)


OVERRIDES = [
    ("official", {"kd_temperature_squared": True}),
    ("paper", {"kd_temperature_squared": False}),
    ("official", {"kd_form": "kl"}),
    ("paper", {"kd_form": "soft_ce"}),
    ("official", {"feature_reduction": "squared_sum"}),
    ("official", {"feature_reduction": "mean_squared"}),
    ("paper", {"feature_reduction": "frobenius"}),
    ("paper", {"feature_reduction": "mean_squared"}),
    ("official", {"feature_exits": "all"}),
    ("official", {"feature_exits": [3]}),
    ("paper", {"feature_exits": "all_but_last"}),
    ("paper", {"feature_exits": [1, 3]}),
    ("official", {"kd_exits": "all_but_last"}),
    ("official", {"kd_exits": [2]}),
    ("paper", {"kd_exits": [1, 3]}),
    ("official", {"temperature": 4.0}),
    ("paper", {"temperature": 1.5}),
    ("official", {"shallow_ce_weight": 0.5, "deepest_ce_weight": 0.25}),
    ("paper", {"kd_weight": 0.0}),
    ("official", {"kd_weight": 0.1, "feature_weight": 0.5}),
    ("paper", {"feature_weight": 0.0}),
    ("official", {"kd_form": "kl", "kd_temperature_squared": True,
                  "feature_reduction": "squared_sum", "feature_exits": "all"}),
]


@pytest.mark.parametrize(
    "preset,overrides", OVERRIDES,
    ids=[f"{p}-" + "-".join(f"{k}={v}" for k, v in o.items()) for p, o in OVERRIDES],
)
def test_overrides_match_reference(preset, overrides):
    cfg = {**REFERENCE_PRESETS[preset], **overrides}
    expected = reference_terms(LABEL_IDS, LOGITS, FEATURES, cfg)
    baseline = reference_terms(LABEL_IDS, LOGITS, FEATURES, REFERENCE_PRESETS[preset])
    # Every knob above moves the value on these inputs, so the comparison is not vacuous.
    assert not np.isclose(expected["loss"], baseline["loss"], rtol=1e-4, atol=0)

    loss = BYOTLoss(preset, **overrides)
    assert_terms_close(loss.terms(LABEL_IDS, outputs_dict()), expected)
    np.testing.assert_allclose(to_float(loss(LABEL_IDS, outputs_dict())), expected["loss"],
                               rtol=RTOL, atol=ATOL)
    assert_terms_close(byot_loss(LABEL_IDS, LOGITS, FEATURES, **library_kwargs(cfg)),
                       expected)


@pytest.mark.parametrize("weight_shape", [(BATCH,), (BATCH, 1)])
@pytest.mark.parametrize("preset", sorted(REFERENCE_PRESETS))
def test_sample_weight_matches_reference(preset, weight_shape):
    """Per-example weights scale the CE and KD terms (sum(w * l) / batch); the batch-level
    feature term is not weighted."""
    weights = SAMPLE_WEIGHT.reshape(weight_shape)
    cfg = REFERENCE_PRESETS[preset]
    expected = reference_terms(LABEL_IDS, LOGITS, FEATURES, cfg, sample_weight=SAMPLE_WEIGHT)
    unweighted = reference_terms(LABEL_IDS, LOGITS, FEATURES, cfg)
    assert not np.isclose(expected["ce"], unweighted["ce"], rtol=1e-4)
    assert not np.isclose(expected["kd"], unweighted["kd"], rtol=1e-4)

    loss = BYOTLoss(preset)
    assert_terms_close(loss.terms(LABEL_IDS, outputs_dict(), weights), expected)
    np.testing.assert_allclose(to_float(loss(LABEL_IDS, outputs_dict(), weights)),
                               expected["loss"], rtol=RTOL, atol=ATOL)
    assert_terms_close(byot_loss(LABEL_IDS, LOGITS, FEATURES, sample_weight=weights,
                                 **library_kwargs(cfg)), expected)


@pytest.mark.parametrize("preset", sorted(REFERENCE_PRESETS))
def test_evaluation_drops_teacher_terms(preset):
    cfg = REFERENCE_PRESETS[preset]
    expected = reference_terms(LABEL_IDS, LOGITS, FEATURES, cfg)
    terms = BYOTLoss(preset).terms(LABEL_IDS, outputs_dict(), training=False)
    np.testing.assert_allclose(to_float(terms["loss"]), expected["ce"], rtol=RTOL)
    assert to_float(terms["kd"]) == 0.0 and to_float(terms["feature"]) == 0.0
    terms = byot_loss(LABEL_IDS, LOGITS, None, distill=False, **library_kwargs(cfg))
    np.testing.assert_allclose(to_float(terms["loss"]), expected["ce"], rtol=RTOL)


def _toy_network(shallow_dim, deepest_dim=DIM):
    """A tiny multi-exit network with the zoo's output contract."""
    inputs = keras.Input((3,), name="x")
    outputs = {}
    for k in range(1, EXITS + 1):
        dim = deepest_dim if k == EXITS else shallow_dim
        feature = keras.layers.Dense(dim, name=f"feature_{k}")(inputs)
        outputs[f"feature_{k}"] = feature
        outputs[f"exit_{k}"] = keras.layers.Dense(CLASSES, name=f"exit_{k}")(feature)
    return keras.Model(inputs, outputs)


def test_model_applies_adaptation_before_the_feature_term():
    """Official form: 0.03 * ||A_i(f_i) - f_N||_F, A_i the model's learned Dense."""
    keras.utils.set_random_seed(3)
    shallow_dim = 4
    model = SelfDistillationModel(_toy_network(shallow_dim), objective="official")
    assert [a.name for a in model.adapters] == ["adaptation_1", "adaptation_2"]
    features = [RNG.normal(size=(BATCH, shallow_dim)).astype("float32")
                for _ in range(EXITS - 1)] + [FEATURES[-1]]
    adapted = list(features)
    for k, adapter in zip((1, 2), model.adapters):
        kernel, bias = (keras.ops.convert_to_numpy(w) for w in adapter.weights)
        adapted[k - 1] = features[k - 1].astype(np.float64) @ kernel + bias
    expected = reference_terms(LABEL_IDS, LOGITS, adapted, REFERENCE_PRESETS["official"])
    y_pred = outputs_dict(LOGITS, features)
    total = model.compute_loss(y=LABEL_IDS, y_pred=y_pred, training=True)
    np.testing.assert_allclose(to_float(total), expected["loss"], rtol=RTOL, atol=ATOL)
    total = model.compute_loss(y=LABEL_IDS, y_pred=y_pred, training=False)
    np.testing.assert_allclose(to_float(total), expected["ce"], rtol=RTOL, atol=ATOL)


def test_model_without_adaptation_uses_raw_features():
    model = SelfDistillationModel(_toy_network(DIM), objective="paper")
    assert model.adapters == []
    expected = reference_terms(LABEL_IDS, LOGITS, FEATURES, REFERENCE_PRESETS["paper"])
    total = model.compute_loss(y=LABEL_IDS, y_pred=outputs_dict(), training=True)
    np.testing.assert_allclose(to_float(total), expected["loss"], rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="adaptation=True"):
        SelfDistillationModel(_toy_network(4), objective="paper")


# --------------------------------------------------------------------------------------
# Gradients (TensorFlow backend)
# --------------------------------------------------------------------------------------

def _gradients(term, cfg, logits=LOGITS, features=FEATURES):
    """d term / d (every exit's logits and features), unconnected = 0."""
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("GradientTape checks need the TensorFlow backend")
    logit_vars = [tf.Variable(z) for z in logits]
    feature_vars = [tf.Variable(f) for f in features]
    with tf.GradientTape() as tape:
        terms = byot_loss(LABEL_IDS, logit_vars, feature_vars, **library_kwargs(cfg))
        value = terms[term]
    grads = tape.gradient(value, logit_vars + feature_vars,
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    grads = [g.numpy().astype(np.float64) for g in grads]
    return grads[:EXITS], grads[EXITS:]


def np_softmax(z):
    return np.exp(np_log_softmax(z))


@pytest.mark.parametrize("preset", sorted(REFERENCE_PRESETS))
def test_kd_gradient_stops_at_the_teacher(preset):
    cfg = REFERENCE_PRESETS[preset]
    logit_grads, feature_grads = _gradients("kd", cfg)
    assert np.all(logit_grads[-1] == 0.0), "KD must not reach the deepest (teacher) logits"
    assert all(np.all(g == 0.0) for g in feature_grads)
    temperature = cfg["temperature"]
    scale = cfg["kd_weight"] / BATCH / temperature
    if cfg["kd_temperature_squared"]:
        scale *= temperature ** 2
    teacher_p = np_softmax(LOGITS[-1] / temperature)
    for k in resolve_exits(cfg["kd_exits"]):
        # Soft-CE and KL share the gradient: (p_T(student) - p_T(teacher)) / T per example.
        expected = scale * (np_softmax(LOGITS[k - 1] / temperature) - teacher_p)
        assert np.abs(logit_grads[k - 1]).max() > 1e-4
        np.testing.assert_allclose(logit_grads[k - 1], expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("preset", sorted(REFERENCE_PRESETS))
def test_feature_gradient_stops_at_the_teacher(preset):
    cfg = REFERENCE_PRESETS[preset]
    logit_grads, feature_grads = _gradients("feature", cfg)
    assert np.all(feature_grads[-1] == 0.0), "the feature term must not reach f_N"
    assert all(np.all(g == 0.0) for g in logit_grads)
    chosen = resolve_exits(cfg["feature_exits"])
    weight = cfg["feature_weight"]
    for k in range(1, EXITS):
        diff = FEATURES[k - 1].astype(np.float64) - FEATURES[-1]
        if k not in chosen:
            assert np.all(feature_grads[k - 1] == 0.0)
        elif cfg["feature_reduction"] == "frobenius":
            expected = weight * diff / np.sqrt(np.sum(diff ** 2))
            np.testing.assert_allclose(feature_grads[k - 1], expected, rtol=1e-4, atol=1e-7)
        else:  # squared_sum: mean over the batch of the per-example squared distance
            expected = weight * 2.0 * diff / BATCH
            np.testing.assert_allclose(feature_grads[k - 1], expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("preset", sorted(REFERENCE_PRESETS))
def test_ce_gradient_reaches_the_deepest_logits(preset):
    cfg = REFERENCE_PRESETS[preset]
    target = np_one_hot(LABEL_IDS)
    ce_grads, _ = _gradients("ce", cfg)
    total_grads, total_feature_grads = _gradients("loss", cfg)
    expected = cfg["deepest_ce_weight"] / BATCH * (np_softmax(LOGITS[-1]) - target)
    assert np.abs(ce_grads[-1]).max() > 1e-3
    np.testing.assert_allclose(ce_grads[-1], expected, rtol=1e-4, atol=1e-7)
    # Only the CE term reaches the teacher, also in the total.
    np.testing.assert_allclose(total_grads[-1], expected, rtol=1e-4, atol=1e-7)
    assert np.all(total_feature_grads[-1] == 0.0)
    for k in range(1, EXITS):
        shallow_ce = cfg["shallow_ce_weight"] / BATCH * (np_softmax(LOGITS[k - 1]) - target)
        np.testing.assert_allclose(ce_grads[k - 1], shallow_ce, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("reduction", ["frobenius", "squared_sum", "mean_squared"])
def test_feature_gradient_is_finite_when_student_equals_teacher(reduction):
    same = [FEATURES[-1].copy() for _ in range(EXITS)]
    cfg = {**REFERENCE_PRESETS["official"], "feature_reduction": reduction,
           "feature_exits": "all"}
    _, feature_grads = _gradients("feature", cfg, features=same)
    for g in feature_grads:
        assert np.all(np.isfinite(g)), f"{reduction}: non-finite gradient {g}"
        assert np.all(g == 0.0)
    value = byot_loss(LABEL_IDS, LOGITS, same, **library_kwargs(cfg))["feature"]
    assert to_float(value) == 0.0


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------

def test_unknown_preset():
    with pytest.raises(ValueError, match="Unknown byot preset 'offical'") as info:
        BYOTLoss("offical")
    assert "official" in str(info.value) and "paper" in str(info.value)


def test_unknown_option_lists_valid_options():
    with pytest.raises(ValueError, match="temprature") as info:
        BYOTLoss("official", temprature=4.0)
    message = str(info.value)
    missing = [name for name in OPTION_NAMES if name not in message]
    assert not missing, f"valid options missing from the message: {missing}\n{message}"


def test_bad_kd_form():
    with pytest.raises(ValueError, match=r"kd_form 'js'.*soft_ce.*kl"):
        BYOTLoss("paper", kd_form="js")
    with pytest.raises(ValueError, match=r"kd_form 'js'.*soft_ce.*kl"):
        byot_loss(LABEL_IDS, LOGITS, FEATURES, kd_form="js")


def test_bad_feature_reduction():
    pattern = r"feature_reduction 'l1'.*frobenius.*squared_sum.*mean_squared"
    with pytest.raises(ValueError, match=pattern):
        BYOTLoss("official", feature_reduction="l1")
    with pytest.raises(ValueError, match=pattern):
        byot_loss(LABEL_IDS, LOGITS, FEATURES, feature_reduction="l1")


def test_labels_that_fit_no_class_count():
    labels = np.zeros((BATCH, 3), dtype="float32")
    pattern = r"\(5, 3\).*7 classes"
    with pytest.raises(ValueError, match=pattern):
        byot_loss(labels, LOGITS, FEATURES)
    with pytest.raises(ValueError, match=pattern):
        BYOTLoss("official")(labels, outputs_dict())


@pytest.mark.parametrize("option,value", [
    ("feature_exits", [4]), ("feature_exits", "first"), ("kd_exits", [0]),
])
def test_bad_exit_choice(option, value):
    with pytest.raises(ValueError, match=option):
        BYOTLoss("official", **{option: value}).terms(LABEL_IDS, outputs_dict())


def test_other_bad_values():
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        BYOTLoss("paper", temperature=0.0)
    with pytest.raises(ValueError, match="no features"):
        byot_loss(LABEL_IDS, LOGITS, None)
    with pytest.raises(ValueError, match="kd_exits"):
        byot_loss(LABEL_IDS, LOGITS, FEATURES, kd_exits=[4])


# --------------------------------------------------------------------------------------
# Serialization
# --------------------------------------------------------------------------------------

ROUND_TRIP_CASES = [
    ("official", {}),
    ("paper", {"temperature": 4.0, "kd_form": "soft_ce", "feature_exits": [1, 3]}),
    ("official", {"kd_exits": "all_but_last", "feature_weight": 0.0, "adaptation": False}),
]


@pytest.mark.parametrize("preset,overrides", ROUND_TRIP_CASES)
def test_config_round_trip(preset, overrides):
    loss = BYOTLoss(preset, **overrides)
    config = loss.get_config()
    assert config == {"preset": preset, **overrides}
    restored = BYOTLoss.from_config(json.loads(json.dumps(config)))
    assert restored.get_config() == config
    assert restored.config == loss.config
    assert repr(restored) == repr(loss)
    np.testing.assert_allclose(to_float(restored(LABEL_IDS, outputs_dict())),
                               to_float(loss(LABEL_IDS, outputs_dict())), rtol=1e-7)


@pytest.mark.parametrize("preset,overrides", ROUND_TRIP_CASES)
def test_keras_serialization_round_trip(preset, overrides):
    loss = BYOTLoss(preset, **overrides)
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, BYOTLoss)
    assert restored.get_config() == loss.get_config()
    assert restored.config == loss.config
    cfg = {**REFERENCE_PRESETS[preset], **overrides}
    expected = reference_terms(LABEL_IDS, LOGITS, FEATURES, cfg)
    np.testing.assert_allclose(to_float(restored(LABEL_IDS, outputs_dict())),
                               expected["loss"], rtol=RTOL, atol=ATOL)
