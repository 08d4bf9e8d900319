"""ONE (on-the-fly native ensemble): the loss against a NumPy reference written from
../shared/docs/methods.md section 5 (branch CEs + the gated teacher's CE + T^2 KL from
the teacher to every branch, teacher detached in the KL), its gradients, the KD ramp, and
the network the zoo builds (branches of the last stage, the gate, the gated teacher)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from byot_keras import zoo
from byot_keras.losses import ONELoss, one_loss
from byot_keras.training import SelfDistillationModel

tf = pytest.importorskip("tensorflow")

BATCH, CLASSES, BRANCHES = 6, 5, 3
RNG = np.random.default_rng(20181203)
BRANCH_LOGITS = [(3.0 * RNG.normal(size=(BATCH, CLASSES))).astype("float32")
                 for _ in range(BRANCHES)]
GATE = RNG.dirichlet(np.ones(BRANCHES), size=BATCH).astype("float32")
TEACHER = np.einsum("bk,kbc->bc", GATE, np.stack(BRANCH_LOGITS)).astype("float32")
LABELS = RNG.integers(0, CLASSES, size=BATCH).astype("int32")
WEIGHTS = RNG.uniform(0.0, 2.0, size=BATCH).astype("float32")
TINY = dict(num_classes=10, width_multiplier=0.125, input_shape=(16, 16, 3))


def np_log_softmax(z):
    z = np.asarray(z, np.float64)
    shifted = z - z.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def np_softmax(z):
    return np.exp(np_log_softmax(z))


def ref_one(branches, teacher, temperature=3.0, kd_weight=1.0, weights=None, distill=True):
    w = np.ones(BATCH) if weights is None else np.asarray(weights, np.float64)
    rows = np.arange(BATCH)

    def ce(z):
        return np.sum(w * -np_log_softmax(z)[rows, LABELS]) / BATCH

    total_ce = ce(teacher) + sum(ce(z) for z in branches)
    kd = 0.0
    if distill:
        p = np_softmax(np.asarray(teacher) / temperature)
        for z in branches:
            kl = (p * (np.log(p) - np_log_softmax(np.asarray(z) / temperature))).sum(-1)
            kd += kd_weight * temperature ** 2 * np.sum(w * kl) / BATCH
    return {"loss": total_ce + kd, "ce": total_ce, "kd": kd}


@pytest.mark.parametrize("options", [{}, {"temperature": 2.0, "kd_weight": 0.5}])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("distill", [True, False])
def test_one_matches_reference(options, weighted, distill):
    weights = WEIGHTS if weighted else None
    expected = ref_one(BRANCH_LOGITS, TEACHER, weights=weights, distill=distill, **options)
    actual = one_loss(LABELS, BRANCH_LOGITS, TEACHER, sample_weight=weights, distill=distill,
                      **options)
    for name, value in expected.items():
        assert float(actual[name]) == pytest.approx(value, rel=1e-5, abs=1e-7), name
    if distill:
        assert expected["kd"] > 0.1
    outputs = {f"exit_{k}": z for k, z in enumerate([*BRANCH_LOGITS, TEACHER], start=1)}
    via_object = ONELoss(ramp_epochs=None, **options).terms(LABELS, outputs, weights,
                                                           training=distill)
    assert float(via_object["loss"]) == pytest.approx(expected["loss"], rel=1e-5)


def test_one_gradients_the_soft_target_is_constant():
    temperature, kd_weight = 3.0, 0.7
    branches = [tf.Variable(z) for z in BRANCH_LOGITS]
    teacher = tf.Variable(TEACHER)
    with tf.GradientTape() as tape:
        loss = one_loss(LABELS, branches, teacher, temperature=temperature,
                        kd_weight=kd_weight)["loss"]
    grads = tape.gradient(loss, [*branches, teacher])
    one_hot = np.eye(CLASSES)[LABELS]
    # The teacher gets only its own CE's gradient: the KL's target is stop-gradient.
    np.testing.assert_allclose(grads[-1].numpy(), (np_softmax(TEACHER) - one_hot) / BATCH,
                               rtol=1e-4, atol=1e-7)
    target = np_softmax(TEACHER / temperature)
    for z, grad in zip(BRANCH_LOGITS, grads[:-1]):
        expected = (np_softmax(z) - one_hot
                    + kd_weight * temperature * (np_softmax(z / temperature) - target))
        np.testing.assert_allclose(grad.numpy(), expected / BATCH, rtol=1e-4, atol=1e-7)


def test_kd_weight_ramps_up():
    ramped = ONELoss(kd_weight=2.0, ramp_epochs=4)
    assert ramped.scheduled
    sigmoid = [float(ramped.schedule(e, 10)["kd_weight"]) for e in range(6)]
    expected = [2.0 * math.exp(-5.0 * (1.0 - min(1.0, e / 4)) ** 2) for e in range(6)]
    assert sigmoid == pytest.approx(expected, rel=1e-6)
    linear = ONELoss(kd_weight=2.0, ramp_epochs=4, ramp="linear")
    assert [float(linear.schedule(e, 10)["kd_weight"]) for e in range(6)] == pytest.approx(
        [0.0, 0.5, 1.0, 1.5, 2.0, 2.0])
    constant = ONELoss(ramp_epochs=None)
    assert not constant.scheduled and constant.schedule(0, 10)["kd_weight"] == 1.0
    with pytest.raises(ValueError, match="Unknown ramp 'cosine'.*sigmoid, linear"):
        ONELoss(ramp="cosine")


def test_the_zoo_builds_branches_a_gate_and_the_gated_teacher():
    model = zoo.resnet18_byot(method="one", **TINY)
    assert model.exit_names == ["exit_1", "exit_2", "exit_3", "exit_4"]
    # Parameters: the plain network plus two more copies of stage 4 and its classifier,
    # plus the gate (Dense 32 -> 3, BatchNorm of 3: gamma, beta, mean, variance).
    plain = zoo.resnet18_byot(method="ce", **TINY)
    stage4 = sum(layer.count_params() for layer in plain.network.layers
                 if layer.name.startswith("stage4_"))
    classifier = plain.network.get_layer("exit_1").count_params()
    trunk_channels = plain.network.get_layer("section_3").output.shape[-1]
    gate = trunk_channels * 3 + 3 + 4 * 3
    assert model.network.count_params() == (plain.network.count_params()
                                            + 2 * (stage4 + classifier) + gate)
    # The teacher is the gate-weighted sum of the branches' logits; the gate sums to 1.
    x = RNG.normal(size=(4, 16, 16, 3)).astype("float32")
    outputs = model.network(x, training=False)
    gate_values = keras.Model(model.network.inputs,
                              model.network.get_layer("gate").output)(x).numpy()
    np.testing.assert_allclose(gate_values.sum(axis=1), 1.0, rtol=1e-6)
    teacher = sum(gate_values[:, b:b + 1] * outputs[f"exit_{b + 1}"].numpy() for b in range(3))
    np.testing.assert_allclose(outputs["exit_4"].numpy(), teacher, rtol=1e-5, atol=1e-5)
    # A branch deploys alone: its sub-network has no other branch's layers.
    branch = {layer.name for layer in model.exit_model(2).layers}
    assert "branch2_stage4_block1_conv1" in branch and "branch1_stage4_block1_conv1" not in branch


def test_one_fits_saves_and_loads(tmp_path):
    model = zoo.resnet18_byot(method="one", branches=2, ramp="linear", ramp_epochs=2, **TINY)
    model.compile(optimizer="sgd")
    x = RNG.normal(size=(8, 16, 16, 3)).astype("float32")
    history = model.fit(x, np.arange(8) % 10, batch_size=4, epochs=2, verbose=0).history
    assert history["kd_loss"][0] == 0.0 and history["kd_loss"][1] > 0.0  # the ramp
    model.save(tmp_path / "one.keras")
    loaded = keras.saving.load_model(tmp_path / "one.keras")
    assert loaded.objective.config == model.objective.config
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["exit_3"],
                               model.predict(x, verbose=0)["exit_3"], rtol=1e-5, atol=1e-6)


def test_one_errors_name_what_is_valid():
    with pytest.raises(ValueError, match="only the ResNet family builds"):
        zoo.wrn16_4_byot(method="one", **TINY)
    with pytest.raises(ValueError, match="exits=, head= and attention= do not apply"):
        zoo.resnet18_byot(method="one", exits=[2], **TINY)
    with pytest.raises(ValueError, match="branches must be an integer >= 2"):
        zoo.resnet18_byot(method="one", branches=1, **TINY)
    network = zoo.resnet18_byot(**TINY).network  # four exits
    with pytest.raises(ValueError, match="branches=2 needs 3 exits"):
        SelfDistillationModel(network, method="one", branches=2)


def test_branches_and_the_teacher_export_to_tflite_without_a_cascade(tmp_path):
    from byot_keras.export import export_tflite

    model = zoo.resnet18_byot(method="one", **TINY)
    x = RNG.normal(size=(8, 16, 16, 3)).astype("float32")
    manifest = export_tflite(model, str(tmp_path / "one"), eval_data=(x, np.arange(8)),
                             multi_signature=False)
    assert [e["files"]["float32"]["file"] for e in manifest["exits"]] == [
        f"exit_{k}.tflite" for k in range(1, 5)]
    for entry in manifest["exits"]:  # each file against its Keras exit
        measured = entry["files"]["float32"]
        assert measured["max_abs_diff"] <= 1e-4 * measured["output_scale"], entry
    assert manifest.get("cascade") is None and not (tmp_path / "one" / "cascade").exists()
    with pytest.raises(ValueError, match="no early-exit cascade"):
        export_tflite(model, str(tmp_path / "again"), cascade=True)


def test_qat_and_pruning_refuse_one_models_before_loading_tf_keras():
    import sys

    from byot_keras.compress.twin import build_twin

    loaded_before = "tf_keras" in sys.modules
    with pytest.raises(ValueError, match="do not support ONE models.*--quantizations int8"):
        build_twin(zoo.resnet18_byot(method="one", **TINY))
    assert ("tf_keras" in sys.modules) == loaded_before
