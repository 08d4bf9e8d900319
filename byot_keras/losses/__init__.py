"""Self-distillation objectives: pure `keras.ops` loss functions and, per method, a
serializable loss object with named presets.

| method | object | function | paper |
|---|---|---|---|
| `byot` | :class:`BYOTLoss` | :func:`byot_loss` | Zhang et al., ICCV 2019 |
| `msd` | :class:`MSDLoss` | :func:`msd_loss` | Luan et al., 2019 |
| `eed` | :class:`EEDLoss` | :func:`eed_loss` | Lee & Lee, 2021 |
| `sdn` | :class:`SDNLoss` | :func:`weighted_ce_loss` | Kaya et al., ICML 2019 |
| `deep_supervision` | :class:`DeepSupervisionLoss` | :func:`weighted_ce_loss` | Lee et al., 2015 |
| `ce` | :class:`CELoss` | :func:`weighted_ce_loss` | the baseline |

Example:
    >>> from byot_keras import losses
    >>> losses.list_methods()
    ['byot', 'ce', 'deep_supervision', 'eed', 'msd', 'sdn']
    >>> losses.get_objective("msd", alpha=0.2)
    MSDLoss('default', alpha=0.2)
"""

from __future__ import annotations

from byot_keras.losses.baselines import (
    CELoss,
    DeepSupervisionLoss,
    SDNLoss,
    hinton_kd_loss,
    sdn_final_weights,
    weighted_ce_loss,
)
from byot_keras.losses.byot import PRESETS, TERMS, BYOTLoss, byot_loss
from byot_keras.losses.core import (
    FEATURE_REDUCTIONS,
    KD_FORMS,
    Objective,
    cosine_anneal,
    cross_entropy,
    distillation,
    feature_distance,
    linear_ramp,
    sparse_labels,
)
from byot_keras.losses.eed import EEDLoss, eed_loss
from byot_keras.losses.msd import MSDLoss, msd_loss

METHODS: dict[str, type[Objective]] = {
    cls.method: cls for cls in (BYOTLoss, MSDLoss, EEDLoss, SDNLoss, DeepSupervisionLoss, CELoss)
}


def list_methods() -> list[str]:
    """The method names `get_objective` and the zoo's `method=` accept."""
    return sorted(METHODS)


def get_objective(method: str | Objective | None = "byot", preset: str | None = None,
                  **options) -> Objective:
    """The loss object of `method` with a named `preset` (default: the method's first)
    and option overrides; an `Objective` instance is returned as is (then no preset or
    options may be given). Unknown methods, presets or options raise a ValueError that
    lists the valid ones.

    Example:
        >>> get_objective("byot", "paper", temperature=4.0)
        BYOTLoss('paper', temperature=4.0)
    """
    if isinstance(method, Objective):
        if preset is not None or options:
            raise ValueError(
                f"Got a loss object ({method!r}) and preset/options {preset!r} {options}: "
                "give one or the other."
            )
        return method
    method = method or "byot"
    if method not in METHODS:
        raise ValueError(
            f"Unknown method '{method}'. Valid methods: {', '.join(list_methods())}."
        )
    return METHODS[method](preset, **options)


def method_options(method: str) -> dict[str, dict]:
    """Every preset of `method` with its options and values."""
    if method not in METHODS:
        raise ValueError(
            f"Unknown method '{method}'. Valid methods: {', '.join(list_methods())}."
        )
    return {name: dict(values) for name, values in METHODS[method].PRESETS.items()}


__all__ = [
    "BYOTLoss", "CELoss", "DeepSupervisionLoss", "EEDLoss", "FEATURE_REDUCTIONS", "KD_FORMS",
    "METHODS", "MSDLoss", "Objective", "PRESETS", "SDNLoss", "TERMS", "byot_loss",
    "cosine_anneal", "cross_entropy", "distillation", "eed_loss", "feature_distance",
    "get_objective", "hinton_kd_loss", "linear_ramp", "list_methods", "method_options",
    "msd_loss", "sdn_final_weights", "sparse_labels", "weighted_ce_loss",
]
