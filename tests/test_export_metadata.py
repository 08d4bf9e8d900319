"""The exported files as standard image classifiers, without MediaPipe (that is
test_mediapipe.py): every file carries TFLite Model Metadata that reads back with the
normalisation and labels written; the files take 0..255 RGB pixels and normalise them
with the model's recorded normalisation; exit files return probabilities; int8 files with
int8_io take uint8 pixels whose quantization makes the bytes the pixels."""

import json

import keras
import numpy as np
import pytest

from byot_keras import zoo
from byot_keras.data import CIFAR_NORMALIZATION, normalize_cifar
from byot_keras.export import LiteRTModel, convert, export_tflite
from byot_keras.export.metadata import (
    ModelInfo,
    TensorInfo,
    add_metadata,
    decode_metadata,
    encode_metadata,
    read_metadata,
)
from byot_keras.inference import softmax
from byot_keras.normalization import check_normalization, from_pixels
from byot_keras.training import SelfDistillationModel

LABELS = ["cat", "dog", "ship"]


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    model = zoo.resnet18_byot(num_classes=3, width_multiplier=0.125, exits=[2])
    model.input_normalization = CIFAR_NORMALIZATION
    return model


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("metadata") / "export"
    return folder, export_tflite(model, folder, labels=LABELS)


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)).astype(np.uint8)


def _tensors(metadata, side):
    return {t["name"]: t for t in metadata["subgraph_metadata"][0][f"{side}_tensor_metadata"]}


def test_every_file_carries_metadata_that_reads_back(exported):
    folder, manifest = exported
    files = [f for f in manifest["files"] if f.endswith(".tflite")]
    assert len(files) == 2 + 2 + 1  # exit files, segments, model.tflite
    for file in files:
        metadata = read_metadata(folder / file)
        assert metadata is not None, file
        assert metadata["version"] == manifest["metadata"]["version"].strip()
        assert metadata["version"].startswith("sha256:")
        assert metadata["author"] == "byot-keras" and metadata["min_parser_version"] == "1.0.0"
        assert "license" not in metadata  # none given
        assert metadata["associated_files"] == {"labels.txt": b"cat\ndog\nship\n"}
        inputs, outputs = _tensors(metadata, "input"), _tensors(metadata, "output")
        runner = LiteRTModel(folder / file, signature=(
            manifest["multi_signature"]["files"]["float32"]["metadata_signature"]
            if file == "model.tflite" else "serving_default"))
        assert set(inputs) == set(runner.input_names)
        assert set(outputs) == set(runner.output_names)
        if "image" in inputs:
            image = inputs["image"]
            assert image["content"] == {"content_properties_type": "ImageProperties",
                                        "content_properties": {"color_space": "RGB"}}
            # Tools feed (pixel - 0) / 1: the file normalises with the model's own values.
            assert image["process_units"] == [{"options_type": "NormalizationOptions",
                                               "options": {"mean": [0.0], "std": [1.0]}}]
            assert image["stats"] == {"max": [255.0], "min": [0.0]}
            assert str(CIFAR_NORMALIZATION["mean"]) in image["description"]
            assert str([round(s, 4) for s in CIFAR_NORMALIZATION["std"]]) in (
                image["description"])
        scores = outputs.get("probabilities") or outputs["logits"]
        assert scores["associated_files"] == [{
            "name": "labels.txt", "type": "TENSOR_AXIS_LABELS",
            "description": "Class names, one per line, in the order of the tensor's last "
                           "axis."}]
        if "probabilities" in outputs:
            assert scores["stats"] == {"max": [1.0], "min": [0.0]}
    assert manifest["input"]["pixels"] is True
    assert manifest["input"]["normalization"] == check_normalization(CIFAR_NORMALIZATION)
    assert json.loads((folder / "manifest.json").read_text()) == manifest


def test_files_take_pixels_and_normalise_like_the_model(model, exported, pixels):
    folder, manifest = exported
    expected = model.predict(normalize_cifar(pixels), verbose=0)
    for k, entry in enumerate(manifest["exits"], start=1):
        got = LiteRTModel(folder / entry["files"]["float32"]["file"])(image=pixels)
        want = softmax(np.asarray(expected[f"exit_{k}"], np.float64))
        np.testing.assert_allclose(got["probabilities"], want, atol=2e-6)
    segment = LiteRTModel(folder / manifest["exits"][0]["segment"]["float32"]["file"])
    np.testing.assert_allclose(segment(image=pixels)["logits"], expected["exit_1"],
                               atol=1e-4 * np.abs(expected["exit_1"]).max())
    multi = LiteRTModel(folder / "model.tflite", signature="exit_2")
    np.testing.assert_allclose(multi(image=pixels)["probabilities"],
                               softmax(np.asarray(expected["exit_2"], np.float64)), atol=2e-6)
    # exit_outputs="logits" and a normalisation given explicitly (it overrides the model's).
    other = {"scale": 1 / 255, "mean": 0.5, "std": 0.25}
    logits = LiteRTModel(convert(model.exit_model(1), "image", normalization=other))
    want = model.predict(from_pixels(pixels, other), verbose=0)["exit_1"]
    assert logits.output_names == ["logits"]
    np.testing.assert_allclose(logits(image=pixels)["logits"], want,
                               atol=1e-4 * np.abs(want).max())


def test_int8_io_takes_uint8_pixels_that_are_the_bytes(model, pixels):
    # Calibration images spanning only 20..200 would give the input another scale: the
    # exporter pins it to (1, 0), so the uint8 bytes an app passes are the pixels.
    rng = np.random.default_rng(1)
    calibration = rng.integers(20, 201, (24, 32, 32, 3)).astype(np.float32)
    flatbuffer = convert(model.exit_model(1), "image", "int8", calibration, int8_io=True,
                         normalization=CIFAR_NORMALIZATION, probabilities=True)
    runner = LiteRTModel(flatbuffer)
    image, probabilities = runner.input_details["image"], runner.output_details[
        "probabilities"]
    assert image["dtype"] == np.uint8 and image["quantization"] == (1.0, 0)
    assert probabilities["dtype"] == np.uint8
    assert probabilities["quantization"] == (1 / 256, 0)
    inside = rng.integers(20, 201, (16, 32, 32, 3)).astype(np.uint8)
    raw = runner.raw(image=inside)["probabilities"]  # uint8 in, uint8 out
    assert raw.dtype == np.uint8
    want = softmax(np.asarray(model.predict(normalize_cifar(inside), verbose=0)["exit_1"],
                              np.float64))
    assert np.abs(raw / 256 - want).max() < 0.05  # int8 noise, not a wrong input scale
    info = ModelInfo("m", "d", "1", "byot-keras",
                     inputs=[TensorInfo("image", "uint8 pixels", image=True,
                                        normalization=([0.0], [1.0]), value_range=(0, 255))],
                     outputs=[TensorInfo("probabilities", "p", value_range=(0, 255),
                                         labels_file="labels.txt")])
    packed = add_metadata(flatbuffer, info, {"labels.txt": b"cat\ndog\nship\n"})
    np.testing.assert_array_equal(LiteRTModel(packed).raw(image=inside)["probabilities"], raw)


def test_metadata_encoder_round_trip_and_errors(model):
    info = ModelInfo("name", "description", "7", "me", license="MIT",
                     inputs=[TensorInfo("image", "in", image=True,
                                        normalization=([127.5], [127.5]))],
                     outputs=[TensorInfo("logits", "out", labels_file="labels.txt")])
    decoded = decode_metadata(encode_metadata(info))
    assert {k: decoded[k] for k in ("name", "description", "version", "author", "license")} == {
        "name": "name", "description": "description", "version": "7", "author": "me",
        "license": "MIT"}
    options = _tensors(decoded, "input")["image"]["process_units"][0]["options"]
    assert options == {"mean": [127.5], "std": [127.5]}
    with pytest.raises(ValueError, match="identifier"):
        decode_metadata(b"\0" * 16)
    plain = convert(model.exit_model(1), "image")
    assert read_metadata(plain) is None
    with pytest.raises(ValueError, match="not given"):
        add_metadata(plain, info)
    wrong = ModelInfo("n", "d", "1", "a", inputs=info.inputs,
                      outputs=[TensorInfo("scores", "out")])
    with pytest.raises(ValueError, match=r"outputs \['logits'\].*\['scores'\]"):
        add_metadata(plain, wrong)


def test_the_model_records_its_normalization_and_bad_values_are_refused(model, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    assert keras.saving.load_model(path).input_normalization == check_normalization(
        CIFAR_NORMALIZATION)
    config = model.get_config()
    del config["input_normalization"]  # a file saved before the field existed
    assert SelfDistillationModel.from_config(config).input_normalization is None
    for bad, message in [({"scale": 1, "mean": [0, 0], "std": 1}, "'mean' has 2 values"),
                         ({"scale": 1, "mean": 0, "std": 0}, "'std' must be positive"),
                         ({"mean": 0, "std": 1}, r"missing \['scale'\]"),
                         ("cifar", "give a dict")]:
        with pytest.raises(ValueError, match=message):
            zoo.resnet18_byot(num_classes=3, width_multiplier=0.125,
                              exits=[2]).input_normalization = bad


@pytest.mark.parametrize("kwargs, message", [
    (dict(exit_outputs="scores"), "valid: probabilities, logits"),
    (dict(model_info={"owner": "me"}), "unknown keys"),
    (dict(labels=["a", "b\nc", "d"]), "labels\\[1\\] is .*line break"),
    (dict(normalization={"scale": 1, "mean": 0}), "missing"),
])
def test_bad_metadata_requests_fail_before_writing(model, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        export_tflite(model, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
