"""byot_keras.export on small untrained models: files, names, manifest, and the errors
and atomicity an app developer relies on. Real-image checks are in test_cifar10.py."""

import json

import keras
import numpy as np
import pytest

from byot_keras import zoo
from byot_keras.export import LiteRTModel, cascade_models, export_tflite
from byot_keras.export import tflite as tflite_module
from byot_keras.export.cli import load_trained_model


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
    manifest = export_tflite(model, tmp_path / "out", labels=["a", "b", "c", "d"])
    out = tmp_path / "out"
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert (out / "labels.txt").read_text().split() == ["a", "b", "c", "d"]
    assert manifest["num_exits"] == 2 and manifest["signature"] == "serving_default"
    for k, entry in enumerate(manifest["exits"], start=1):
        info = entry["files"]["float32"]
        assert info["file"] == f"exit_{k}.tflite"
        assert (out / info["file"]).stat().st_size == info["bytes"]
        assert info["max_abs_diff"] <= 1e-4 * max(1.0, info["logit_scale"])
        runner = LiteRTModel(out / info["file"])
        assert runner.input_names == ["image"] and runner.output_names == ["logits"]
        assert not any(op.lower().startswith("flex") for op in runner.op_names())
        segment = entry["segment"]["float32"]
        assert segment["file"] == f"cascade/segment_{k}.tflite"
        assert list(segment["inputs"]) == (["image"] if k == 1 else ["trunk_in"])
    first, last = (entry["segment"]["float32"] for entry in manifest["exits"])
    assert first["outputs"]["trunk_out"] == last["inputs"]["trunk_in"]
    assert set(last["outputs"]) == {"logits"}
    # The early exit's file holds only what it needs: smaller than the deepest's.
    sizes = [entry["files"]["float32"]["bytes"] for entry in manifest["exits"]]
    assert sizes[0] < sizes[1]


def test_failed_export_keeps_the_previous_one(model, tmp_path, monkeypatch):
    out = tmp_path / "out"
    export_tflite(model, out, cascade=False, exits=[1])
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
        (dict(quantizations=["int4"]), ValueError, "Valid: float32, float16, dynamic_int8, int8"),
        (dict(quantizations=["int8"]), ValueError, "needs calibration data"),
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


def test_cli_loader_rejects_corrupt_and_missing_files(tmp_path):
    corrupt = tmp_path / "broken.keras"
    corrupt.write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match="not a loadable Keras model file"):
        load_trained_model(str(corrupt))
    with pytest.raises(ValueError, match="does not exist"):
        load_trained_model(str(tmp_path / "missing.keras"))
    with pytest.raises(ValueError, match="exactly one of"):
        load_trained_model(None)
