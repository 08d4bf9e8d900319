"""Which Keras the zoo builders build with: Keras 3 (always, by default) or tf_keras.

The builders are plain functional code that only touches `layers`, `Input`, `Model` and
`initializers`. Reading those through this module lets the same builder emit the same
architecture, with the same layer names, in tf_keras (Keras 2): the form that
tensorflow-model-optimization's QAT and pruning accept. Nothing here imports tf_keras;
the caller passes the module in (see `byot_keras.compress`).

Example:
    >>> from byot_keras.networks import namespace
    >>> namespace.current().__name__
    'keras'
"""

from __future__ import annotations

import contextlib
import contextvars
from types import ModuleType

import keras

_CURRENT: contextvars.ContextVar[ModuleType | None] = contextvars.ContextVar(
    "byot_keras_namespace", default=None
)


def current() -> ModuleType:
    """The Keras module the builders use right now (`keras` unless overridden)."""
    return _CURRENT.get() or keras


def is_keras3() -> bool:
    return current() is keras


@contextlib.contextmanager
def use(module: ModuleType):
    """Builds with `module` (e.g. `tf_keras`) inside the `with` block."""
    token = _CURRENT.set(module)
    try:
        yield module
    finally:
        _CURRENT.reset(token)


class _Attribute:
    """Forwards attribute access to `current().<attribute>` at call time."""

    def __init__(self, attribute: str):
        self._attribute = attribute

    def __getattr__(self, name: str):
        return getattr(getattr(current(), self._attribute), name)


layers = _Attribute("layers")
initializers = _Attribute("initializers")


def Input(*args, **kwargs):  # noqa: N802 - mirrors keras.Input
    return current().Input(*args, **kwargs)


def Model(*args, **kwargs):  # noqa: N802 - mirrors keras.Model
    return current().Model(*args, **kwargs)
