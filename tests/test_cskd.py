"""CS-KD (class-wise self-knowledge distillation): the loss against a NumPy reference
written from ../shared/docs/methods.md section 5 (KL between the predictions of two
images of the same class, T = 4, lambda = 1; the T^2 factor is our default), which
tensors receive gradient, the class-paired input pipeline, and the model's refusal of
unpaired batches."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from byot_keras import zoo
from byot_keras.losses import CSKDLoss, cskd_loss

tf = pytest.importorskip("tensorflow")

PAIRS, CLASSES = 5, 7
RNG = np.random.default_rng(20200330)
# Interleaved: anchor, partner, anchor, partner, ... (10 examples, 5 pairs).
LABELS = np.repeat(RNG.integers(0, CLASSES, size=PAIRS), 2).astype("int32")
LOGITS = [(3.0 * RNG.normal(size=(2 * PAIRS, CLASSES))).astype("float32") for _ in range(2)]
WEIGHTS = np.repeat(RNG.uniform(0.2, 2.0, size=PAIRS), 2).astype("float32")
WEIGHTS[1::2] = 99.0  # a partner's weight must not count


def np_log_softmax(z):
    z = np.asarray(z, np.float64)
    shifted = z - z.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def ref_cskd(labels, logits, temperature=4.0, kd_weight=1.0, t_squared=True, weights=None):
    """Per exit: mean over anchors i (even positions) of w_i * [CE(z(a_i), y_i) +
    kd_weight * T^2 * KL(softmax_T(z(p_i)) || softmax_T(z(a_i)))]."""
    anchors = np.asarray(labels)[0::2]
    w = np.ones(len(anchors)) if weights is None else np.asarray(weights, np.float64)[0::2]
    ce = kd = 0.0
    for z in logits:
        a, p = np.asarray(z)[0::2], np.asarray(z)[1::2]
        ce += np.mean(w * -np_log_softmax(a)[np.arange(len(anchors)), anchors])
        log_q = np_log_softmax(a / temperature)
        log_p = np_log_softmax(p / temperature)
        kl = (np.exp(log_p) * (log_p - log_q)).sum(-1)
        kd += kd_weight * (temperature ** 2 if t_squared else 1.0) * np.mean(w * kl)
    return {"loss": ce + kd, "ce": ce, "kd": kd}


def as_floats(terms):
    return {k: float(keras.ops.convert_to_numpy(v)) for k, v in terms.items()}


@pytest.mark.parametrize("options", [
    {}, {"temperature": 2.0, "kd_weight": 0.5}, {"kd_temperature_squared": False}])
@pytest.mark.parametrize("weighted", [False, True])
def test_cskd_matches_reference(options, weighted):
    weights = WEIGHTS if weighted else None
    ref_options = {"temperature": options.get("temperature", 4.0),
                   "kd_weight": options.get("kd_weight", 1.0),
                   "t_squared": options.get("kd_temperature_squared", True)}
    expected = ref_cskd(LABELS, LOGITS, weights=weights, **ref_options)
    actual = as_floats(cskd_loss(LABELS, LOGITS, sample_weight=weights, **options))
    assert expected["kd"] > 0.1  # the pairs disagree: the term is not vacuous
    for name in ("loss", "ce", "kd"):
        assert actual[name] == pytest.approx(expected[name], rel=1e-5), name
    # The loss object computes the same from the network's output dict.
    outputs = {f"exit_{k}": z for k, z in enumerate(LOGITS, start=1)}
    via_object = as_floats(CSKDLoss(**options).terms(LABELS, outputs, weights))
    assert via_object["loss"] == pytest.approx(expected["loss"], rel=1e-5)


def test_cskd_without_distillation_is_ce_on_every_example():
    unpaired = np.arange(2 * PAIRS, dtype="int32") % CLASSES  # evaluation data: no pairs
    terms = as_floats(CSKDLoss().terms(unpaired, {"exit_1": LOGITS[0]}, training=False))
    expected = np.mean(-np_log_softmax(LOGITS[0])[np.arange(2 * PAIRS), unpaired])
    assert terms["loss"] == pytest.approx(expected, rel=1e-5) and terms["kd"] == 0.0


def test_cskd_gradient_reaches_anchors_only():
    temperature, kd_weight = 4.0, 1.0
    logits = tf.Variable(LOGITS[0])
    with tf.GradientTape() as tape:
        loss = cskd_loss(LABELS, [logits], temperature=temperature, kd_weight=kd_weight)["loss"]
    grad = tape.gradient(loss, logits).numpy().astype(np.float64)
    assert np.all(grad[1::2] == 0.0), "a partner (the soft target) received a gradient"
    a, p = LOGITS[0][0::2].astype(np.float64), LOGITS[0][1::2].astype(np.float64)
    one_hot = np.eye(CLASSES)[LABELS[0::2]]
    # d/da [CE(a) + w T^2 KL(p_T || q_T(a))] = softmax(a) - y + w T (softmax_T(a) - p_T)
    expected = (np.exp(np_log_softmax(a)) - one_hot + kd_weight * temperature * (
        np.exp(np_log_softmax(a / temperature)) - np.exp(np_log_softmax(p / temperature))))
    np.testing.assert_allclose(grad[0::2], expected / PAIRS, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("labels,message", [
    (np.array([1, 1, 2, 3], "int32"), "pairs differ in label"),
    (np.array([1, 1, 2], "int32"), "odd number of examples"),
])
def test_unpaired_batches_are_refused(labels, message):
    outputs = {"exit_1": tf.zeros((len(labels), CLASSES))}
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{message}.*pair_by_class"):
        CSKDLoss().terms(labels, outputs)


def test_fit_on_unpaired_data_stops_with_the_pairing_help():
    model = zoo.resnet18_byot(num_classes=CLASSES, width_multiplier=0.125, method="cskd",
                              input_shape=(16, 16, 3))
    assert model.exit_names == ["exit_1"]  # the plain network, like ce
    model.compile(optimizer="sgd")
    x = np.zeros((8, 16, 16, 3), "float32")
    with pytest.raises(tf.errors.InvalidArgumentError, match="pairs differ in label"):
        model.fit(x, np.arange(8) % CLASSES, batch_size=8, shuffle=False, verbose=0)
    # fit shuffles NumPy arrays example by example, which splits pairs; the error says so.
    with pytest.raises(tf.errors.InvalidArgumentError, match="shuffle=False"):
        model.fit(x, np.repeat(np.arange(4), 2), batch_size=8, verbose=0)
    paired = np.repeat(np.arange(4) % CLASSES, 2)
    history = model.fit(x, paired, batch_size=8, verbose=0, shuffle=False)
    assert np.isfinite(history.history["kd_loss"][0])


def test_cskd_model_saves_and_loads(tmp_path):
    model = zoo.resnet18_byot(num_classes=CLASSES, width_multiplier=0.125, method="cskd",
                              temperature=3.0, input_shape=(16, 16, 3))
    model.compile(optimizer="sgd")
    x = RNG.normal(size=(4, 16, 16, 3)).astype("float32")
    model.fit(x, np.array([1, 1, 2, 2]), batch_size=4, shuffle=False, verbose=0)
    model.save(tmp_path / "cskd.keras")
    loaded = keras.saving.load_model(tmp_path / "cskd.keras")
    assert type(loaded.objective) is CSKDLoss and loaded.objective.config["temperature"] == 3.0
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["exit_1"],
                               model.predict(x, verbose=0)["exit_1"], rtol=1e-5, atol=1e-6)


def test_pair_by_class_partners_share_the_class_and_every_example_leads_once():
    from byot_keras.data.pipeline import pair_by_class

    labels = RNG.integers(0, 4, size=60).astype("int64")
    images = np.arange(60, dtype="int32") * 10
    pairs = list(pair_by_class(tf.data.Dataset.from_tensor_slices((images, labels)), 4)
                 .as_numpy_iterator())
    assert len(pairs) == 120
    anchors, partners = pairs[0::2], pairs[1::2]
    assert [int(x) for x, _ in anchors] == images.tolist()  # order kept, each once
    last = {}
    for (anchor, label), (partner, partner_label) in zip(anchors, partners):
        assert partner_label == label
        # The partner is the previous example of the class, or the example itself.
        assert partner == last.get(int(label), anchor)
        last[int(label)] = anchor


def test_paired_training_batches_are_deterministic_per_epoch():
    from byot_keras.data.pipeline import load_source, training_dataset

    source = load_source("digits", train_examples=200)
    full = list(training_dataset(source, 20, seed=3, epochs=2, class_pairs=True)
                .as_numpy_iterator())
    assert len(full) == 2 * (200 // 20)
    for images, labels in full:
        assert images.shape[0] == 40 and np.array_equal(labels[0::2], labels[1::2])
        assert not np.array_equal(images[0::2], images[1::2])  # augmented separately
    # Epoch 1 of a run resumed there is epoch 1 of the whole run.
    resumed = list(training_dataset(source, 20, seed=3, epochs=2, initial_epoch=1,
                                    class_pairs=True).as_numpy_iterator())
    for (x_full, y_full), (x_resumed, y_resumed) in zip(full[10:], resumed, strict=True):
        np.testing.assert_array_equal(x_full, x_resumed)
        np.testing.assert_array_equal(y_full, y_resumed)
