"""byot_keras.export on small untrained models: files, names, manifest, and the errors
and atomicity an app developer relies on. Real-image checks are in test_cifar10.py."""

import json

import keras
import numpy as np
import pytest

from byot_keras import zoo
from byot_keras.export import LiteRTModel, cascade_models, convert, export_tflite
from byot_keras.export import tflite as tflite_module
from byot_keras.export.cli import load_trained_model
from byot_keras.export.equalize import (
    depthwise_pointwise_pairs,
    equalization_scales,
    equalize_for_quantization,
)
from byot_keras.export.metadata import read_metadata
from byot_keras.export.tflite import int8_trunk_interface
from byot_keras.zoo.pretrained import save_weights_by_name


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return zoo.resnet18_byot(num_classes=4, width_multiplier=0.125, exits=[2])


def test_cascade_segments_reproduce_every_exit_in_keras(model):
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    segments = cascade_models(model)
    assert len(segments) == model.num_exits == 2
    trunk = x
    for k, segment in enumerate(segments, start=1):
        out = segment.predict(trunk, verbose=0)
        np.testing.assert_allclose(out["logits"], expected[f"exit_{k}"], atol=1e-5)
        trunk = out.get("trunk_out")
    assert trunk is None  # the last segment has no trunk output


def test_export_writes_files_manifest_and_labels(model, tmp_path):
    # The multi-signature file has its own tests (test_export_multisignature.py).
    manifest = export_tflite(model, tmp_path / "out", labels=["a", "b", "c", "d"],
                             multi_signature=False)
    out = tmp_path / "out"
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert (out / "labels.txt").read_text().split() == ["a", "b", "c", "d"]
    assert manifest["num_exits"] == 2 and manifest["signature"] == "serving_default"
    assert manifest["multi_signature"] is None and not (out / "model.tflite").exists()
    for k, entry in enumerate(manifest["exits"], start=1):
        info = entry["files"]["float32"]
        assert info["file"] == f"exit_{k}.tflite"
        assert (out / info["file"]).stat().st_size == info["bytes"]
        assert info["max_abs_diff"] <= 1e-4 * max(1.0, info["output_scale"])
        runner = LiteRTModel(out / info["file"])
        assert runner.input_names == ["image"] and runner.output_names == ["probabilities"]
        assert info["outputs"] == {"probabilities": [4]}
        assert not any(op.lower().startswith("flex") for op in runner.op_names())
        segment = entry["segment"]["float32"]
        assert segment["file"] == f"cascade/segment_{k}.tflite"
        assert list(segment["inputs"]) == (["image"] if k == 1 else ["trunk_in"])
    first, last = (entry["segment"]["float32"] for entry in manifest["exits"])
    assert first["outputs"]["trunk_out"] == last["inputs"]["trunk_in"]
    assert set(last["outputs"]) == {"logits"}
    # This model records no input normalisation: the files take its input unchanged, and
    # their metadata says so (tools feed pixels as they are: mean 0, std 1).
    assert manifest["input"]["pixels"] is False and manifest["input"]["normalization"] is None
    image = read_metadata(out / "exit_1.tflite")["subgraph_metadata"][0][
        "input_tensor_metadata"][0]
    assert "normalisation is unknown" in image["description"] and "stats" not in image
    assert image["process_units"][0]["options"] == {"mean": [0.0], "std": [1.0]}
    assert manifest["exit_outputs"] == "probabilities" and manifest["format_version"] == 2
    # The early exit's file holds only what it needs: smaller than the deepest's.
    sizes = [entry["files"]["float32"]["bytes"] for entry in manifest["exits"]]
    assert sizes[0] < sizes[1]


def test_failed_export_keeps_the_previous_one(model, tmp_path, monkeypatch):
    out = tmp_path / "out"
    export_tflite(model, out, cascade=False, multi_signature=False, exits=[1])
    before = (out / "manifest.json").read_text()
    calls = []

    def failing_convert(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("simulated converter failure")

    monkeypatch.setattr(tflite_module, "convert", failing_convert)
    with pytest.raises(RuntimeError, match="simulated"):
        export_tflite(model, out)
    assert calls
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left behind


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(exits=[3]), ValueError, "exits 1..2"),
        (dict(quantizations=["int4"]), ValueError,
         "Valid: float32, float16, dynamic_int8, int8, int16x8"),
        (dict(quantizations=["int8"]), ValueError, "needs calibration data"),
        (dict(quantizations=["int16x8"]), ValueError, "needs calibration data"),
        (dict(labels=["only-one"]), ValueError, "1 labels for a 4-class model"),
        (dict(eval_data=(np.zeros((2, 8, 8, 3)), np.zeros(2))), ValueError, "takes"),
    ],
)
def test_bad_export_requests_fail_before_writing(model, tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        export_tflite(model, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_output_folder_that_is_a_file_and_non_multi_exit_models_are_rejected(model, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    with pytest.raises(ValueError, match="is a file"):
        export_tflite(model, target)
    assert target.read_text() == "keep me"
    inputs = keras.Input((8,))
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match="Expected a multi-exit model"):
        export_tflite(plain, tmp_path / "plain")


def test_cli_loader_rejects_corrupt_and_missing_files_and_needs_weights(tmp_path):
    corrupt = tmp_path / "broken.keras"
    corrupt.write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match="broken.keras' is damaged"):
        load_trained_model(str(corrupt))
    with pytest.raises(FileNotFoundError, match="No model file at .*missing.keras"):
        load_trained_model(str(tmp_path / "missing.keras"))
    with pytest.raises(ValueError, match="is a folder, not a .keras model file"):
        load_trained_model(str(tmp_path))
    with pytest.raises(ValueError, match="exactly one of"):
        load_trained_model(None)
    with pytest.raises(ValueError, match="needs --weights.*untrained, random weights"):
        load_trained_model(None, "resnet18_byot", num_classes=4, width_multiplier=0.125)


def test_cli_loader_builds_a_registry_model_with_its_trained_weights(tmp_path):
    """byot-export --model <name> --weights <file>: the weights as zoo.<name>(weights=)
    takes them, both a network's .npz and a training model's model.save_weights file."""
    keras.utils.set_random_seed(3)
    options = dict(num_classes=4, width_multiplier=0.125, exits=[2])
    trained = zoo.resnet18_byot(**options)
    save_weights_by_name(trained.network, tmp_path / "net.npz")
    trained.save_weights(tmp_path / "model.weights.h5")
    for weights in ("net.npz", "model.weights.h5"):
        loaded = load_trained_model(None, "resnet18_byot", str(tmp_path / weights), **options)
        for got, want in zip(loaded.network.weights, trained.network.weights):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=weights)


def test_equalization_keeps_the_float_function_and_balances_each_channel(model):
    x = np.random.default_rng(1).normal(size=(16, 32, 32, 3)).astype("float32")
    original = model.network.get_weights()
    copy, pairs = equalize_for_quantization(model.network, x)
    for kept, weight in zip(original, model.network.get_weights()):  # a copy is rescaled
        np.testing.assert_array_equal(kept, weight)
    # The exit hangs off section 2: its attention mask has one separable conv (two
    # depthwise -> 1x1 pairs), and one separable conv per later section (3 and 4) follows.
    assert pairs == 2 + 2 * 2 == len(depthwise_pointwise_pairs(copy))
    before, after = model.network(x, training=False), copy(x, training=False)
    for name in model.exit_names:
        scale = np.abs(before[name]).max()
        np.testing.assert_allclose(after[name], before[name], atol=1e-5 * scale)
    # sqrt(w / a) rescaling leaves every live channel with activation range == weight range.
    probe = keras.Model(copy.inputs, [dw.output for dw, _ in depthwise_pointwise_pairs(copy)])
    for (_, pointwise), output in zip(depthwise_pointwise_pairs(copy),
                                      probe(x, training=False)):
        output = np.asarray(output)
        activation = np.abs(output).max(axis=(0, 1, 2))
        weight = np.abs(pointwise.kernel.numpy()[0, 0]).max(axis=1)
        alive = activation > 1e-6
        np.testing.assert_allclose(activation[alive], weight[alive], rtol=1e-3)


def test_equalization_scales_formula():
    scales = equalization_scales(np.array([4.0, 0.0, 1.0]), np.array([1.0, 2.0, 0.0]))
    np.testing.assert_allclose(scales, [0.5, 1.0, 1.0])  # sqrt(1/4); dead channels keep 1


def test_int8_segments_hand_over_int8_trunk_tensors_unchanged():
    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 3))
    trunk = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(image)
    first = keras.Model(image, {"logits": keras.layers.Dense(3)(
        keras.layers.GlobalAveragePooling2D()(trunk)), "trunk_out": trunk})
    trunk_in = keras.Input((8, 8, 4))
    hidden = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(trunk_in)
    second = keras.Model(trunk_in, {"logits": keras.layers.Dense(3)(
        keras.layers.GlobalAveragePooling2D()(hidden))})
    x = np.random.default_rng(0).normal(size=(32, 8, 8, 3)).astype("float32")
    plain = [convert(first, "image", "int8", x),
             convert(second, "trunk_in", "int8", first.predict(x, verbose=0)["trunk_out"])]
    one = LiteRTModel(int8_trunk_interface(plain[0]))
    out_detail = one.output_details["trunk_out"]
    two = LiteRTModel(int8_trunk_interface(plain[1], out_detail["quantization"]))
    in_detail = two.input_details["trunk_in"]
    assert out_detail["dtype"] == in_detail["dtype"] == np.int8
    assert out_detail["quantization"] == in_detail["quantization"]
    assert one.input_details["image"]["dtype"] == np.float32
    assert one.output_details["logits"]["dtype"] == two.output_details["logits"]["dtype"] == (
        np.float32)
    # The same chain through float trunk tensors (the unmodified files) agrees.
    raw = one.raw(image=x[:4])["trunk_out"]
    assert raw.dtype == np.int8
    handed_over = two(trunk_in=raw)["logits"]  # int8 passes through as it is
    np.testing.assert_array_equal(handed_over, two(trunk_in=one.to_float("trunk_out", raw))[
        "logits"])  # == dequantize, then quantize again with the same parameters
    reference = LiteRTModel(plain[1])(trunk_in=LiteRTModel(plain[0])(image=x[:4])["trunk_out"])
    scale = np.abs(reference["logits"]).max()
    np.testing.assert_allclose(handed_over, reference["logits"], atol=0.02 * scale)
