"""Which backends the TFLite export runs on.

The export traces the model into a TensorFlow graph (`keras.export.ExportArchive`, then
TensorFlow's TFLite converter): Keras does that on TensorFlow, and on JAX through
jax2tf, but not on torch, where `ExportArchive.track` raises a NotImplementedError deep
in the conversion. A `.keras` file trained on torch loads on TensorFlow with the same
weights and logits (tests/test_torch_backend.py): export it there. `byot-export` started
on torch restarts itself on TensorFlow.
"""

from __future__ import annotations

import keras

#: Backends whose models Keras traces into a TensorFlow graph.
EXPORT_BACKENDS = ("tensorflow", "jax")


def check_export_backend(what: str = "The TFLite export") -> None:
    """Raises a ValueError saying where to export when Keras runs on a backend whose
    models it cannot trace into a TensorFlow graph (torch)."""
    backend = keras.backend.backend()
    if backend not in EXPORT_BACKENDS:
        raise ValueError(
            f"{what} traces the model into a TensorFlow graph, which Keras cannot do on the "
            f"{backend} backend. Save the model (model.save('model.keras')) and export it "
            "with KERAS_BACKEND=tensorflow: it loads there with the same weights "
            "(byot-export does this by itself).")
