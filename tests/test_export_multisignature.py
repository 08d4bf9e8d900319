"""The multi-signature `model.tflite`: one signature per exit ("exit_1" ... "exit_N"),
read by signature and tensor name through the LiteRT interpreter itself (never by
position), must give the Keras exits' probabilities and the per-exit files'. Real images:
test_cifar10.py; the README's tensor table: test_tflite_readme.py; its metadata:
test_export_metadata.py."""

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from byot_keras.export import LiteRTModel, operator_names, read_manifest
from byot_keras.export.metadata import read_metadata
from byot_keras.inference import softmax
from byot_keras.normalization import to_pixels


@pytest.fixture(scope="module")
def exported(reference_export):
    # The README's reference export (conftest), shared with test_tflite_readme.py.
    model, folder = reference_export
    return model, folder, read_manifest(folder)


def _run(path, signature: str, images: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner(signature)
    assert list(runner.get_input_details()) == ["image"]
    assert list(runner.get_output_details()) == ["probabilities"]
    return runner(image=images)["probabilities"]


def test_signatures_are_the_exits_with_image_in_and_probabilities_out(exported):
    model, folder, manifest = exported
    multi = manifest["multi_signature"]
    assert multi["signatures"] == model.exit_names == [
        f"exit_{k}" for k in range(1, model.num_exits + 1)]
    info = multi["files"]["float32"]
    assert info["file"] == "model.tflite"
    path = folder / info["file"]
    assert path.stat().st_size == info["bytes"]
    assert info["max_abs_diff"] <= 1e-4 * max(1.0, info["output_scale"])
    signatures = Interpreter(model_path=str(path)).get_signature_list()
    assert signatures == {name: {"inputs": ["image"], "outputs": ["probabilities"]}
                          for name in model.exit_names}
    # The metadata describes subgraph 0 (the format holds one): the manifest says which.
    assert info["metadata_signature"] in model.exit_names
    assert read_metadata(path)["name"] == f"{model.name} all exits"
    assert not any(op.lower().startswith("flex") for op in operator_names(path))
    with pytest.raises(ValueError, match="No 'serving_default' signature"):
        LiteRTModel(path)  # the wrapper, too, wants a signature name for this file
    # The exits share their stem and sections: stored once, not once per exit.
    assert info["bytes"] < sum(e["files"]["float32"]["bytes"] for e in manifest["exits"])


def test_each_signature_gives_the_keras_exit_and_the_per_exit_file(exported):
    model, folder, manifest = exported
    path = folder / manifest["multi_signature"]["files"]["float32"]["file"]
    shape = tuple(model.network.inputs[0].shape[1:])
    images = np.random.default_rng(5).normal(size=(6, *shape)).astype("float32")
    expected = model(images, training=False)
    pixels = to_pixels(images, model.input_normalization)  # what the files take
    for name, entry in zip(model.exit_names, manifest["exits"]):
        got = _run(path, name, pixels)
        want = softmax(np.asarray(expected[name], np.float64))
        scale = np.abs(want).max()
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4 * scale, name
        # The exit's own file holds the same graph: the same numbers.
        own = _run(folder / entry["files"]["float32"]["file"], "serving_default", pixels)
        np.testing.assert_allclose(got, own, atol=1e-5 * scale, err_msg=name)
