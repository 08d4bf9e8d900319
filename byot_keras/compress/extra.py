"""The optional dependencies of `byot_keras.compress`, imported only when used.

tensorflow-model-optimization (tfmot) sets `TF_USE_LEGACY_KERAS=1` when imported, which
routes `tf.keras` to tf_keras for the rest of the process; that is why the compress
commands run in their own process and nothing imports tfmot at package import time.

Example:
    >>> from byot_keras.compress import extra
    >>> extra.INSTALL_COMMAND
    'pip install -e ".[compress]"'
"""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_COMMAND = 'pip install -e ".[compress]"'
# import name -> pip distribution
_PACKAGES = {
    "tf_keras": "tf_keras (the version matching your TensorFlow, e.g. 2.21.x for TF 2.21)",
    "tensorflow_model_optimization": "tensorflow-model-optimization>=0.8",
}


class MissingExtraError(ImportError):
    """The compress extra (tf_keras, tensorflow-model-optimization) is not installed."""


def _import(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"Quantization-aware training and pruning need the optional packages "
            f"{' and '.join(_PACKAGES.values())}; '{module}' could not be imported "
            f"({error}). Install the extra with:\n    {INSTALL_COMMAND}"
        ) from error


def tf_keras() -> ModuleType:
    """The tf_keras module (Keras 2), or MissingExtraError with the install command."""
    return _import("tf_keras")


def tfmot() -> ModuleType:
    """tensorflow_model_optimization, or MissingExtraError with the install command.

    Importing it switches `tf.keras` to tf_keras in this process (see the module doc).
    """
    tf_keras()  # checked first: tfmot's own error for a missing tf_keras is less clear
    return _import("tensorflow_model_optimization")


def require() -> None:
    """Raises MissingExtraError unless both optional packages import."""
    tfmot()
