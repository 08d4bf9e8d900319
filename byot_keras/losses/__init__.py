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
| `cskd` | :class:`CSKDLoss` | :func:`cskd_loss` | Yun et al., CVPR 2020 |
| `one` | :class:`ONELoss` | :func:`one_loss` | Lan et al., NeurIPS 2018 |

Cohort methods (several networks trained together, `byot_keras.training.CohortModel`):

| method | object | function | paper |
|---|---|---|---|
| `multistructure` | :class:`MultistructureLoss` | :func:`multistructure_loss` | Gao et al., 2019 |
| `dml` | :class:`DMLLoss` | :func:`dml_loss` | Zhang et al., CVPR 2018 |

Teacher -> student KD (Hinton et al., 2015): :func:`hinton_kd_loss`.

Example:
    >>> from byot_keras import losses
    >>> losses.list_methods()
    ['byot', 'ce', 'cskd', 'deep_supervision', 'eed', 'msd', 'one', 'sdn']
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
from byot_keras.losses.cohort import (
    CohortObjective,
    DMLLoss,
    MultistructureLoss,
    discontinuous_weight,
    dml_loss,
    ensemble_teacher,
    multistructure_loss,
)
from byot_keras.losses.core import (
    FEATURE_REDUCTIONS,
    KD_FORMS,
    Objective,
    UnknownOptionError,
    cosine_anneal,
    cross_entropy,
    distillation,
    feature_distance,
    linear_ramp,
    sparse_labels,
)
from byot_keras.losses.cskd import CSKDLoss, cskd_loss
from byot_keras.losses.eed import EEDLoss, eed_loss
from byot_keras.losses.msd import MSDLoss, msd_loss
from byot_keras.losses.one import ONELoss, one_loss

METHODS: dict[str, type[Objective]] = {
    cls.method: cls for cls in (BYOTLoss, MSDLoss, EEDLoss, SDNLoss, DeepSupervisionLoss, CELoss,
                                CSKDLoss, ONELoss)
}
COHORT_METHODS: dict[str, type[CohortObjective]] = {
    cls.method: cls for cls in (MultistructureLoss, DMLLoss)
}
_ALL = {**METHODS, **COHORT_METHODS}


def list_methods(kind: str = "multi_exit") -> list[str]:
    """The method names for one multi-exit network (`kind="multi_exit"`: what the zoo's
    `method=` accepts) or for a cohort of networks (`kind="cohort"`)."""
    if kind not in ("multi_exit", "cohort"):
        raise ValueError(f"Unknown kind '{kind}'. Valid: multi_exit, cohort.")
    return sorted(METHODS if kind == "multi_exit" else COHORT_METHODS)


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
    return _method_class(method or "byot")(preset, **options)


def _method_class(method: str) -> type[Objective]:
    if method not in _ALL:
        raise ValueError(
            f"Unknown method '{method}'. Valid methods: {', '.join(list_methods())}; for a "
            f"cohort of networks: {', '.join(list_methods('cohort'))}."
        )
    return _ALL[method]


def method_options(method: str) -> dict[str, dict]:
    """Every preset of `method` with its options and values."""
    return {name: dict(values) for name, values in _method_class(method).PRESETS.items()}


__all__ = [
    "COHORT_METHODS", "CohortObjective", "DMLLoss", "MultistructureLoss", "discontinuous_weight",
    "dml_loss", "ensemble_teacher", "multistructure_loss",
    "BYOTLoss", "CELoss", "CSKDLoss", "DeepSupervisionLoss", "EEDLoss", "FEATURE_REDUCTIONS",
    "KD_FORMS", "METHODS", "MSDLoss", "ONELoss", "Objective", "PRESETS", "SDNLoss", "TERMS",
    "UnknownOptionError", "byot_loss",
    "cosine_anneal", "cross_entropy", "cskd_loss", "distillation", "eed_loss",
    "feature_distance",
    "get_objective", "hinton_kd_loss", "linear_ramp", "list_methods", "method_options",
    "msd_loss", "one_loss", "sdn_final_weights", "sparse_labels", "weighted_ce_loss",
]
