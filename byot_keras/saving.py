"""Saving that never leaves a half-written file where a good one used to be."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import keras


def save_model_atomically(model: keras.Model, path: str) -> str:
    """Saves `model` to the `.keras` file `path` through a temporary file in the same
    folder, then renames it over `path` (atomic on POSIX): an interrupted or failed save
    leaves any previous file intact.

    Example:
        >>> from byot_keras import zoo
        >>> model = zoo.resnet18_byot(num_classes=10, width_multiplier=0.125)
        >>> save_model_atomically(model, "/tmp/doc_example.keras")
        '/tmp/doc_example.keras'
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
        >>> replace_atomically("/tmp/doc_note.txt", lambda p: open(p, "w").write("hi"))
        '/tmp/doc_note.txt'
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
        >>> write_text_atomically("/tmp/doc_note.txt", "hi\n")
        '/tmp/doc_note.txt'
    """
    return replace_atomically(path, lambda temporary: Path(temporary).write_text(text))
