"""Saving that never leaves a half-written file where a good one used to be, and
loading that says which file is missing or damaged instead of Keras' "File not found"
for a file that exists."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import keras

#: What `model.save` writes into every .keras archive.
KERAS_ARCHIVE_MEMBERS = ("config.json", "metadata.json", "model.weights.h5")
_HOW_TO_FIX = ("Save the model again (model.save(path), or "
               "byot_keras.saving.save_model_atomically, which never leaves a half-written "
               "file), or copy the file again from where it was trained.")


def check_model_file(path: str | os.PathLike) -> Path:
    """Raises unless `path` is a readable .keras archive: FileNotFoundError if nothing is
    there, ValueError naming the path if it is a folder, not a .keras file, or damaged
    (truncated or not a zip archive, or missing the archive's parts). Returns the path.

    Example:
        >>> check_model_file("no_such_model.keras")
        Traceback (most recent call last):
        ...
        FileNotFoundError: No model file at 'no_such_model.keras'.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No model file at '{path}'.")
    if path.is_dir():
        raise ValueError(f"'{path}' is a folder, not a .keras model file.")
    if path.suffix != ".keras":
        raise ValueError(f"'{path}' is not a .keras model file: models are saved and loaded "
                         "in the .keras format.")
    if not zipfile.is_zipfile(path):  # no end-of-archive record: cut short, or not a zip
        raise ValueError(f"The model file '{path}' is damaged: it is truncated or not a "
                         f".keras archive ({path.stat().st_size} bytes, not a zip archive). "
                         f"{_HOW_TO_FIX}")
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [m for m in KERAS_ARCHIVE_MEMBERS if m not in archive.namelist()]
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"The model file '{path}' is damaged: it is truncated or not a "
                         f".keras archive ({error}). {_HOW_TO_FIX}") from error
    if missing:
        raise ValueError(f"The model file '{path}' is damaged: it is a zip archive but not a "
                         f".keras archive (missing {', '.join(missing)}). {_HOW_TO_FIX}")
    return path


def load_model(path: str | os.PathLike, **kwargs) -> keras.Model:
    """`keras.saving.load_model(path, **kwargs)` after :func:`check_model_file`; an error
    while reading the archive (e.g. a corrupted member) becomes a ValueError that names
    the path and says the file is damaged or was written by an incompatible version.

    Example:
        >>> from byot_keras import zoo
        >>> model = zoo.alexnet_byot(num_classes=10, width_multiplier=0.125)
        >>> save_model_atomically(model, "doc_example.keras")
        'doc_example.keras'
        >>> load_model("doc_example.keras").exit_names
        ['exit_1', 'exit_2', 'exit_3']
    """
    path = check_model_file(path)
    try:
        return keras.saving.load_model(path, **kwargs)
    except (zipfile.BadZipFile, EOFError, OSError) as error:  # the bytes are bad
        raise ValueError(
            f"The model file '{path}' is damaged (truncated or not a .keras archive): "
            f"{type(error).__name__}: {error}. {_HOW_TO_FIX}") from error
    except (ValueError, KeyError, TypeError) as error:  # the bytes read, the model did not
        raise ValueError(
            f"Could not load the model file '{path}': {type(error).__name__}: {error}. The "
            "file is damaged (truncated or not a .keras archive) or was written by an "
            f"incompatible version of byot_keras / Keras. {_HOW_TO_FIX}") from error


def save_model_atomically(model: keras.Model, path: str) -> str:
    """Saves `model` to the `.keras` file `path` through a temporary file in the same
    folder, then renames it over `path` (atomic on POSIX): an interrupted or failed save
    leaves any previous file intact.

    Example:
        >>> from byot_keras import zoo
        >>> model = zoo.alexnet_byot(num_classes=10, width_multiplier=0.125)
        >>> save_model_atomically(model, "doc_example.keras")
        'doc_example.keras'
    """
    if not str(path).endswith(".keras"):
        raise ValueError(f"Model files use the .keras format; got path '{path}'.")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"Cannot save into '{folder}': it is a file, not a folder.")
    return replace_atomically(path, model.save, suffix=".keras")


def replace_atomically(path: str, write, suffix: str = "") -> str:
    """Calls `write(temporary)` on a new file in `path`'s folder, then renames it over
    `path`; if `write` fails, the temporary file is removed and `path` is untouched.

    Example:
        >>> replace_atomically("doc_note.txt", lambda temporary: Path(temporary).write_text("hi"))
        'doc_note.txt'
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".saving-", suffix=suffix, dir=folder)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return str(path)


def write_text_atomically(path: str, text: str) -> str:
    """Writes `text` to `path` through `replace_atomically`: a reader sees the old file or
    the new one, never half of it.

    Example:
        >>> write_text_atomically("doc_note.txt", "hi")
        'doc_note.txt'
    """
    return replace_atomically(path, lambda temporary: Path(temporary).write_text(text))


def write_json_atomically(data, path: str) -> str:
    """Writes `data` as indented JSON through `replace_atomically`.

    Example:
        >>> write_json_atomically({"epoch": 3}, "doc_state.json")
        'doc_state.json'
    """
    return replace_atomically(path, lambda temporary: Path(temporary).write_text(
        json.dumps(data, indent=2)), suffix=".json")


# Keras files a layer's weights in a .weights.h5 file under its class name, numbered in
# layer order ("batch_normalization_3"), not under the layer's own name. The zoo's batch
# norms became `FusedBatchNormalization` on 2026-12-07 (same weights), which moved every
# batch norm of files written before to another group name.
_BATCH_NORM_GROUP = re.compile(r"^(fused_)?batch_normalization(_\d+)?$")
_BATCH_NORM_CLASSES = {"BatchNormalization": "batch_normalization",
                       "FusedBatchNormalization": "fused_batch_normalization"}


def load_weights(model: keras.Model, filepath: str | os.PathLike, **kwargs) -> None:
    """`model.load_weights(filepath)` that also reads a `.weights.h5` file whose batch
    norms were saved as the other class (`BatchNormalization` before the zoo switched to
    `FusedBatchNormalization`, or the other way round). The training models'
    `load_weights` is this function, so `model.load_weights` reads such files too.

    Example:
        >>> from byot_keras import zoo
        >>> model = zoo.resnet18_byot(num_classes=10, width_multiplier=0.125)
        >>> model.save_weights("doc_model.weights.h5")
        >>> load_weights(model, "doc_model.weights.h5")
    """
    path = str(filepath)
    renamed = _with_batch_norms_renamed(model, path) if path.endswith(".h5") else None
    try:
        keras.Model.load_weights(model, renamed or path, **kwargs)
    finally:
        if renamed:
            os.remove(renamed)


class ReadsOlderWeightFiles:
    """Mixin for the training models: `load_weights` is :func:`load_weights`."""

    def load_weights(self, filepath, **kwargs):
        load_weights(self, filepath, **kwargs)


def _nested_layers(layer):
    for sublayer in getattr(layer, "layers", ()):
        yield sublayer
        yield from _nested_layers(sublayer)


def _with_batch_norms_renamed(model: keras.Model, path: str) -> str | None:
    """A temporary copy of `path` with every batch-norm group renamed to the class the
    model uses, when all of the model's batch norms are of one class and all of the
    file's of the other; else None (nothing to rename, or no rule that is safe)."""
    import h5py

    classes = {type(layer).__name__ for layer in _nested_layers(model)
               if isinstance(layer, keras.layers.BatchNormalization)}
    if len(classes) != 1 or not classes <= set(_BATCH_NORM_CLASSES):
        return None
    wanted = _BATCH_NORM_CLASSES[classes.pop()]
    groups = []
    try:
        with h5py.File(path, "r") as file:
            file.visititems(lambda name, item: groups.append(name)
                            if isinstance(item, h5py.Group)
                            and _BATCH_NORM_GROUP.match(name.rsplit("/", 1)[-1]) else None)
    except OSError:
        return None  # not an HDF5 file: Keras' own loading reports it
    prefixes = {_BATCH_NORM_GROUP.match(g.rsplit("/", 1)[-1]).group(1) or "" for g in groups}
    saved = {prefix + "batch_normalization" for prefix in prefixes}
    if len(saved) != 1 or saved == {wanted}:
        return None
    handle, copy = tempfile.mkstemp(prefix="byot-weights-", suffix=".weights.h5")
    os.close(handle)
    try:
        shutil.copyfile(path, copy)
        with h5py.File(copy, "r+") as file:
            for name in sorted(groups, key=lambda g: g.count("/"), reverse=True):
                parent, _, leaf = name.rpartition("/")
                number = _BATCH_NORM_GROUP.match(leaf).group(2) or ""
                file[parent or "/"].move(leaf, wanted + number)
    except BaseException:
        os.remove(copy)
        raise
    return copy
