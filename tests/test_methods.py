"""Every method through the same API: the method switch, each method's heads, the epoch
schedules inside fit (and across save/load and resumed training), the cohort and the
teacher->student models. The loss formulas themselves are checked against NumPy in
test_method_losses.py; real-data training in test_methods_cifar10.py."""

import keras
import numpy as np
import pytest

from byot_keras import losses, zoo
from byot_keras.training import CohortModel, SelfDistillationModel, TeacherDistillationModel

TINY = dict(num_classes=10, width_multiplier=0.125)
# For the tests that train: a small network on small images, run eagerly (no tracing).
SMALL = dict(num_classes=10, width_multiplier=0.25, input_shape=(16, 16, 3))


def _data(count=8, seed=0, size=16):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(count, size, size, 3)).astype("float32"), np.arange(count) % 10


@pytest.mark.parametrize("method, objective_class", [
    ("byot", losses.BYOTLoss), ("msd", losses.MSDLoss), ("eed", losses.EEDLoss),
    ("sdn", losses.SDNLoss), ("deep_supervision", losses.DeepSupervisionLoss),
    ("ce", losses.CELoss), ("cskd", losses.CSKDLoss),
])
def test_every_method_builds_from_the_zoo_and_logs_its_terms(method, objective_class):
    model = zoo.create_model("wrn16_4_byot", method=method, **SMALL)
    assert type(model.objective) is objective_class
    model.compile(optimizer="sgd", run_eagerly=True)
    x, y = _data()
    if objective_class.PAIRED_BATCHES:  # CS-KD: examples 2i and 2i + 1 share a class
        y = np.repeat(y[::2], 2)
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history
    expected = {f"{term}_loss" for term in objective_class.TERMS}
    expected |= {f"{name}_accuracy" for name in model.exit_names} | {"loss",
                                                                       "ensemble_accuracy"}
    assert set(history) == expected
    assert np.isfinite(history["loss"][0])


def test_each_method_gets_its_papers_heads():
    msd = zoo.resnet18_byot(method="msd", **TINY)
    eed = zoo.resnet18_byot(method="eed", **TINY)
    byot = zoo.resnet18_byot(**TINY)
    layer_names = {m: {layer.name for layer in model.network.layers}
                   for m, model in (("msd", msd), ("eed", eed), ("byot", byot))}
    # MSD's branch augmentation: exit 1 gets one block of each later stage (2, 3, 4).
    assert {"exit_1_head_block1_add", "exit_1_head_block3_add",
            "exit_3_head_block1_add"} <= layer_names["msd"]
    assert "exit_3_head_block2_add" not in layer_names["msd"]
    # EED: plain stride-2 convs, three for exit 1.
    assert {"exit_1_head_conv3", "exit_2_head_conv2", "exit_3_head_conv1"} <= layer_names["eed"]
    assert "exit_3_head_conv2" not in layer_names["eed"]
    assert any(name.startswith("exit_1_head_sep") for name in layer_names["byot"])
    # Every exit's feature has the deepest feature's shape, as MSD's feature term needs.
    for model in (msd, eed):
        shapes = {tuple(model.network.output[f"feature_{k}"].shape)
                  for k in range(1, model.num_exits + 1)}
        assert shapes == {(None, 64)}
    # The head can still be chosen explicitly.
    explicit = zoo.resnet18_byot(method="msd", head="sepconv", **TINY)
    assert not any("_block1_add" in layer.name and layer.name.startswith("exit_")
                   for layer in explicit.network.layers)


def test_msd_blocks_reproduce_each_later_stage():
    """Exit 1's branch of a CIFAR ResNet-18 (width 1) holds one basic block of stage 2, 3
    and 4: 2 x 3x3 convs + a 1x1 stride-2 shortcut conv, each with BN, per block."""
    model = zoo.resnet18_byot(num_classes=100, method="msd")
    branch = [w for layer in model.network.layers if layer.name.startswith("exit_1_head_block")
              for w in layer.trainable_weights]

    def block(cin, cout):  # closed form: convs (no bias) + BN gamma/beta
        return 9 * cin * cout + 9 * cout * cout + cin * cout + 3 * 2 * cout

    expected = block(64, 128) + block(128, 256) + block(256, 512)
    assert sum(int(np.prod(w.shape)) for w in branch) == expected


def test_ce_is_the_plain_network():
    model = zoo.resnet18_byot(num_classes=100, method="ce")
    assert model.exit_names == ["exit_1"]
    # torchvision-style CIFAR ResNet-18 with 100 classes (as in test_zoo_families).
    assert model.exit_costs()[0]["trainable_params"] == 11_220_132


def test_method_errors_name_what_is_valid():
    with pytest.raises(ValueError, match="Unknown method 'bytt'.*byot, ce, cskd, deep_supervision"):
        zoo.resnet18_byot(method="bytt", **TINY)
    with pytest.raises(ValueError, match=r"Unknown msd option\(s\) \['alpah'\].*alpha.*"
                                         r"Architecture options of resnet18_byot"):
        zoo.resnet18_byot(method="msd", alpah=0.3, **TINY)
    with pytest.raises(ValueError, match="Unknown eed preset 'l2'. Valid presets: mse, kd"):
        zoo.resnet18_byot(method="eed", objective="l2", **TINY)
    with pytest.raises(ValueError, match="trains a cohort of networks: use.*CohortModel"):
        zoo.resnet18_byot(method="dml", **TINY)
    with pytest.raises(ValueError, match="final_weights.*one weight per shallow exit"):
        zoo.resnet18_byot(method="sdn", final_weights=[0.5, 1.0], **TINY)
    with pytest.raises(ValueError, match="Got the loss object"):
        zoo.resnet18_byot(method="msd", objective=losses.EEDLoss(), **TINY)


def test_method_options_reach_the_loss():
    model = zoo.resnet18_byot(method="msd", alpha=0.25, beta_begin=0.5, **TINY)
    assert model.objective.config["alpha"] == 0.25
    assert model.objective.config["beta_begin"] == 0.5
    same = SelfDistillationModel(model.network, method="msd", alpha=0.25, beta_begin=0.5)
    assert same.objective.get_config() == model.objective.get_config()


def _fit_with_schedule_log(model, x, y, epochs, initial_epoch=0):
    seen = []
    log = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(
        (epoch, float(model.schedule_epoch.numpy()), float(model.schedule_total_epochs.numpy()))))
    model.fit(x, y, batch_size=8, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
              verbose=0, callbacks=[log])
    return seen


def test_fit_keeps_the_epoch_and_the_loss_follows_the_schedule():
    keras.utils.set_random_seed(1)
    model = zoo.wrn16_4_byot(method="sdn", **SMALL)
    model.compile(optimizer="sgd", run_eagerly=True)
    x, y = _data()
    assert _fit_with_schedule_log(model, x, y, 3) == [(0, 0.0, 3.0), (1, 1.0, 3.0),
                                                      (2, 2.0, 3.0)]
    # The loss the model computes is the objective's at the model's epoch: SDN at epoch 2
    # of 3 weights shallow exit i of 2 by min(0.9 i / 2, 0.01 + 2 * (0.9 i / 2) / 3).
    outputs = model(x, training=False)
    ce = [float(np.mean(keras.losses.sparse_categorical_crossentropy(
        y, outputs[name], from_logits=True))) for name in model.exit_names]
    weights = [min(0.45 * i, 0.01 + 2 * 0.45 * i / 3) for i in (1, 2)] + [1.0]
    expected = sum(w * c for w, c in zip(weights, ce))
    computed = float(model.compute_loss(x, y, outputs, training=False))
    np.testing.assert_allclose(computed, expected, rtol=1e-5)


def test_schedule_survives_save_load_and_resumed_training(tmp_path):
    """A 4-epoch MSD run stopped after epoch 2, saved, loaded and resumed ends with the
    weights of the same run done in one go (same seed, same batches)."""
    x, y = _data()

    def build():
        keras.utils.set_random_seed(2)
        model = zoo.wrn16_4_byot(method="msd", **SMALL)
        model.compile(optimizer=keras.optimizers.SGD(0.05), run_eagerly=True)
        return model

    straight = build()
    _fit_with_schedule_log(straight, x, y, 4)

    interrupted = build()
    stop = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: setattr(interrupted, "stop_training", epoch == 1))
    interrupted.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0, callbacks=[stop])
    interrupted.save(tmp_path / "half.keras")
    resumed = keras.saving.load_model(tmp_path / "half.keras")
    assert float(resumed.schedule_epoch.numpy()) == 1.0
    assert float(resumed.schedule_total_epochs.numpy()) == 4.0
    # Resuming at epoch 2: the clock takes the absolute epoch.
    assert _fit_with_schedule_log(resumed, x, y, 4, initial_epoch=2) == [(2, 2.0, 4.0),
                                                                         (3, 3.0, 4.0)]
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6,
                                   err_msg=a.path)
    # The schedule mattered: beta differs between the epochs (cosine from 0.01 to 0).
    betas = [float(resumed.objective.schedule(e, 4)["beta"]) for e in range(4)]
    assert betas[0] > betas[1] > betas[2] > betas[3] > 0


def _cohort(method="multistructure", **options):
    members = [zoo.create_model(name, **SMALL) for name in ("wrn16_4", "resnet18")]
    return CohortModel(members, method=method, **options)


def test_cohort_trains_members_together_and_saves(tmp_path):
    keras.utils.set_random_seed(3)
    cohort = _cohort(on_epochs=1, off_epochs=1)
    cohort.compile(optimizer="sgd", run_eagerly=True)
    x, y = _data()
    history = cohort.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert set(history) == {"loss", "ce_loss", "kd_loss", "member_1_accuracy",
                            "member_2_accuracy", "ensemble_accuracy"}
    # Window 1 (epoch 0) distils, epoch 1 is off: no KD term at all.
    assert history["kd_loss"][0] > 0 and history["kd_loss"][1] == 0.0
    # Members are the zoo models given, trained in place and exportable on their own.
    member = cohort.member(2)
    assert member.name == "resnet18"
    np.testing.assert_allclose(member.predict(x, verbose=0)["exit_1"],
                               cohort.predict(x, verbose=0)["member_2"], rtol=1e-5, atol=1e-5)
    cohort.save(tmp_path / "cohort.keras")
    loaded = keras.saving.load_model(tmp_path / "cohort.keras")
    assert loaded.objective.get_config() == cohort.objective.get_config()
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["member_1"],
                               cohort.predict(x, verbose=0)["member_1"], rtol=1e-5, atol=1e-5)
    result = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert result["kd_loss"] == 0.0  # evaluation drops the distillation term


def test_cohort_windows_continue_after_save_load(tmp_path):
    """The discontinuous schedule of a saved and reloaded cohort picks up at the absolute
    epoch: windows of 1 epoch on, 1 off, the weight growing by 0.25 per window."""
    keras.utils.set_random_seed(4)
    cohort = _cohort(on_epochs=1, off_epochs=1, start_weight=0.25, weight_step=0.25)
    cohort.compile(optimizer="sgd", run_eagerly=True)
    x, y = _data()
    first = cohort.fit(x, y, batch_size=8, epochs=4, verbose=0,
                       callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=lambda e, _: (
                           setattr(cohort, "stop_training", e == 0)))]).history
    assert first["kd_loss"][0] > 0  # epoch 0: the first window, on
    cohort.save(tmp_path / "cohort.keras")
    resumed = keras.saving.load_model(tmp_path / "cohort.keras")
    assert float(resumed.schedule_epoch.numpy()) == 0.0
    assert float(resumed.schedule_total_epochs.numpy()) == 4.0
    history = resumed.fit(x, y, batch_size=8, epochs=4, initial_epoch=1, verbose=0).history
    # Epochs 1 and 3 are off; epoch 2 is the second window, at weight 0.5.
    assert history["kd_loss"][0] == 0.0 and history["kd_loss"][2] == 0.0
    assert history["kd_loss"][1] > 0
    assert [resumed.objective.schedule(e, 4)["weight"] for e in range(4)] == pytest.approx(
        [0.25, 0.0, 0.5, 0.0])


def test_cohort_errors_name_what_is_valid():
    with pytest.raises(ValueError, match="members are single-exit networks"):
        CohortModel([zoo.wrn16_4_byot(**SMALL), zoo.wrn16_4(**SMALL)])
    with pytest.raises(ValueError, match="at least two members"):
        CohortModel([zoo.wrn16_4(**SMALL)])
    with pytest.raises(ValueError, match="needs a cohort method \\(dml, multistructure\\)"):
        _cohort(method="byot")
    with pytest.raises(ValueError, match="Unknown multistructure option"):
        _cohort(on_epoch=3)
    with pytest.raises(ValueError, match="Member 3 does not exist"):
        _cohort().member(3)


def test_teacher_distillation_matches_the_hinton_formula_and_saves(tmp_path):
    keras.utils.set_random_seed(4)
    teacher = zoo.create_model("resnet18", **SMALL)
    student = zoo.wrn16_4_byot(**SMALL)
    model = TeacherDistillationModel(teacher, student, alpha=0.3, temperature=2.0)
    model.compile(optimizer="sgd", run_eagerly=True)
    x, y = _data()
    outputs = model(x, training=False)
    teacher_logits = teacher.predict(x, verbose=0)["exit_1"]
    expected = losses.hinton_kd_loss(y, [outputs[n] for n in student.exit_names],
                                     teacher_logits, alpha=0.3, temperature=2.0)["loss"]
    np.testing.assert_allclose(float(model.compute_loss(x, y, outputs)), float(expected),
                               rtol=1e-5)
    before = [np.asarray(w).copy() for w in teacher.trainable_weights]
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert {f"{n}_accuracy" for n in student.exit_names} <= set(history)
    for old, new in zip(before, teacher.trainable_weights):  # the teacher stays frozen
        np.testing.assert_array_equal(old, np.asarray(new))
    model.save(tmp_path / "kd.keras")
    loaded = keras.saving.load_model(tmp_path / "kd.keras")
    np.testing.assert_allclose(loaded.student_model.predict(x, verbose=0)["exit_2"],
                               student.predict(x, verbose=0)["exit_2"], rtol=1e-5, atol=1e-5)
    # The trained student is a zoo model like any other.
    assert isinstance(loaded.student_model, SelfDistillationModel)
