"""Pretrained weights for the zoo's builders, as `keras.applications`' `weights=`.

`zoo.<builder>(..., weights=...)` takes:

- a registered checkpoint name, e.g. `"cifar10"` (`list_pretrained()` lists them): a file
  shipped inside the package, or an https URL with a SHA-256 hash, fetched once with
  `keras.utils.get_file` into the Keras cache (`$KERAS_HOME` or `~/.keras`, under
  `models/byot_keras/`) and verified; a file that does not match its hash is removed and
  refused, so nothing half-downloaded stays in the cache;
- a path to a `.npz` weights file (`save_weights_by_name`: every layer's arrays keyed by
  layer name, the format shipped checkpoints use), a `.keras` file, or a Keras
  `.weights.h5` file.

Weights for another configuration (width, input size, exits, heads, classes) are refused
with what differs, before anything is assigned. `reset_classifiers=True` loads weights
trained for another number of classes: everything but the exits' final Dense layers (the
classifiers, which keep their fresh initialisation), as `include_top=False` gives
`keras.applications` users.

Your own checkpoints (trained on a GPU, say) are registered without editing the package:
`register_pretrained(...)` in your code, or a JSON file of entries named by the
environment variable `BYOT_PRETRAINED` (see `register_pretrained` for the fields).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

WEIGHTS_DIR = Path(__file__).with_name("weights")
SHIPPED_INDEX = WEIGHTS_DIR / "checkpoints.json"
USER_INDEX_VARIABLE = "BYOT_PRETRAINED"
# Keywords that set the architecture of the weights; a model that differs cannot take
# them (num_classes only with reset_classifiers).
ARCHITECTURE_KEYWORDS = ("input_shape", "width_multiplier", "exits", "head", "attention",
                         "stem_type", "classifier", "variant", "groups", "width_per_group",
                         "bottleneck", "compression", "blocks_per_group", "depth", "width",
                         "growth_rate")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A registered set of weights for one builder configuration."""

    builder: str
    name: str
    sha256: str
    file: str | None = None  # shipped: a file of byot_keras/zoo/weights/
    url: str | None = None  # or fetched from here
    builder_kwargs: dict = dataclasses.field(default_factory=dict)
    dataset: str = ""
    accuracy: dict = dataclasses.field(default_factory=dict)  # top-1 %: exit_k, ensemble
    test_examples: int | None = None
    method: str | None = None
    command: str = ""
    normalization: dict | None = None
    size_bytes: int | None = None
    notes: str = ""

    def describe(self) -> dict:
        """What `list_pretrained` reports."""
        entry = dataclasses.asdict(self)
        entry["source"] = "shipped" if self.file else self.url
        return entry


_CHECKPOINTS: dict[tuple[str, str], Checkpoint] = {}
_loaded_indexes: set[str] = set()


def register_pretrained(builder: str, name: str, *, sha256: str, file: str | None = None,
                        url: str | None = None, **details) -> Checkpoint:
    """Registers checkpoint `name` of zoo builder `builder`, e.g. your own GPU-trained
    weights, so that `zoo.<builder>(weights=name)` finds them.

    Args:
        builder: a zoo registry name ("resnet50_byot").
        name: the checkpoint's name ("imagenet_mine").
        sha256: the file's SHA-256 (hex); checked on every load.
        file: a local path (absolute, or relative to the package's weights folder), or
        url: an https URL, fetched into the Keras cache on first use.
        **details: `builder_kwargs` (the keywords the weights need, e.g.
            {"num_classes": 1000, "input_shape": [224, 224, 3]}), `dataset`,
            `accuracy` ({"exit_1": 61.2, ..., "ensemble": 70.3}, top-1 %),
            `test_examples`, `method`, `command`, `normalization`, `size_bytes`, `notes`.

    The same fields, as a JSON list of objects with "builder", "name", "sha256", ..., in
    the file named by the environment variable BYOT_PRETRAINED, are registered too.

    Example:
        >>> entry = register_pretrained("resnet18_byot", "doc_example", sha256="0" * 64,
        ...                             url="https://example.org/r18.npz",
        ...                             builder_kwargs={"num_classes": 10})
        >>> entry.describe()["source"]
        'https://example.org/r18.npz'
    """
    from byot_keras import zoo

    zoo.get_model_builder(builder)  # an unknown builder raises, naming the valid ones
    if bool(file) == bool(url):
        raise ValueError(f"Checkpoint '{name}' of {builder}: give exactly one of file= (a "
                         "local path) or url= (an https URL).")
    if not isinstance(sha256, str) or len(sha256) != 64 or any(
            c not in "0123456789abcdef" for c in sha256.lower()):
        raise ValueError(f"Checkpoint '{name}' of {builder}: sha256 must be 64 hex digits, "
                         f"got {sha256!r}.")
    unknown = sorted(set(details) - {f.name for f in dataclasses.fields(Checkpoint)})
    if unknown:
        raise ValueError(f"Checkpoint '{name}' of {builder}: unknown field(s) {unknown}.")
    checkpoint = Checkpoint(builder, name, sha256.lower(), file, url, **details)
    _CHECKPOINTS[(builder, name)] = checkpoint
    return checkpoint


def _load_indexes() -> None:
    """Registers the shipped checkpoints and those of $BYOT_PRETRAINED (once each)."""
    for path in (SHIPPED_INDEX, os.environ.get(USER_INDEX_VARIABLE)):
        if not path or str(path) in _loaded_indexes:
            continue
        _loaded_indexes.add(str(path))
        if not os.path.exists(path):
            if path == SHIPPED_INDEX:
                continue
            raise ValueError(f"{USER_INDEX_VARIABLE}={path}: no such file (a JSON list of "
                             "checkpoints).")
        try:
            with open(path) as f:
                entries = json.load(f)
            if not isinstance(entries, list):
                raise ValueError("not a JSON list")
        except ValueError as error:
            raise ValueError(f"Checkpoint index {path} is not a JSON list of checkpoints "
                             f"({error}).") from error
        for entry in entries:
            entry = dict(entry)
            register_pretrained(entry.pop("builder"), entry.pop("name"),
                                sha256=entry.pop("sha256"), **entry)


def shipped_entries() -> list[dict]:
    """The entries of the package's own index: the checkpoints whose files ship inside
    the package (not those registered at run time, which may also be local files).

    Example:
        >>> sorted(e["name"] for e in shipped_entries() if e["builder"] == "resnet18_byot")
        ['cifar10', 'cifar10_msd']
    """
    return json.loads(SHIPPED_INDEX.read_text()) if SHIPPED_INDEX.exists() else []


def list_pretrained(pattern: str = "*") -> list[dict]:
    """Every registered checkpoint of the builders matching `pattern`: builder and the
    keywords the weights need, data set, per-exit and ensemble test accuracy (%), file
    size, hash, source and the command that produced it.

    Example:
        >>> all("builder_kwargs" in entry for entry in list_pretrained())
        True
    """
    _load_indexes()
    return [c.describe() for (builder, _), c in sorted(_CHECKPOINTS.items())
            if fnmatch.fnmatchcase(builder, pattern)]


def get_checkpoint(builder: str, name: str) -> Checkpoint:
    _load_indexes()
    try:
        return _CHECKPOINTS[(builder, name)]
    except KeyError:
        valid = sorted(n for b, n in _CHECKPOINTS if b == builder)
        raise ValueError(
            f"weights='{name}' is not a file nor a checkpoint of {builder}. Registered for "
            f"{builder}: {', '.join(valid) or 'none'} (zoo.list_pretrained()); or give the "
            "path of a .npz, .keras or .weights.h5 file.") from None


# ----------------------------------------------------------------------------- files


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where fetched checkpoints are kept: Keras' cache, `models/byot_keras/`."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models" / "byot_keras"


def checkpoint_path(checkpoint: Checkpoint) -> Path:
    """The verified local file of `checkpoint` (fetched into the cache if needed)."""
    if checkpoint.file:
        path = Path(checkpoint.file)
        path = path if path.is_absolute() else WEIGHTS_DIR / path
        if not path.is_file():
            raise ValueError(f"Checkpoint '{checkpoint.name}' of {checkpoint.builder}: file "
                             f"{path} is missing.")
        _require_hash(path, checkpoint, where="file")
        return path
    target = cache_dir() / f"{checkpoint.builder}_{checkpoint.name}_{checkpoint.sha256[:12]}" \
                           f"{Path(checkpoint.url).suffix or '.npz'}"
    if target.is_file() and sha256_of(target) == checkpoint.sha256:
        return target
    import keras

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".byot-fetch-", dir=target.parent)
    try:
        try:
            fetched = keras.utils.get_file(target.name, checkpoint.url, cache_dir=staging,
                                           cache_subdir=".")
        except Exception as error:  # urllib / HTTP errors, whatever the transport
            raise ValueError(f"Could not fetch checkpoint '{checkpoint.name}' of "
                             f"{checkpoint.builder} from {checkpoint.url}: {error}") from error
        _require_hash(Path(fetched), checkpoint, where=checkpoint.url)
        os.replace(fetched, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _require_hash(path: Path, checkpoint: Checkpoint, where: str) -> None:
    got = sha256_of(path)
    if got != checkpoint.sha256:
        raise ValueError(
            f"Checkpoint '{checkpoint.name}' of {checkpoint.builder} from {where} has SHA-256 "
            f"{got}, not the registered {checkpoint.sha256}: the file is damaged or not the "
            "registered one. Nothing was loaded (and nothing was cached).")


def save_weights_by_name(network, path, *, dtype: str | None = None) -> str:
    """Saves every weighted layer of `network` (a model's `.network`) into the `.npz`
    file `path`, keyed by layer name: the format of shipped checkpoints, which loads
    into a network built by the same builder whatever its layer order.

    `dtype="float16"` stores the floating-point arrays at half the size (loading casts
    them back to the layers' dtype; measure the accuracy of what was stored). An array
    that does not fit the dtype's range is refused, naming it.
    """
    from byot_keras.saving import replace_atomically

    arrays = {f"{layer.name}:{index}": np.asarray(weight)
              for layer in network.layers for index, weight in enumerate(layer.weights)}
    if not str(path).endswith(".npz"):
        raise ValueError(f"Weights by name go to a .npz file; got '{path}'.")
    if dtype is not None:
        if dtype not in ("float16", "float32"):
            raise ValueError(f"dtype={dtype!r}: store weights as 'float16' or 'float32'.")
        limit = np.finfo(dtype).max
        for key, array in arrays.items():
            if np.issubdtype(array.dtype, np.floating):
                if np.any(np.abs(array) > limit):
                    raise ValueError(f"'{key}' holds values up to {np.abs(array).max():.4g}, "
                                     f"beyond {dtype}'s range ({limit:.4g}): store it as "
                                     "float32.")
                arrays[key] = array.astype(dtype)

    def write(temporary):
        with open(temporary, "wb") as f:
            np.savez(f, **arrays)

    return replace_atomically(str(path), write, suffix=".npz")


def _arrays_by_layer(path) -> dict[str, list[np.ndarray]]:
    """A `.npz` or `.keras` file's weights as {layer name: arrays}."""
    if str(path).endswith(".keras"):
        from byot_keras.saving import load_model

        loaded = load_model(str(path))
        network = getattr(loaded, "network", loaded)
        return {layer.name: [np.asarray(w) for w in layer.weights]
                for layer in network.layers if layer.weights}
    arrays: dict[str, dict[int, np.ndarray]] = {}
    try:
        with np.load(path) as data:
            for key in data.files:
                layer, _, index = key.rpartition(":")
                arrays.setdefault(layer, {})[int(index)] = data[key]
    except (OSError, ValueError) as error:
        raise ValueError(f"'{path}' is not a readable .npz weights file ({error}).") from error
    return {layer: [values[i] for i in sorted(values)] for layer, values in arrays.items()}


# ----------------------------------------------------------------------------- loading


def classifier_layers(model) -> set[str]:
    """The exits' final Dense layers (`exit_k` with weights): what
    `reset_classifiers` leaves at their initialisation."""
    return {name for name in model.exit_names
            if model.network.get_layer(name).weights}


def assign_by_name(network, arrays: dict[str, list], *, skip=(), classifiers=()) -> int:
    """Assigns `arrays` ({layer name: arrays}) to `network`'s layers of the same names,
    all or nothing: any missing, extra or differently shaped layer (other than `skip`)
    raises a ValueError listing what differs, before anything is assigned. Returns the
    number of layers assigned. `classifiers` name the layers a different num_classes
    changes (for the message)."""
    skip, classifiers = set(skip), set(classifiers)
    layers = {layer.name: layer for layer in network.layers if layer.weights}
    problems = [f"'{n}' is not in the weights" for n in layers if n not in arrays
                and n not in skip]
    problems += [f"'{n}' is not in this model" for n in arrays if n not in layers
                 and n not in skip]
    for name in layers.keys() & arrays.keys() - skip:
        want = [tuple(w.shape) for w in layers[name].weights]
        got = [tuple(np.shape(a)) for a in arrays[name]]
        if want != got:
            problems.append(f"'{name}' has shapes {got} in the weights, {want} here")
    if problems:
        hint = ""
        if all(p.split("'")[1] in classifiers for p in problems):
            hint = (" Only the classifiers differ: for weights of another num_classes pass "
                    "reset_classifiers=True.")
        raise ValueError(
            f"The weights do not fit this model: they were saved from another configuration "
            f"(width, input size, exits, heads or classes): {len(problems)} difference(s), "
            f"e.g. {'; '.join(problems[:4])}.{hint}")
    for name, layer in layers.items():
        if name not in skip:
            layer.set_weights(arrays[name])
    return len([n for n in layers if n not in skip])


def _effective(model, key: str):
    """The value of builder keyword `key` the model was built with (its record, else the
    builder's default)."""
    import inspect

    from byot_keras import zoo

    if key == "method":  # not a network keyword, but it chooses the heads (msd: blocks)
        return getattr(getattr(model, "objective", None), "method", None)
    record = model.builder or {}
    if key in ("num_classes", "input_shape") and key in record:
        return record[key]
    if key in record.get("kwargs", {}):
        return record["kwargs"][key]
    network = zoo.get_model_builder(record["name"]).network_builder
    parameter = inspect.signature(network.build).parameters.get(key)
    return None if parameter is None else parameter.default


def _check_configuration(model, checkpoint: Checkpoint, reset_classifiers: bool) -> None:
    if model.builder is None or model.builder.get("name") != checkpoint.builder:
        built = (model.builder or {}).get("name", model.name)
        raise ValueError(f"Checkpoint '{checkpoint.name}' is for {checkpoint.builder}; this "
                         f"model was built by {built}.")
    differences = []
    for key, wanted in checkpoint.builder_kwargs.items():
        if key == "num_classes" and reset_classifiers:
            continue
        got = _effective(model, key)
        if json.loads(json.dumps(got)) != json.loads(json.dumps(wanted)):
            differences.append(f"{key}={wanted!r} (this model: {got!r})")
    if differences:
        call = ", ".join(f"{k}={v!r}" for k, v in checkpoint.builder_kwargs.items())
        raise ValueError(
            f"Checkpoint '{checkpoint.name}' of {checkpoint.builder} was trained with "
            f"{'; '.join(differences)}. Build it as zoo.{checkpoint.builder}({call}, "
            f"weights='{checkpoint.name}')"
            + ("" if reset_classifiers else " (or pass reset_classifiers=True for another "
               "num_classes)") + ".")


def load_pretrained(model, weights, *, reset_classifiers: bool = False) -> None:
    """Loads `weights` (see the module docstring) into `model`, a zoo model; raises a
    ValueError that says what is wrong, having assigned nothing, when they do not fit."""
    path = Path(os.path.expanduser(str(weights)))
    if isinstance(weights, str | os.PathLike) and (path.suffix in (".npz", ".keras", ".h5")
                                                   or os.sep in str(weights)):
        if not path.is_file():
            raise ValueError(f"weights='{weights}': no such file (give a .npz, .keras or "
                             ".weights.h5 file, or a registered checkpoint name: "
                             "zoo.list_pretrained()).")
        checkpoint = None
    elif isinstance(weights, str):
        builder = (model.builder or {}).get("name", model.name)
        checkpoint = get_checkpoint(builder, weights)
        _check_configuration(model, checkpoint, reset_classifiers)
        path = checkpoint_path(checkpoint)
    else:
        raise ValueError(f"weights must be None, a checkpoint name or a file path; got "
                         f"{weights!r}.")
    skip = classifier_layers(model) if reset_classifiers else ()
    if path.suffix == ".h5":
        from byot_keras.saving import load_weights

        if reset_classifiers:
            raise ValueError("reset_classifiers=True needs weights by layer name: a .npz or "
                             ".keras file, or a registered checkpoint (a .weights.h5 file "
                             "is read by layer order).")
        try:
            load_weights(model.network, path)
        except Exception as error:  # Keras reports mismatches in several ways
            try:  # a file of model.save_weights: the training model's variables
                model.load_weights(str(path))
            except Exception:
                raise ValueError(f"The weights in '{path}' do not fit this model (saved "
                                 f"from another configuration?): {error}") from error
        return
    assign_by_name(model.network, _arrays_by_layer(path), skip=skip,
                   classifiers=classifier_layers(model))
