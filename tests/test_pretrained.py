"""`weights=` on the zoo's builders: a registered checkpoint (a local file, or a URL
served here on 127.0.0.1 with a good and a bad SHA-256), a .npz / .keras path, weights for
another configuration (refused, nothing assigned), and the 10 -> 5 class transfer with
`reset_classifiers=True`. Weights are compared with the source model's, array by array."""

import functools
import hashlib
import http.server
import json
import threading

import keras
import numpy as np
import pytest

from byot_keras import zoo
from byot_keras.zoo import pretrained

CONFIG = dict(width_multiplier=0.125, exits=[2], head="bottleneck")


def network_arrays(model) -> dict:
    return {f"{layer.name}:{i}": np.asarray(w) for layer in model.network.layers
            for i, w in enumerate(layer.weights)}


def assert_same_weights(model, reference, skip=()):
    got, want = network_arrays(model), network_arrays(reference)
    assert set(got) == set(want)
    for key in want:
        if key.split(":")[0] not in skip:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 10-class model with random (non-initial) weights, saved as .npz and .keras."""
    folder = tmp_path_factory.mktemp("weights")
    keras.utils.set_random_seed(3)
    model = zoo.resnet18_byot(num_classes=10, **CONFIG)
    rng = np.random.default_rng(0)
    for layer in model.network.layers:
        layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.weights])
    npz = pretrained.save_weights_by_name(model.network, folder / "r18.npz")
    keras_file = folder / "r18.keras"
    model.save(keras_file)
    digest = hashlib.sha256(open(npz, "rb").read()).hexdigest()
    return {"model": model, "npz": npz, "keras": str(keras_file), "sha256": digest,
            "folder": folder}


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path / "keras_home"


@pytest.fixture
def server(source):
    """An HTTP server on 127.0.0.1 serving the weights folder."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(source["folder"]))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_a_path_to_npz_or_keras_loads_every_weight(source):
    for path in (source["npz"], source["keras"]):
        model = zoo.resnet18_byot(num_classes=10, weights=path, **CONFIG)
        assert_same_weights(model, source["model"])


def test_weights_stored_as_float16_load_as_their_rounded_values(source, tmp_path):
    """Half the file; every weight the float32 value rounded to float16 (NumPy's cast as
    the reference); values beyond float16's range are refused, naming the array."""
    half = pretrained.save_weights_by_name(source["model"].network, tmp_path / "half.npz",
                                           dtype="float16")
    full_size = (source["folder"] / "r18.npz").stat().st_size
    assert (tmp_path / "half.npz").stat().st_size < 0.55 * full_size
    model = zoo.resnet18_byot(num_classes=10, weights=half, **CONFIG)
    got, want = network_arrays(model), network_arrays(source["model"])
    for key in want:
        assert got[key].dtype == np.float32
        np.testing.assert_array_equal(got[key], want[key].astype(np.float16).astype(np.float32),
                                      err_msg=key)
    layer = next(layer for layer in model.network.layers if layer.weights)
    layer.set_weights([np.full(w.shape, 7e4, "float32") for w in layer.weights])
    with pytest.raises(ValueError, match=rf"'{layer.name}:0' holds values up to 7e\+04"):
        pretrained.save_weights_by_name(model.network, tmp_path / "over.npz", dtype="float16")
    assert not (tmp_path / "over.npz").exists()


def test_a_registered_file_checkpoint_loads_and_is_listed(source):
    pretrained.register_pretrained(
        "resnet18_byot", "test_local", file=source["npz"], sha256=source["sha256"],
        builder_kwargs={"num_classes": 10, **CONFIG}, dataset="none", accuracy={"exit_1": 1.0},
        command="python -m pytest tests/test_pretrained.py")
    model = zoo.create_model("resnet18_byot", num_classes=10, weights="test_local", **CONFIG)
    assert_same_weights(model, source["model"])
    [entry] = [e for e in zoo.list_pretrained("resnet18_byot") if e["name"] == "test_local"]
    assert entry["builder_kwargs"]["width_multiplier"] == 0.125
    assert entry["source"] == "shipped" and entry["sha256"] == source["sha256"]


def test_a_url_checkpoint_is_fetched_verified_and_cached(source, server, keras_home):
    pretrained.register_pretrained(
        "resnet18_byot", "test_url", url=f"{server}/r18.npz", sha256=source["sha256"],
        builder_kwargs={"num_classes": 10, **CONFIG})
    model = zoo.resnet18_byot(num_classes=10, weights="test_url", **CONFIG)
    assert_same_weights(model, source["model"])
    cached = list((keras_home / "models" / "byot_keras").iterdir())
    assert len(cached) == 1 and hashlib.sha256(cached[0].read_bytes()).hexdigest() == \
        source["sha256"]


def test_a_bad_hash_is_refused_and_nothing_is_cached(source, server, keras_home):
    pretrained.register_pretrained(
        "resnet18_byot", "test_bad_hash", url=f"{server}/r18.npz", sha256="ab" * 32,
        builder_kwargs={"num_classes": 10, **CONFIG})
    with pytest.raises(ValueError, match=f"SHA-256 {source['sha256']}, not the registered "
                       f"{'ab' * 32}.*Nothing was loaded"):
        zoo.resnet18_byot(num_classes=10, weights="test_bad_hash", **CONFIG)
    cache = keras_home / "models" / "byot_keras"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_weights_for_another_configuration_are_refused(source):
    pretrained.register_pretrained(
        "resnet18_byot", "test_config", file=source["npz"], sha256=source["sha256"],
        builder_kwargs={"num_classes": 10, **CONFIG})
    with pytest.raises(ValueError, match=r"width_multiplier=0.125 \(this model: 0.25\)"):
        zoo.resnet18_byot(num_classes=10, weights="test_config",
                          **{**CONFIG, "width_multiplier": 0.25})
    with pytest.raises(ValueError, match="do not fit this model.*difference"):
        zoo.resnet18_byot(num_classes=10, weights=source["npz"],
                          **{**CONFIG, "exits": [1, 2]})
    with pytest.raises(ValueError, match="Only the classifiers differ.*reset_classifiers"):
        zoo.resnet18_byot(num_classes=5, weights=source["npz"], **CONFIG)
    with pytest.raises(ValueError, match="'imagenet'.*Registered for resnet18_byot: .*"
                                         "test_config"):
        zoo.resnet18_byot(num_classes=10, weights="imagenet", **CONFIG)
    # The method picks the heads (msd: backbone blocks), so a checkpoint states it.
    pretrained.register_pretrained(
        "resnet18_byot", "test_method", file=source["npz"], sha256=source["sha256"],
        builder_kwargs={"num_classes": 10, "method": "msd", **CONFIG})
    with pytest.raises(ValueError, match=r"method='msd' \(this model: 'byot'\). Build it as "
                                         r"zoo.resnet18_byot\(.*method='msd'"):
        zoo.resnet18_byot(num_classes=10, weights="test_method", **CONFIG)
    model = zoo.resnet18_byot(num_classes=10, method="msd", weights="test_method", **CONFIG)
    assert_same_weights(model, source["model"])


def test_ten_to_five_class_transfer_keeps_everything_but_the_classifiers(source):
    keras.utils.set_random_seed(7)
    fresh = zoo.resnet18_byot(num_classes=5, **CONFIG)
    keras.utils.set_random_seed(7)
    model = zoo.resnet18_byot(num_classes=5, weights=source["npz"], reset_classifiers=True,
                              **CONFIG)
    classifiers = set(model.exit_names)
    assert_same_weights_except = {k: v for k, v in network_arrays(source["model"]).items()
                                  if k.split(":")[0] not in classifiers}
    got = network_arrays(model)
    for key, value in assert_same_weights_except.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    for name in classifiers:  # the classifiers: 5 classes, this build's own initialisation
        kernel = got[f"{name}:0"]
        assert kernel.shape[-1] == 5
        np.testing.assert_array_equal(kernel, network_arrays(fresh)[f"{name}:0"])
    model.compile(optimizer="sgd")
    history = model.fit(np.zeros((8, 32, 32, 3)), np.arange(8) % 5, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_checkpoints_of_an_index_file_named_by_the_environment(source, tmp_path, monkeypatch):
    index = tmp_path / "mine.json"
    index.write_text(json.dumps([{"builder": "resnet18_byot", "name": "test_env",
                                  "file": source["npz"], "sha256": source["sha256"],
                                  "builder_kwargs": {"num_classes": 10, **CONFIG}}]))
    monkeypatch.setenv(pretrained.USER_INDEX_VARIABLE, str(index))
    model = zoo.resnet18_byot(num_classes=10, weights="test_env", **CONFIG)
    assert_same_weights(model, source["model"])


# ------------------------------------------------------------------ shipped checkpoints

SHIPPED_CHECK = """
import json, sys
import numpy as np
import tensorflow_datasets as tfds
from byot_keras import zoo
from byot_keras.data import normalize_cifar

images, labels = tfds.as_numpy(tfds.load("cifar10", split="test", data_dir=sys.argv[1],
                                         download=False, as_supervised=True, batch_size=-1))
results = []
for builder, name in json.loads(sys.argv[2]):
    entry = next(e for e in zoo.list_pretrained() if (e["builder"], e["name"]) == (builder, name))
    model = zoo.create_model(builder, weights=name, **entry["builder_kwargs"])
    logits = model.predict(normalize_cifar(images), batch_size=500, verbose=0)
    accuracy = {k: 100 * float(np.mean(np.asarray(v).argmax(-1) == labels))
                for k, v in logits.items()}
    results.append({"checkpoint": [builder, name], "listed": entry["accuracy"],
                    "measured": accuracy, "examples": len(labels)})
print(json.dumps(results))
"""


def test_every_shipped_checkpoint_gives_its_listed_accuracy_in_a_fresh_process(cifar10_dir):
    """What a user gets from weights="cifar10" (and every other shipped CIFAR-10
    checkpoint): the whole test split through the builder, in a process that has never
    seen the run; its top-1 per exit equals what list_pretrained states (recorded by
    zoo/ship_weights.py) within 0.1 point."""
    import subprocess
    import sys

    shipped = [(e["builder"], e["name"]) for e in pretrained.shipped_entries()
               if e["dataset"] == "cifar10"]
    assert shipped
    done = subprocess.run([sys.executable, "-c", SHIPPED_CHECK, cifar10_dir,
                           json.dumps(shipped)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert [tuple(r["checkpoint"]) for r in results] == shipped
    for result in results:
        assert result["examples"] == 10000
        assert set(result["listed"]) <= set(result["measured"]) | {"ensemble"}
        for exit_name, listed in result["listed"].items():
            if exit_name != "ensemble":
                assert abs(result["measured"][exit_name] - listed) <= 0.1, (exit_name, result)


def test_the_shipped_weights_stay_under_10_mb_together():
    """Every checkpoint shipped inside the package counts against the wheel's size."""
    files = [pretrained.WEIGHTS_DIR / e["file"] for e in pretrained.shipped_entries()]
    assert files and sum(f.stat().st_size for f in files) < 10_000_000


def test_the_shipped_weights_are_part_of_the_built_package(tmp_path):
    """setup.py's package_data puts every shipped checkpoint and its index into the
    package (build_py: what pip installs)."""
    import subprocess
    import sys

    shipped = [e["file"] for e in pretrained.shipped_entries()]
    assert shipped, "no checkpoint is shipped"
    root = pretrained.WEIGHTS_DIR.parents[2]
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "-d", str(tmp_path)],
                   cwd=root, check=True, capture_output=True)
    built = tmp_path / "byot_keras" / "zoo" / "weights"
    assert (built / "checkpoints.json").is_file()
    for file in shipped:
        assert (built / file).read_bytes() == (pretrained.WEIGHTS_DIR / file).read_bytes()
