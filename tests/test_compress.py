"""byot_keras.compress: the tf_keras twin, tfmot QAT and pruning, and their exports.

tfmot switches TensorFlow to legacy Keras when imported, so everything that imports it
runs in two subprocesses started together (the `byot-qat` recipe, and a probe script
that builds twins, prunes and tries an unquantizable layer); this process only trains
the tiny Keras 3 models and checks the results against its own Keras 3 outputs, its own
TFLite conversion and LiteRT runs.
"""

import gzip
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from user_files import assert_untouched, put_user_files

from byot_keras import zoo
from byot_keras.data import DIGITS_NORMALIZATION, load_digits
from byot_keras.export import LiteRTModel, convert
from byot_keras.export.metadata import read_metadata
from byot_keras.normalization import check_normalization, to_pixels
from byot_keras.saving import save_model_atomically

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
HAS_EXTRA = all(importlib.util.find_spec(name) is not None
                for name in ("tf_keras", "tensorflow_model_optimization"))
needs_extra = pytest.mark.skipif(
    not HAS_EXTRA, reason='needs the compress extra: pip install -e ".[compress]"')
TRAIN, EVAL, CALIBRATION = 320, 120, 16
TARGET_SPARSITY = 0.6

# Runs in a subprocess: the twins' logits, a twin from the wrong builder, pruning of the
# first model, and quantize_network on a layer tfmot lacks.
PROBE = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    from byot_keras.compress import extra, prune, qat, twin
    from byot_keras.data import load_digits
    images_file, out_file, prune_dir, sparsity, train, *model_files = sys.argv[1:]
    images = np.load(images_file)["images"]
    result = {}
    for path in model_files:
        made = twin.build_twin(keras.saving.load_model(path))
        outputs = made.network(images, training=False)
        np.savez(path + ".twin.npz", **{k: np.asarray(v) for k, v in outputs.items()})
        result[path] = made.builder
    try:
        twin.build_twin(keras.saving.load_model(model_files[1]), "resnet34_byot",
                        width_multiplier=0.125)
        result["mismatch"] = None
    except ValueError as error:
        result["mismatch"] = str(error)
    (x, y), _ = load_digits()
    prune.magnitude_pruning(keras.saving.load_model(model_files[0]), x[:int(train)],
                            y[:int(train)], prune_dir, target_sparsity=float(sparsity),
                            epochs=1, batch_size=32, cascade=False, verbose=0,
                            allow_other_files=True)
    # A folder of user files without the flag: refused before any fine-tuning.
    result["refused"] = []
    for compress in (qat.quantization_aware_training, prune.magnitude_pruning):
        try:
            compress(keras.saving.load_model(model_files[0]), x[:2], y[:2], prune_dir,
                     epochs=1, verbose=0)
        except ValueError as error:
            result["refused"].append(str(error))
    tf_keras = extra.tf_keras()
    x = tf_keras.Input((8, 8, 3), name="image")
    y = tf_keras.layers.Conv2D(4, 3, name="conv")(x)
    y = tf_keras.layers.LayerNormalization(name="odd_norm")(y)
    y = tf_keras.layers.GlobalAveragePooling2D(name="feature_1")(y)
    net = tf_keras.Model(x, {"exit_1": tf_keras.layers.Dense(2, name="exit_1")(y),
                             "feature_1": y})
    try:
        qat.quantize_network(net)
        result["error"] = None
    except qat.UnsupportedLayersError as error:
        result["error"] = str(error)
    json.dump(result, open(out_file, "w"))
""")


def _start(args):
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process, what):
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, f"{what} failed:\n{stdout[-3000:]}\n{stderr[-5000:]}"
    return stdout


def _randomize_batch_norms(model, seed=0):
    """Non-trivial BN parameters and statistics, so a mixed-up copy cannot pass."""
    rng = np.random.default_rng(seed)
    for layer in model.network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n),
                               rng.normal(0, 0.1, n), rng.uniform(0.5, 1.5, n)])


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits):
    """Trains/saves two tiny models, then runs QAT, pruning and the probe at once."""
    if not HAS_EXTRA:
        pytest.skip('needs the compress extra: pip install -e ".[compress]"')
    folder = tmp_path_factory.mktemp("compress")
    (x_train, y_train), _ = digits
    keras.utils.set_random_seed(0)
    # sepconv heads with attention (depthwise convs, Multiply, a BN after a ReLU).
    vgg = zoo.vgg11_byot(num_classes=10, width_multiplier=0.125, exits=[4])
    vgg.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    vgg.fit(x_train[:640], y_train[:640], batch_size=64, epochs=1, verbose=0)
    resnet = zoo.resnet18_byot(num_classes=10, width_multiplier=0.125, exits=[2],
                               head="bottleneck")
    _randomize_batch_norms(resnet)
    paths = {"vgg": folder / "vgg.keras", "resnet": folder / "resnet.keras"}
    save_model_atomically(vgg, str(paths["vgg"]))
    save_model_atomically(resnet, str(paths["resnet"]))
    images = np.random.default_rng(1).normal(size=(6, 32, 32, 3)).astype("float32")
    np.savez(folder / "images.npz", images=images)

    user_files = {name: put_user_files(folder / name) for name in ("qat", "pruned")}
    processes = {
        "qat": _start(["recipes/qat.py", "--model_file", paths["vgg"], "--dataset", "digits",
                       "--train_examples", TRAIN, "--eval_examples", EVAL,
                       "--calibration_examples", CALIBRATION, "--batch_size", 32,
                       "--output_dir", folder / "qat", "--allow_other_files"]),
        "probe": _start(["-c", PROBE, folder / "images.npz", folder / "probe.json",
                         folder / "pruned", TARGET_SPARSITY, TRAIN, paths["vgg"],
                         paths["resnet"]]),
    }
    # Meanwhile: the unpruned deepest exit as a float file, the size baseline.
    dense_deepest = convert(vgg.exit_model(vgg.num_exits), "image")
    outputs = {name: _finish(process, name) for name, process in processes.items()}
    return {"folder": folder, "models": {"vgg": vgg, "resnet": resnet}, "paths": paths,
            "images": images, "outputs": outputs, "dense_deepest": dense_deepest,
            "user_files": user_files,
            "probe": json.loads((folder / "probe.json").read_text())}


def test_importing_the_package_leaves_tfmot_out_and_a_missing_extra_says_how_to_install():
    script = textwrap.dedent("""
        import json, os, sys
        import byot_keras, byot_keras.compress, byot_keras.compress.cli
        loaded = [m for m in ("tf_keras", "tensorflow_model_optimization") if m in sys.modules]
        legacy = os.environ.get("TF_USE_LEGACY_KERAS")
        sys.modules["tf_keras"] = sys.modules["tensorflow_model_optimization"] = None
        sys.argv = ["byot-qat", "--model_file", "model.keras"]
        try:
            byot_keras.compress.cli.run_qat()
            message = None
        except SystemExit as exit:
            message = str(exit.code)
        print(json.dumps({"loaded": loaded, "legacy": legacy, "message": message}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=ENV, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] == [] and result["legacy"] is None
    assert result["message"] == "1"  # the exit status; the message is one stderr line
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("byot-qat: error:") and "Traceback" not in done.stderr
    assert 'pip install -e ".[compress]"' in line and "tf_keras" in line


@needs_extra
def test_twin_reproduces_every_exit_for_two_families(runs):
    for family in ("vgg", "resnet"):
        model, path = runs["models"][family], str(runs["paths"][family])
        # The twin is the builder call the saved model records, run in tf_keras.
        builder = runs["probe"][path]
        record = model.builder
        assert builder == {"model": record["name"], **record["kwargs"]}
        assert builder["width_multiplier"] == 0.125
        expected = model.network(runs["images"], training=False)
        got = np.load(path + ".twin.npz")
        assert sorted(got.files) == sorted(expected)  # exits and features
        for name in model.exit_names:
            want = np.asarray(expected[name])
            scale = max(1.0, float(np.abs(want).max()))
            assert np.abs(got[name] - want).max() <= 1e-5 * scale, (family, name)


@needs_extra
def test_a_twin_from_the_wrong_builder_is_refused_naming_the_layers(runs):
    message = runs["probe"]["mismatch"]
    assert message is not None and "resnet34_byot" in message
    # ResNet-18 has 2 blocks per stage, ResNet-34 3 in stage 1: extra layers are named.
    assert "exists only in the twin" in message and "stage1_block3" in message


@needs_extra
def test_unquantizable_layers_are_named(runs):
    message = runs["probe"]["error"]
    assert message is not None
    assert "'odd_norm' (LayerNormalization)" in message
    assert "'conv'" not in message  # only the unsupported ones are listed
    assert "post-training int8" in message


def _int8_everywhere(runner: LiteRTModel) -> bool:
    interpreter = runner.interpreter
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    compute = [op for op in interpreter._get_ops_details()
               if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    return bool(compute) and all(dtypes[i] == np.int8 for op in compute for i in op["outputs"])


@needs_extra
def test_qat_writes_int8_exits_and_cascade_that_agree_with_the_qat_model(runs, digits):
    out = runs["folder"] / "qat"
    manifest = json.loads((out / "manifest.json").read_text())
    _, (x_test, y_test) = digits
    images, labels = x_test[:EVAL], y_test[:EVAL]
    assert manifest["quantizations"] == ["int8"] and manifest["num_exits"] == 2
    # The model records no normalisation: the export builds in the data set's (digits)
    # and its files take 0..255 pixels.
    assert manifest["input"]["pixels"] is True
    assert manifest["input"]["normalization"] == check_normalization(DIGITS_NORMALIZATION)
    pixels = to_pixels(images, DIGITS_NORMALIZATION)
    assert manifest["compression"]["finetune"]["loss"].startswith("BYOTLoss")
    exit_scores = []
    for k, entry in enumerate(manifest["exits"], start=1):
        info = entry["files"]["int8"]
        assert info["file"] == f"exit_{k}_int8.tflite"
        runner = LiteRTModel(out / info["file"])
        assert _int8_everywhere(runner)
        assert read_metadata(out / info["file"])["associated_files"]["labels.txt"] == (
            "\n".join(map(str, range(10))) + "\n").encode()
        probabilities = runner.predict(image=pixels)["probabilities"]
        exit_scores.append(probabilities)  # the same top-1 as the exit's logits
        assert np.mean(probabilities.argmax(-1) == labels) == pytest.approx(info["accuracy"])
        # The int8 file answers like the fake-quantized Keras model it came from.
        assert info["agreement_with_keras"] >= 0.9
        assert abs(info["accuracy"] - entry["keras_accuracy"]) <= 0.05
        assert entry["keras_accuracy"] > 0.5  # fine-tuning kept the exits working
    trunk = pixels
    for k, entry in enumerate(manifest["exits"], start=1):
        info = entry["segment"]["int8"]
        runner = LiteRTModel(out / info["file"])
        assert _int8_everywhere(runner)
        result = runner.predict(**{"image" if k == 1 else "trunk_in": trunk})
        agreement = np.mean(result["logits"].argmax(-1) == exit_scores[k - 1].argmax(-1))
        assert agreement >= 0.95, (k, agreement)
        trunk = result.get("trunk_out")
    assert trunk is None


@needs_extra
def test_pruning_reaches_the_target_sparsity_and_compresses(runs):
    out = runs["folder"] / "pruned"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["compression"]["target_sparsity"] == TARGET_SPARSITY
    for entry in manifest["exits"]:
        flatbuffer = (out / entry["files"]["float32"]["file"]).read_bytes()
        interpreter = LiteRTModel(flatbuffer).interpreter
        kernels = [interpreter.get_tensor(op["inputs"][1])
                   for op in interpreter._get_ops_details()
                   if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")]
        assert kernels
        for kernel in kernels:  # BN folding scales kernels; zeros stay zeros
            assert np.mean(kernel == 0) >= TARGET_SPARSITY - 0.01
        assert len(gzip.compress(flatbuffer, 9)) == entry["files"]["float32"]["gzip_bytes"]
    # The deepest exit's pruned file compresses far better than the unpruned one.
    deepest = manifest["exits"][-1]["files"]["float32"]["gzip_bytes"]
    assert deepest < 0.8 * len(gzip.compress(runs["dense_deepest"], 9))


@needs_extra
def test_qat_and_pruning_keep_user_files_and_refuse_them_without_the_flag(runs):
    for hashes in runs["user_files"].values():
        assert_untouched(hashes)
    for name in ("qat", "pruned"):  # the user's files next to the export's own
        assert {"notes.txt", "model.keras", "data", "manifest.json"} <= set(
            os.listdir(runs["folder"] / name))
    refused = runs["probe"]["refused"]
    assert len(refused) == 2
    for message in refused:
        assert "did not write" in message and "--allow_other_files" in message
