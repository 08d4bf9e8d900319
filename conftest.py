"""Root pytest configuration for the docstring examples (`python -m pytest -q
--doctest-modules byot_keras`; not yet in the default run, see pyproject.toml): modules
whose examples need an optional extra that is not installed are left out."""

import importlib.util
import os

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
