"""Real images: 2,500 offline CIFAR-10 pictures train a narrow ResNet-18 once (under a
minute on 2 cores, deterministic ops); the tests then check training (every exit beats
chance), and the TFLite export on real test images (float32 files and the cascade match
the Keras exits; int8 files and the int8 cascade, which hands int8 trunk tensors on,
agree with the float model; int8 files are much smaller). The files take the test
images as 0..255 pixels and normalise them inside, as the model records."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from byot_keras import zoo
from byot_keras.data import CIFAR_NORMALIZATION, load_cifar
from byot_keras.export import LiteRTModel, export_tflite
from byot_keras.inference import softmax
from byot_keras.normalization import to_pixels

# int8 agreement with the float model (top-1). An answer flips when int8 noise on the
# logits exceeds the gap between the two largest ones, so agreement is a property of the
# trained model: over four briefly trained models (benchmarks/results/int8_agreement.md,
# 5,000 test images) exit files and cascades agree on 95.1-99.0 %, 24 of 32 reach the
# 97 % target. This model's shallow exits sit at 96.1-97.2 %, so the suite holds them to
# 95 % (a broken int8 path lands far below) and the deepest exit to the 97 % target.
INT8_DEEPEST_MIN = 0.97
INT8_SHALLOW_MIN = 0.95


@pytest.fixture(scope="module")
def cifar(cifar10_dir):
    train = load_cifar("cifar10", "train[:2500]", cifar10_dir)
    test = load_cifar("cifar10", "test[:1000]", cifar10_dir)
    return train, test


@pytest.fixture(scope="module")
def trained(cifar):
    (x_train, y_train), _ = cifar
    # The same model whatever ran before in this worker: a byot-train test enables op
    # determinism for its process (a global switch), which changes these numerics.
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(0)
    model = zoo.resnet18_byot(num_classes=10, width_multiplier=0.25)
    model.input_normalization = CIFAR_NORMALIZATION  # as byot-train records it
    epochs, batch = 3, 64
    steps = epochs * int(np.ceil(len(x_train) / batch))
    model.compile(optimizer=keras.optimizers.SGD(
        keras.optimizers.schedules.CosineDecay(0.05, steps), momentum=0.9))
    history = model.fit(x_train, y_train, batch_size=batch, epochs=epochs, verbose=0)
    return model, history.history


def test_short_training_every_exit_beats_chance(trained, cifar):
    model, history = trained
    _, (x_test, y_test) = cifar
    print("training loss per epoch:", history["loss"])
    assert history["loss"][-1] < 0.85 * history["loss"][0], history["loss"]
    result = model.evaluate(x_test, y_test, batch_size=250, verbose=0, return_dict=True)
    accuracies = {name: result[f"{name}_accuracy"] for name in model.exit_names}
    print("CIFAR-10 test accuracy per exit:", accuracies, "ensemble:",
          result["ensemble_accuracy"])
    # 1,000 test images: chance is 10 % +- 0.95 % (one standard deviation), so 15 % is
    # five standard deviations above it.
    for name, accuracy in accuracies.items():
        assert accuracy > 0.15, (name, accuracies)
    assert accuracies[model.exit_names[-1]] > 0.25, accuracies
    assert result["ensemble_accuracy"] > 0.25, result


@pytest.fixture(scope="module")
def exported(trained, cifar, tmp_path_factory):
    model, _ = trained
    (x_train, _), (x_test, y_test) = cifar
    folder = tmp_path_factory.mktemp("export")
    eval_data = (x_test, y_test)
    # model.tflite holds the exit files' graphs (test_export_multisignature.py checks
    # it against them and the Keras exits); not converted again here, to save time.
    floats = export_tflite(model, folder / "float32", eval_data=eval_data,
                           multi_signature=False)
    ints = export_tflite(model, folder / "int8", quantizations=["int8"],
                         multi_signature=False, representative_data=x_train[:200],
                         eval_data=eval_data)
    return folder, floats, ints


def test_float32_exit_files_match_keras_on_real_images(trained, cifar, exported):
    model, _ = trained
    _, (x_test, _) = cifar
    folder, manifest, _ = exported
    images = x_test[:200]
    expected = model.predict(images, verbose=0)
    for k, entry in enumerate(manifest["exits"], start=1):
        got = LiteRTModel(folder / "float32" / entry["files"]["float32"]["file"]).predict(
            image=to_pixels(images, CIFAR_NORMALIZATION))["probabilities"]
        want = softmax(np.asarray(expected[f"exit_{k}"], np.float64))
        assert np.abs(got - want).max() <= 1e-5, k
        assert entry["files"]["float32"]["agreement_with_keras"] >= 0.998


def test_chained_cascade_segments_reproduce_the_keras_exits(trained, cifar, exported):
    model, _ = trained
    _, (x_test, _) = cifar
    folder, manifest, _ = exported
    images = x_test[:200]
    expected = model.predict(images, verbose=0)
    feed = {"image": to_pixels(images, CIFAR_NORMALIZATION)}
    for k, entry in enumerate(manifest["exits"], start=1):
        segment = LiteRTModel(folder / "float32" / entry["segment"]["float32"]["file"])
        out = segment.predict(**feed)
        scale = np.abs(expected[f"exit_{k}"]).max()
        assert np.abs(out["logits"] - expected[f"exit_{k}"]).max() <= 1e-4 * scale, k
        if "trunk_out" in out:
            feed = {"trunk_in": out["trunk_out"]}
    assert k == model.num_exits


def test_int8_files_agree_with_the_float_model_and_are_much_smaller(exported):
    _, floats, ints = exported
    agreements = []
    for float_entry, int_entry in zip(floats["exits"], ints["exits"]):
        f32, i8 = float_entry["files"]["float32"], int_entry["files"]["int8"]
        print(f"{float_entry['exit']}: {f32['bytes']:,} -> {i8['bytes']:,} bytes, "
              f"top-1 agreement {i8['agreement_with_keras']:.3f}, accuracy "
              f"{f32['accuracy']:.3f} -> {i8['accuracy']:.3f}")
        agreements.append(i8["agreement_with_keras"])
    # Each head has an attention mask (one separable conv: two depthwise -> 1x1 pairs)
    # and one separable conv per later section; exits hang off sections 1, 2, 3 of 4.
    assert ints["calibration"]["int8_equalized_layer_pairs"] == (2 + 6) + (2 + 4) + (2 + 2)
    assert ints["calibration"]["int8_float_classifier"] is True
    # Measured on these 1,000 test images: 0.963, 0.971, 0.972, 0.984.
    assert agreements[-1] >= INT8_DEEPEST_MIN, agreements
    assert min(agreements) >= INT8_SHALLOW_MIN, agreements
    deepest_ratio = floats["exits"][-1]["files"]["float32"]["bytes"] / \
        ints["exits"][-1]["files"]["int8"]["bytes"]
    assert deepest_ratio > 3.3, deepest_ratio  # ~4x for weights, minus fixed overhead


def test_int8_cascade_hands_int8_trunk_tensors_on_and_agrees(trained, cifar, exported):
    model, _ = trained
    _, (x_test, _) = cifar
    folder, _, ints = exported
    assert ints["int8_trunk"] is True
    images = x_test
    expected = model.predict(images, verbose=0)
    feed = {"image": to_pixels(images, CIFAR_NORMALIZATION)}
    previous = None  # the last segment's int8 "trunk_out" (scale, zero point)
    for k, entry in enumerate(ints["exits"], start=1):
        segment = LiteRTModel(folder / "int8" / entry["segment"]["int8"]["file"])
        if k > 1:  # int8 in, with exactly the previous segment's parameters
            detail = segment.input_details["trunk_in"]
            assert detail["dtype"] == np.int8 and detail["quantization"] == previous
        parts = [segment.raw(**{n: v[i:i + 100] for n, v in feed.items()})
                 for i in range(0, len(images), 100)]
        raw = {n: np.concatenate([part[n] for part in parts]) for n in parts[0]}
        logits = segment.to_float("logits", raw["logits"])
        agreement = np.mean(logits.argmax(-1) == expected[f"exit_{k}"].argmax(-1))
        print(f"int8 cascade exit_{k}: top-1 agreement with Keras {agreement:.3f}")
        # Measured: 0.961, 0.970, 0.970, 0.983.
        limit = INT8_DEEPEST_MIN if k == model.num_exits else INT8_SHALLOW_MIN
        assert agreement >= limit, (k, agreement)
        if "trunk_out" in raw:
            assert raw["trunk_out"].dtype == np.int8
            previous = segment.output_details["trunk_out"]["quantization"]
            feed = {"trunk_in": raw["trunk_out"]}  # the bytes as they are
    assert k == model.num_exits
