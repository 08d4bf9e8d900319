"""Anytime (early-exit) inference: answer with the first exit that is confident enough.

These helpers work on the logits of every exit (from `model.predict`), which is what
you want to choose a threshold offline. On a device, the TFLite cascade stops computing
at the answering exit instead.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from byot_keras.options import integer_at_least


@dataclass(frozen=True)
class EarlyExitResult:
    """Per example: predicted class, the exit that answered (1-based) and its confidence
    (max softmax probability)."""

    predictions: np.ndarray
    exits: np.ndarray
    confidences: np.ndarray


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a NumPy logits array (stable for large logits)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _as_exit_list(exit_logits) -> list[np.ndarray]:
    if isinstance(exit_logits, Mapping):
        names = sorted((k for k in exit_logits if k.startswith("exit_")),
                       key=lambda k: int(k.split("_")[1]))
        if not names:
            raise ValueError(f"No 'exit_k' keys in the outputs: {sorted(exit_logits)}.")
        exit_logits = [exit_logits[k] for k in names]
    arrays = [np.asarray(x, dtype=np.float64) for x in exit_logits]
    if not arrays or any(a.ndim != 2 or a.shape != arrays[0].shape for a in arrays):
        raise ValueError("Expected one (batch, classes) logits array per exit, all the same "
                         f"shape; got shapes {[a.shape for a in arrays]}.")
    return arrays


def check_threshold(threshold: float) -> None:
    """Raises a ValueError unless `threshold` is a probability in [0, 1]."""
    if isinstance(threshold, bool | np.bool_) or not isinstance(threshold, numbers.Real) or (
            not 0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}.")


def check_multi_exit_model(model) -> None:
    """Raises a ValueError unless `model` has exits: a zoo model (`exit_names`), or a
    model whose output is a dict with `exit_k` keys or a list of logits, one per exit."""
    if getattr(model, "exit_names", None):
        return
    try:
        output = model.output
    except (AttributeError, ValueError):  # not a model, or a subclassed one never called
        output = None
    if isinstance(output, Mapping) and any(key.startswith("exit_") for key in output):
        return
    if isinstance(output, list | tuple) and output:
        return
    raise ValueError(
        "early_exit_predict needs a multi-exit model (a byot_keras.zoo model, or one whose "
        "outputs are a dict with exit_1..exit_N logits); got "
        f"{getattr(model, 'name', type(model).__name__)!r}, which has no exits. For a "
        "single-output model use model.predict.")


def early_exit_from_logits(exit_logits: Mapping | Sequence, threshold: float
                           ) -> EarlyExitResult:
    """Picks, per example, the first exit whose max softmax reaches `threshold`;
    examples no exit is sure of get the deepest exit's answer.

    Example:
        >>> import numpy as np
        >>> logits = {"exit_1": np.array([[4.0, 0.0], [0.1, 0.0]]),
        ...           "exit_2": np.array([[0.0, 1.0], [0.0, 3.0]])}
        >>> early_exit_from_logits(logits, threshold=0.9).exits.tolist()
        [1, 2]
    """
    check_threshold(threshold)
    probabilities = np.stack([softmax(x) for x in _as_exit_list(exit_logits)])  # (E, B, C)
    confidences = probabilities.max(axis=-1)  # (E, B)
    confident = confidences >= threshold
    confident[-1] = True  # the deepest exit always answers what is left
    chosen = confident.argmax(axis=0)  # first True per example
    batch = np.arange(probabilities.shape[1])
    return EarlyExitResult(
        predictions=probabilities[chosen, batch].argmax(axis=-1),
        exits=chosen + 1,
        confidences=confidences[chosen, batch],
    )


def early_exit_predict(model, x, threshold: float = 0.9, batch_size: int | None = None
                       ) -> EarlyExitResult:
    """`early_exit_from_logits` on `model.predict(x)`. `model` must have exits (a zoo
    model); an empty batch gives empty results.

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> model = zoo.alexnet_byot(num_classes=10, width_multiplier=0.125)
        >>> result = early_exit_predict(model, np.zeros((2, 32, 32, 3)), threshold=0.5)
        >>> result.exits.shape
        (2,)
    """
    check_threshold(threshold)
    check_multi_exit_model(model)
    if batch_size is not None:
        integer_at_least(1).check("batch_size", batch_size)
    if x is None:
        inputs = getattr(getattr(model, "network", model), "inputs", None)
        shape = f"(batch, {', '.join(map(str, inputs[0].shape[1:]))})" if inputs else \
            "(batch, height, width, channels)"
        raise ValueError(f"early_exit_predict: x must be images of shape {shape}; got None.")
    if getattr(x, "shape", None) is not None and len(x.shape) > 0 and x.shape[0] == 0:
        # Keras' predict fails on no data; nothing in, nothing out.
        return EarlyExitResult(predictions=np.zeros(0, np.int64), exits=np.zeros(0, np.int64),
                               confidences=np.zeros(0, np.float64))
    return early_exit_from_logits(model.predict(x, batch_size=batch_size, verbose=0),
                                  threshold)


def early_exit_curve(exit_logits: Mapping | Sequence, labels, thresholds: Sequence[float],
                     answer_costs: Sequence[float] | None = None) -> list[dict]:
    """Accuracy against depth for each threshold: the trade-off a user picks from.

    Returns one dict per threshold with `accuracy`, `mean_exit`, the fraction of
    examples answered by each exit and, given the cost of answering at each exit,
    `mean_cost` per example. For a cascade that stops at the answer, the cost of
    answering at exit k is `model.exit_costs()[k - 1]["cascade_macs"]` (the trunk up to
    k plus the heads of exits 1..k).
    """
    logits = _as_exit_list(exit_logits)
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != logits[0].shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {logits[0].shape[0]} examples.")
    if answer_costs is not None and len(answer_costs) != len(logits):
        raise ValueError(f"answer_costs has {len(answer_costs)} entries for {len(logits)} "
                         "exits.")
    rows = []
    for threshold in thresholds:
        result = early_exit_from_logits(logits, threshold)
        fractions = np.bincount(result.exits - 1, minlength=len(logits)) / labels.shape[0]
        row = {
            "threshold": float(threshold),
            "accuracy": float(np.mean(result.predictions == labels)),
            "mean_exit": float(result.exits.mean()),
            "exit_fractions": [float(f) for f in fractions],
        }
        if answer_costs is not None:
            row["mean_cost"] = float(np.dot(fractions, answer_costs))
        rows.append(row)
    return rows
