"""The compile settings a saved model takes to another backend.

Keras records the *resolved* `jit_compile` in a `.keras` file's compile config: a model
compiled with the default `jit_compile="auto"` is saved with `True` on JAX (where XLA is
the only way to compile) and `False` on TensorFlow without a GPU. Loaded as recorded, a
file trained on JAX would train on TensorFlow through XLA, which measured 3.3x slower on
CPU here (benchmarks/what_we_tried.md), and a file from a TensorFlow CPU run would train on
JAX without `jax.jit`. So the training models compile a loaded file with `"auto"`: each
backend picks its own default (TensorFlow: XLA only with a GPU and no tf.distribute
strategy; JAX: jit). Compile again with `jit_compile=True` to force XLA.

Example:
    >>> portable_compile_config({"optimizer": "sgd", "jit_compile": True})
    {'optimizer': 'sgd', 'jit_compile': 'auto'}
"""

from __future__ import annotations


def portable_compile_config(config: dict) -> dict:
    """`config` (a deserialised compile config) with `jit_compile` set to "auto", so the
    loading backend chooses whether to use XLA."""
    config = dict(config)
    if "jit_compile" in config:
        config["jit_compile"] = "auto"
    return config
