"""The papers' published CIFAR-100 top-1 accuracies (%), as data: the model cards show
them, and `byot-reproduce` compares its runs with them.

Every row cites its paper (../shared/docs/methods.md lists the same numbers).

Example:
    >>> row = published_row("resnet18_byot")
    >>> row.baseline, row.classifiers[-1], row.ensemble
    (77.09, 78.64, 79.67)
"""

from __future__ import annotations

from dataclasses import dataclass

BYOT_PAPER = ('Zhang et al., "Be Your Own Teacher: Improve the Performance of Convolutional '
              'Neural Networks via Self Distillation", ICCV 2019, arXiv 1905.08094, '
              "CIFAR-100 results table")


@dataclass(frozen=True)
class PublishedResult:
    """One published CIFAR-100 result, shown on the card of `model`.

    `classifiers` are the paper's per-classifier top-1 (%), shallow to deep (one value for
    a single-classifier method); `comparable` is True only when the paper's network and
    exits are ours (classifier k is `exit_k`); otherwise `note` says what differs.
    """

    model: str
    network: str
    method: str
    source: str
    baseline: float | None
    classifiers: tuple[float, ...]
    ensemble: float | None
    comparable: bool
    note: str


BASELINE = "baseline (cross-entropy only)"
_RESNET_NOTE = ("the official BYOT code's CIFAR ResNet (3x3 stride-1 stem, no max-pool), "
                "one classifier per stage: the paper's classifier k/4 is `exit_k`. The "
                "official code trained 250 epochs with AutoAugment and Cutout.")
_RESNET_BASELINE_NOTE = ("the paper's baseline column: the same CIFAR ResNet, one classifier, "
                         "trained with cross-entropy only.")
_VGG_NOTE = ("the paper reports 4 classifiers on VGG19 where `vgg19_byot` has 5 exits (one "
             "per pooling block); where the paper's classifiers sit, and which VGG classifier "
             "(global pooling + Dense as ours at 32 px, or three Dense layers) it used, is not "
             "confirmed, so the numbers do not map onto our exits one to one.")
_WRN_NOTE = ("44 is not a WRN depth (6n + 4) and the paper does not define its network (see "
             "`wrn44_8_byot`'s docstring for the reading we build); the paper reports 4 "
             "classifiers where `wrn44_8_byot` has 3 exits (one per group).")


def _byot_rows(network: str, name: str, baseline: float, classifiers: tuple, ensemble: float,
               comparable: bool, note: str, baseline_note: str) -> tuple[PublishedResult, ...]:
    """One row of the BYOT table: its BYOT numbers on `<name>_byot` and its baseline
    (the plain network) on the single-exit `<name>`."""
    return (
        PublishedResult(f"{name}_byot", network, "BYOT", BYOT_PAPER, baseline, classifiers,
                        ensemble, comparable, note),
        PublishedResult(name, network, BASELINE, BYOT_PAPER, None, (baseline,), None,
                        comparable, baseline_note),
    )


PUBLISHED: tuple[PublishedResult, ...] = (
    *_byot_rows("ResNet18", "resnet18", 77.09, (67.85, 74.57, 78.23, 78.64), 79.67,
                True, _RESNET_NOTE, _RESNET_BASELINE_NOTE),
    *_byot_rows("ResNet50", "resnet50", 77.68, (68.23, 74.21, 75.23, 80.56), 81.04,
                True, _RESNET_NOTE, _RESNET_BASELINE_NOTE),
    *_byot_rows("ResNet101", "resnet101", 77.98, (69.45, 77.29, 81.17, 81.23), 82.03,
                True, _RESNET_NOTE, _RESNET_BASELINE_NOTE),
    *_byot_rows("ResNet152", "resnet152", 79.21, (68.84, 78.72, 81.43, 81.61), 82.29,
                True, _RESNET_NOTE, _RESNET_BASELINE_NOTE),
    *_byot_rows("VGG19 (BN)", "vgg19", 64.47, (63.59, 67.04, 68.03, 67.73), 68.54,
                False, _VGG_NOTE, _VGG_NOTE),
    *_byot_rows("WideResNet44-8", "wrn44_8", 79.93, (72.54, 81.15, 81.96, 82.09), 82.61,
                False, _WRN_NOTE, _WRN_NOTE),
)


def published_row(model: str, method: str = "BYOT") -> PublishedResult:
    """The published row of `model` for `method` ("BYOT" or `BASELINE`); ValueError
    naming the models that have one otherwise."""
    for row in PUBLISHED:
        if row.model == model and row.method == method:
            return row
    known = sorted({row.model for row in PUBLISHED if row.method == method})
    raise ValueError(f"No published {method} result for '{model}'. Published: "
                     f"{', '.join(known)}.")
