"""SelfDistillationModel through the public API: fit/evaluate/predict, metrics,
serialization, exit sub-models and costs, and the errors users get."""

import keras
import numpy as np
import pytest

from byot_keras import BYOTLoss, SelfDistillationModel, zoo
from byot_keras.inference import early_exit_curve, early_exit_from_logits, early_exit_predict

NUM_CLASSES = 5


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _ce(logits, labels):
    return -np.log(_softmax(logits.astype(np.float64))[np.arange(len(labels)), labels])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    # 61 = 32 + 29: the last batch of 29 is one TF's oneDNN crashed on for narrow nets
    # (see byot_keras.networks.common.conv2d); this keeps that workaround tested.
    x = rng.normal(size=(61, 32, 32, 3)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, size=61).astype("int32")
    return x, y


@pytest.fixture(scope="module")
def trained(data):
    x, y = data
    keras.utils.set_random_seed(1)
    model = zoo.resnet18_byot(num_classes=NUM_CLASSES, width_multiplier=0.125)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    return model, history


def test_fit_logs_every_exit_ensemble_and_loss_terms(trained):
    model, history = trained
    expected = {"loss", "ce_loss", "kd_loss", "feature_loss", "ensemble_accuracy"}
    expected |= {f"exit_{k}_accuracy" for k in range(1, 5)}
    assert expected <= set(history.history)
    assert model.exit_names == ["exit_1", "exit_2", "exit_3", "exit_4"]
    # Distillation terms are active during training.
    assert history.history["kd_loss"][-1] > 0
    assert history.history["feature_loss"][-1] > 0
    losses = history.history["loss"]
    assert losses[-1] < losses[0]


def test_evaluate_is_weighted_ce_without_distillation(trained, data):
    """evaluate's loss equals 0.7 * shallow CEs + 1.0 * deepest CE computed in NumPy from
    predict's logits; KD and feature terms are off; accuracies match NumPy's."""
    model, _ = trained
    x, y = data
    result = model.evaluate(x, y, batch_size=61, verbose=0, return_dict=True)
    logits = model.predict(x, batch_size=61, verbose=0)
    assert sorted(logits) == model.exit_names  # predict returns every exit, no features
    expected = sum(0.7 * _ce(logits[f"exit_{k}"], y).mean() for k in range(1, 4))
    expected += _ce(logits["exit_4"], y).mean()
    assert result["loss"] == pytest.approx(expected, rel=1e-4)
    assert result["kd_loss"] == 0 and result["feature_loss"] == 0
    for k in range(1, 5):
        acc = np.mean(logits[f"exit_{k}"].argmax(-1) == y)
        assert result[f"exit_{k}_accuracy"] == pytest.approx(acc)
    ensemble = np.mean([logits[n] for n in model.exit_names], axis=0)
    assert result["ensemble_accuracy"] == pytest.approx(np.mean(ensemble.argmax(-1) == y))


def test_one_hot_labels_give_the_same_loss_as_sparse(trained, data):
    model, _ = trained
    x, y = data
    sparse = model.evaluate(x, y, verbose=0, return_dict=True)
    one_hot = model.evaluate(x, np.eye(NUM_CLASSES, dtype="float32")[y], verbose=0,
                             return_dict=True)
    assert one_hot["loss"] == pytest.approx(sparse["loss"], rel=1e-5)
    assert one_hot["exit_1_accuracy"] == pytest.approx(sparse["exit_1_accuracy"])


def test_labels_of_the_wrong_shape_are_rejected(trained, data):
    model, _ = trained
    x, y = data
    with pytest.raises(ValueError, match=r"\(batch, 5\)"):
        model.evaluate(x, np.zeros((61, 3), "float32"), verbose=0)


def test_keras_file_round_trip_keeps_every_exit_and_the_objective(trained, data, tmp_path):
    model, _ = trained
    x, y = data
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, SelfDistillationModel)
    before = model.predict(x, verbose=0)
    after = loaded.predict(x, verbose=0)
    for name in model.exit_names:
        np.testing.assert_array_equal(before[name], after[name])
    assert loaded.objective.get_config() == model.objective.get_config()
    assert len(loaded.adapters) == len(model.adapters) == 2
    for a, b in zip(model.adapters, loaded.adapters):
        np.testing.assert_array_equal(a.kernel.numpy(), b.kernel.numpy())
    # The optimizer comes back too, so training resumes where it stopped.
    assert loaded.optimizer.iterations.numpy() == model.optimizer.iterations.numpy()
    loaded.fit(x, y, batch_size=32, epochs=1, verbose=0)


def test_config_round_trip_with_a_non_default_objective():
    model = zoo.resnet18_byot(num_classes=3, width_multiplier=0.125,
                              objective=BYOTLoss("paper", temperature=4.0))
    clone = SelfDistillationModel.from_config(model.get_config())
    assert clone.objective.get_config() == {"preset": "paper", "temperature": 4.0}
    assert clone.adapters == []  # the paper preset compares features directly
    assert clone.exit_names == model.exit_names


def test_exit_model_holds_only_the_layers_it_needs(trained, data):
    model, _ = trained
    x, _ = data
    outputs = model.predict(x, verbose=0)
    first = model.exit_model(1)
    names = [layer.name for layer in first.layers]
    assert not any(n.startswith(("stage2", "stage3", "stage4", "exit_2")) for n in names)
    np.testing.assert_allclose(first.predict(x, verbose=0), outputs["exit_1"], atol=1e-5)
    deepest = model.exit_model("exit_4")
    assert not any("head" in layer.name for layer in deepest.layers)
    np.testing.assert_allclose(deepest.predict(x, verbose=0), outputs["exit_4"], atol=1e-5)
    for bad in (0, 5, "exit_9", True):
        with pytest.raises(ValueError, match="exits 1..4"):
            model.exit_model(bad)


def test_exit_costs_match_published_resnet_figures():
    """CIFAR ResNet-18: 0.56 GMACs (kuangliu/pytorch-cifar figures); ImageNet ResNet-50:
    4.09 GMACs and 25,557,032 parameters (torchvision's model table)."""
    cifar = zoo.resnet18_byot(num_classes=100).exit_costs()
    assert cifar[-1]["trainable_params"] == 11_220_132
    assert cifar[-1]["macs"] == pytest.approx(0.556e9, rel=0.01)
    assert [c["macs"] for c in cifar] == sorted(c["macs"] for c in cifar)
    assert cifar[-1]["cascade_macs"] > cifar[-1]["macs"]  # heads of exits 1-3 on top
    assert cifar[0]["cascade_macs"] == cifar[0]["macs"]
    imagenet = zoo.resnet50_byot(num_classes=1000, input_shape=(224, 224, 3)).exit_costs()
    assert imagenet[-1]["trainable_params"] == 25_557_032
    assert imagenet[-1]["macs"] == pytest.approx(4.09e9, rel=0.01)
    assert imagenet[-1]["flops"] == 2 * imagenet[-1]["macs"]


def test_early_exit_picks_the_first_confident_exit(trained, data):
    model, _ = trained
    x, y = data
    logits = model.predict(x, verbose=0)
    probs = [_softmax(logits[n]) for n in model.exit_names]
    result = early_exit_predict(model, x, threshold=0.3)
    for i in range(len(x)):
        confident = [k for k, p in enumerate(probs) if p[i].max() >= 0.3]
        k = confident[0] if confident else len(probs) - 1
        assert result.exits[i] == k + 1
        assert result.predictions[i] == probs[k][i].argmax()
        assert result.confidences[i] == pytest.approx(probs[k][i].max(), rel=1e-5)
    everyone_first = early_exit_from_logits(logits, 0.0)
    assert (everyone_first.exits == 1).all()
    curve = early_exit_curve(logits, y, [0.0, 1.0], answer_costs=[1, 2, 3, 4])
    assert curve[0]["accuracy"] == pytest.approx(np.mean(logits["exit_1"].argmax(-1) == y))
    assert curve[0]["mean_cost"] == 1.0
    assert curve[1]["exit_fractions"][-1] == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        early_exit_from_logits(logits, 1.5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_classes=1), "num_classes must be an integer >= 2"),
        (dict(input_shape=(16, 16, 3), stem_type="imagenet"), "at least 32 pixels"),
        (dict(input_shape=(4, 4, 3)), "at least 8 pixels"),
        (dict(stem_type="tiny"), "Valid stems: auto, cifar, imagenet"),
        (dict(head="mlp"), "Valid heads: sepconv, bottleneck"),
        (dict(exits=[4]), r"after sections \[1, 2, 3\]"),
        (dict(weights="imagenet"), "not a file nor a checkpoint of .*Registered for"),
        (dict(objective="offical"), "Valid presets: official, paper"),
    ],
)
def test_bad_builder_arguments_get_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.resnet18_byot(**{"width_multiplier": 0.125, **kwargs})


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(ValueError, match="Did you mean: resnet50_byot"):
        zoo.create_model("resnet5_byot")
    assert zoo.list_models("resnet*_byot") == [
        "resnet101_byot", "resnet152_byot", "resnet18_byot", "resnet34_byot", "resnet50_byot"
    ]


def test_compile_refuses_a_loss_and_networks_without_exits_are_rejected():
    model = zoo.resnet18_byot(num_classes=3, width_multiplier=0.125)
    with pytest.raises(ValueError, match="without loss= and metrics="):
        model.compile(optimizer="sgd", loss="mse")
    inputs = keras.Input((8,))
    plain = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    with pytest.raises(ValueError, match="exit_1..exit_N and feature_1..feature_N"):
        SelfDistillationModel(plain)


def test_exit_placement_and_head_options():
    model = zoo.resnet18_byot(num_classes=4, width_multiplier=0.125, exits=[2],
                              head="bottleneck")
    assert model.exit_names == ["exit_1", "exit_2"]
    names = [layer.name for layer in model.network.layers]
    assert not any("attention" in n for n in names)  # bottleneck heads default to none
    out = model.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
    assert {k: v.shape for k, v in out.items()} == {"exit_1": (2, 4), "exit_2": (2, 4)}


def test_calling_the_model_is_inference_and_leaves_batch_norm_statistics_alone():
    """`model(x)` (training=None) must not run any BatchNorm in training mode; a layer
    whose call defaults to training=True (keras' Resizing) once made it do so."""
    model = zoo.resnet18_byot(num_classes=3, width_multiplier=0.125, input_shape=(36, 36, 3))
    x = np.random.default_rng(0).uniform(size=(4, 36, 36, 3)).astype("float32")
    before = [w.numpy().copy() for w in model.non_trainable_weights]
    called = model(x)
    for w, b in zip(model.non_trainable_weights, before):
        np.testing.assert_array_equal(w.numpy(), b, err_msg=w.path)
    predicted = model.predict(x, verbose=0)
    for name in model.exit_names:  # odd 9x9 maps (36 -> 18 -> 9) keep their attention
        np.testing.assert_allclose(called[name].numpy(), predicted[name], atol=1e-5)


def test_kernels_are_initialised_independently_and_reproducibly():
    """Same-shaped kernels must differ (a shared unseeded Keras initializer repeats its
    values), and keras.utils.set_random_seed must make the whole model reproducible."""

    def kernels(seed):
        keras.utils.set_random_seed(seed)
        model = zoo.resnet18_byot(num_classes=3, width_multiplier=0.125)
        return {w.path: w.numpy() for w in model.trainable_weights if "kernel" in w.path}

    first, again, other = kernels(3), kernels(3), kernels(4)
    a = first["stage1_block1_conv2/kernel"]
    b = first["stage1_block2_conv1/kernel"]
    assert a.shape == b.shape and not np.allclose(a, b)
    assert all(np.array_equal(first[p], again[p]) for p in first)
    assert not np.allclose(first[next(iter(first))], other[next(iter(other))])
