"""Root pytest configuration, for pytest's own doctest collection of the package
(`python -m pytest -q --doctest-modules byot_keras/zoo/registry.py`, say). The default
run (`python -m pytest -q`) runs every module's docstring examples already, in
tests/test_docstring_examples.py; this is for trying one module's examples while
writing them. Examples that write files write them into a temporary folder, and modules
whose examples need an optional extra that is not installed are left out."""

import importlib.util
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _missing(*modules: str) -> bool:
    return any(importlib.util.find_spec(module) is None for module in modules)


collect_ignore = []
# byot_keras.compress's examples import tf_keras / tensorflow-model-optimization (the
# "compress" extra); the TFLite examples run files with ai-edge-litert (the "tflite" one).
if _missing("tf_keras", "tensorflow_model_optimization"):
    collect_ignore.append("byot_keras/compress")
if _missing("ai_edge_litert"):
    collect_ignore += ["byot_keras/export", "byot_keras/compress"]


@pytest.fixture(autouse=True)
def _doctests_write_into_a_temporary_folder(request, monkeypatch):
    # Only the docstring examples: the tests under tests/ keep the folder they run from.
    if request.node.nodeid.startswith("byot_keras/"):
        monkeypatch.chdir(request.getfixturevalue("tmp_path"))
