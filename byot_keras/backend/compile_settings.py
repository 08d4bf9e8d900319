"""The compile settings a saved model takes to another backend.

Keras records the *resolved* `jit_compile` in a `.keras` file's compile config: a model
compiled with the default `jit_compile="auto"` is saved with `True` on JAX (where XLA is
the only way to compile) and `False` on TensorFlow without a GPU. Loaded as recorded, a
file trained on JAX would train on TensorFlow through XLA, which measured 3.3x slower on
CPU here (benchmarks/what_we_tried.md), and a file from a TensorFlow CPU run would train on
JAX without `jax.jit`. So the training models compile a loaded file with `"auto"`: each
backend picks its own default (TensorFlow: XLA only with a GPU and no tf.distribute
strategy; JAX: jit; torch: eager). Compile again with `jit_compile=True` to force XLA.

The optimizer's class is the other backend-bound part. On torch, `keras.optimizers.SGD(...)`
builds a private subclass (`keras.src.backend.torch.optimizers.torch_sgd.SGD`, and so for
Adam, AdamW, RMSprop, ...), and Keras saves that module path: elsewhere it either does not
import (no torch installed: the file fails to load) or brings torch's update step to
another backend. :func:`deserialize_compile_config` reads such entries as the public
`keras.optimizers` class of the same name, which on torch builds the torch subclass again.

Example:
    >>> portable_compile_config({"optimizer": "sgd", "jit_compile": True})
    {'optimizer': 'sgd', 'jit_compile': 'auto'}
    >>> public_optimizer_modules({"module": "keras.src.backend.torch.optimizers.torch_sgd",
    ...                           "class_name": "SGD", "config": {}})["module"]
    'keras.optimizers'
"""

from __future__ import annotations

import keras

# Where Keras' torch backend keeps its optimizer subclasses (Keras 3.x).
_TORCH_OPTIMIZERS = "keras.src.backend.torch.optimizers."


def portable_compile_config(config: dict) -> dict:
    """`config` (a deserialised compile config) with `jit_compile` set to "auto", so the
    loading backend chooses whether to use XLA."""
    config = dict(config)
    if "jit_compile" in config:
        config["jit_compile"] = "auto"
    return config


def public_optimizer_modules(config):
    """A copy of the serialised `config` (nested dicts and lists) in which every object
    saved from one of the torch backend's optimizer subclasses names the public
    `keras.optimizers` class instead (a LossScaleOptimizer's inner optimizer too)."""
    if isinstance(config, list):
        return [public_optimizer_modules(item) for item in config]
    if not isinstance(config, dict):
        return config
    config = {key: public_optimizer_modules(value) for key, value in config.items()}
    module, name = config.get("module"), config.get("class_name")
    if (isinstance(module, str) and module.startswith(_TORCH_OPTIMIZERS)
            and isinstance(getattr(keras.optimizers, str(name), None), type)):
        config["module"] = "keras.optimizers"
    return config


def deserialize_compile_config(config: dict) -> dict:
    """The compile arguments of a `.keras` file's compile config, for this backend: the
    optimizer as its public Keras class and `jit_compile` as "auto"."""
    return portable_compile_config(
        keras.saving.deserialize_keras_object(public_optimizer_modules(config)))
