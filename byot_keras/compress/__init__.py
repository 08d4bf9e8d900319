"""Quantization-aware training and pruning of multi-exit models with
tensorflow-model-optimization (tfmot), an optional extra: `pip install -e ".[compress]"`.

tfmot 0.8 accepts only tf_keras (Keras 2) models, and importing it switches TensorFlow's
`tf.keras` to tf_keras for the whole process. So this path never runs inside a Keras 3
session: the commands `byot-qat` / `byot-prune` (`recipes/qat.py`, `recipes/prune.py`)
run in their own process, where they

1. rebuild the trained model's architecture in tf_keras with the same zoo builder
   (`twin.build_twin`: same layer names, weights copied by name, outputs checked),
2. fine-tune the twin with the model's own self-distillation loss (`finetune`), with
   fake quantization (`qat`) or magnitude pruning (`prune`) applied,
3. write per-exit and cascade TFLite files with the layout and manifest of
   `byot_keras.export` (`export`).

Importing `byot_keras` or this package imports neither tfmot nor tf_keras; the modules
import them when a function needs them (`extra`), with an install hint if missing.

Example:
    >>> import sys, byot_keras.compress
    >>> "tensorflow_model_optimization" in sys.modules
    False
"""

from byot_keras.compress.extra import INSTALL_COMMAND, MissingExtraError

__all__ = ["INSTALL_COMMAND", "MissingExtraError"]
