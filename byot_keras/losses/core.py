"""What every self-distillation objective shares: the loss pieces (`keras.ops` only),
the epoch schedules, and `Objective`, the base of the per-method loss objects.

Conventions: exits are numbered 1..N shallow to deep; `logits[i]` / `features[i]` are
lists in that order; teacher terms are stop-gradient unless an option says otherwise;
every per-example term is reduced like Keras' "sum_over_batch_size" (sum of weighted
values / batch size), so a model divides by the replica count once (see
byot_keras.training).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

from keras import ops

from byot_keras.options import (  # noqa: F401 - the kinds methods declare their options with
    FLAG,
    FRACTION,
    POSITIVE,
    WEIGHT,
    OptionKind,
    UnknownOptionError,
    integer_at_least,
    is_integer,
    is_integer_list,
    is_number,
    items_of,
    number_at_least,
    number_in,
    optional,
)

KD_FORMS = ("soft_ce", "kl")
FEATURE_REDUCTIONS = ("frobenius", "squared_sum", "mean_squared")


# --------------------------------------------------------------------------- pieces


def sparse_labels(labels, num_classes: int):
    """Integer class ids of shape (batch,) from sparse (batch,)/(batch, 1) or one-hot
    (batch, num_classes) labels; anything else raises a ValueError."""
    if getattr(labels.shape, "rank", 0) is None:  # a tf.TensorShape of unknown rank
        raise ValueError(
            "Labels of unknown rank cannot be read: give labels with a static shape, "
            f"(batch,), (batch, 1) or (batch, {num_classes})."
        )
    shape = tuple(labels.shape)
    if len(shape) == 2 and shape[-1] == num_classes and num_classes > 1:
        return ops.argmax(labels, axis=-1)
    if len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1):
        return ops.cast(ops.reshape(labels, (-1,)), "int32")
    raise ValueError(
        f"Labels of shape {shape} do not fit {num_classes} classes: give integer class ids "
        f"of shape (batch,) or (batch, 1), or one-hot / soft labels of shape "
        f"(batch, {num_classes})."
    )


def cross_entropy(labels, logits):
    """Per-example cross-entropy from logits; sparse or one-hot/soft labels."""
    num_classes = logits.shape[-1]
    if len(labels.shape) == 2 and labels.shape[-1] == num_classes and num_classes > 1:
        return ops.categorical_crossentropy(ops.cast(labels, logits.dtype), logits,
                                            from_logits=True)
    return ops.sparse_categorical_crossentropy(sparse_labels(labels, num_classes), logits,
                                               from_logits=True)


def distillation(student_logits, teacher_logits, temperature: float, form: str = "soft_ce",
                 temperature_squared: bool = False, detach_teacher: bool = True):
    """Per-example soft-target term; the teacher is stop-gradient unless
    `detach_teacher=False`.

    "soft_ce": -sum p_T(teacher) * log p_T(student); "kl": KL(p_T(teacher) || p_T(student)).
    Both have the same gradient for the student; "kl" is 0 when the student matches.
    """
    if form not in KD_FORMS:
        raise ValueError(f"Unknown kd_form '{form}'. Valid forms: {', '.join(KD_FORMS)}.")
    check_temperature(temperature)
    if detach_teacher:
        teacher_logits = ops.stop_gradient(teacher_logits)
    teacher = teacher_logits / temperature
    student_log_probs = ops.log_softmax(student_logits / temperature, axis=-1)
    teacher_probs = ops.softmax(teacher, axis=-1)
    if form == "kl":
        values = ops.sum(teacher_probs * (ops.log_softmax(teacher, axis=-1) - student_log_probs),
                         axis=-1)
    else:
        values = -ops.sum(teacher_probs * student_log_probs, axis=-1)
    if temperature_squared:
        values = values * (temperature ** 2)
    return values


def check_temperature(temperature) -> None:
    POSITIVE.check("temperature", temperature)


def feature_distance(student, teacher, reduction: str = "frobenius",
                     cross_replica_sum: Callable | None = None, detach_teacher: bool = True):
    """Distance between a student feature batch and the (stop-gradient) teacher feature.

    - "frobenius": the Frobenius norm of the difference over the whole batch (not
      squared, not averaged), as in the official BYOT code. It is not a mean, so under
      data parallelism the squared sum is added up across replicas first
      (`cross_replica_sum`) to give the global batch's norm.
    - "squared_sum": squared L2 distance per example, averaged over the batch.
    - "mean_squared": mean over batch and feature dimensions.
    """
    diff = student - (ops.stop_gradient(teacher) if detach_teacher else teacher)
    if reduction == "frobenius":
        total = ops.sum(ops.square(diff))
        if cross_replica_sum is not None:
            total = cross_replica_sum(total)
        # sqrt has an infinite slope at 0; this keeps the gradient finite there.
        positive = total > 0
        return ops.where(positive, ops.sqrt(ops.where(positive, total, 1.0)), 0.0)
    if reduction == "squared_sum":
        return ops.mean(ops.sum(ops.square(diff), axis=-1))
    if reduction == "mean_squared":
        return ops.mean(ops.square(diff))
    raise ValueError(
        f"Unknown feature_reduction '{reduction}'. Valid: {', '.join(FEATURE_REDUCTIONS)}."
    )


def batch_mean(values, sample_weight=None):
    """Keras' "sum_over_batch_size": sum(w * l) / batch."""
    if sample_weight is None:
        return ops.mean(values)
    weights = ops.cast(ops.reshape(sample_weight, (-1,)), values.dtype)
    return ops.sum(values * weights) / ops.cast(ops.shape(values)[0], values.dtype)


def zero_like(reference):
    return ops.zeros((), dtype=reference.dtype)


# ------------------------------------------------------------------------- schedules


def cosine_anneal(epoch, total_epochs, begin: float, end: float):
    """`end + (begin - end) / 2 * (1 + cos(pi * epoch / total_epochs))`: `begin` at
    epoch 0, `end` at `total_epochs` and after (MSD's beta). Works on floats and tensors."""
    total = ops.maximum(ops.cast(total_epochs, "float32"), 1.0)
    progress = ops.clip(ops.cast(epoch, "float32") / total, 0.0, 1.0)
    return end + 0.5 * (begin - end) * (1.0 + ops.cos(math.pi * progress))


def linear_ramp(epoch, ramp_epochs, final: float, start: float = 0.0):
    """`min(final, start + epoch * final / ramp_epochs)`: from `start` at epoch 0 up to
    `final` after `ramp_epochs` epochs (SDN's internal-classifier weights)."""
    ramp = ops.maximum(ops.cast(ramp_epochs, "float32"), 1.0)
    value = start + ops.cast(epoch, "float32") * final / ramp
    return ops.minimum(value, final)


# ---------------------------------------------------------------------- option kinds

#: Which exits a term applies to.
EXIT_CHOICE = OptionKind(
    "'all', 'all_but_last' or a list of exit numbers (integers)",
    lambda v: (isinstance(v, str) and v in ("all", "all_but_last")) or is_integer_list(v))
WEIGHT_LIST = OptionKind(
    "a list of numbers >= 0",
    lambda v: items_of(v) is not None and all(WEIGHT.accepts(w) for w in items_of(v)))
#: A run length in epochs, None meaning fit's `epochs`.
EPOCHS = optional(POSITIVE, "fit's epochs")


# ------------------------------------------------------------------------- objectives


def resolve_exit_choice(choice, candidates: Sequence[int], option: str) -> list[int]:
    """'all', 'all_but_last' or an explicit list, checked against `candidates`."""
    candidates = list(candidates)
    if isinstance(choice, str) and choice == "all":
        return candidates
    if isinstance(choice, str) and choice == "all_but_last":
        return candidates[:-1]
    EXIT_CHOICE.check(option, choice)
    chosen = [int(e) for e in items_of(choice)]
    if any(e not in candidates for e in chosen):
        raise ValueError(f"{option}={list(choice)} is invalid: valid exits are {candidates}.")
    return chosen


class Objective:
    """Base of the per-method loss objects (BYOTLoss, MSDLoss, ...).

    A subclass sets `method` (its registry name), `PRESETS` (named option sets; the
    first is the default), `TERMS` (the names of the terms it returns besides "loss",
    logged as `<term>_loss`), the kind of every option (`OPTION_KINDS`, or `CHOICES`
    for fixed strings) and implements :meth:`compute`. Options are validated on
    construction: an unknown option, preset or choice and a value of the wrong type or
    range (a negative weight, `alpha` outside [0, 1], `kd_weight="a"`, `adaptation="no"`,
    `kd_exits="13"`) raise a ValueError that names the option, the value and what is
    valid. The object serializes as its preset plus overrides.

    Models call :meth:`terms` with the network's output dict (`exit_k` logits,
    `feature_k` features) and the training progress (`epoch`, `total_epochs`) that
    schedules read.
    """

    method: ClassVar[str]
    PRESETS: ClassVar[dict[str, dict]]
    TERMS: ClassVar[tuple[str, ...]]
    #: The exit head the paper's architecture uses where the family can build it (None:
    #: the builder's default); see `network_options`.
    HEAD: ClassVar[str | None] = None
    #: Options that are choices among fixed strings: option -> valid values.
    CHOICES: ClassVar[dict[str, tuple]] = {}
    #: Every other option's kind (WEIGHT, FRACTION, POSITIVE, FLAG, EXIT_CHOICE, ...).
    OPTION_KINDS: ClassVar[dict[str, OptionKind]] = {}
    #: The method trains the plain network (no shallow exit) unless exits are asked for.
    PLAIN_NETWORK: ClassVar[bool] = False
    #: Training batches must be class pairs (CS-KD): the input pipelines build them.
    PAIRED_BATCHES: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # An option without a kind would go unchecked: refuse the class, not the user.
        undeclared = sorted({option for values in getattr(cls, "PRESETS", {}).values()
                             for option in values} - set(cls.OPTION_KINDS) - set(cls.CHOICES))
        if undeclared:
            raise TypeError(f"{cls.__name__} declares no kind for option(s) {undeclared}: add "
                            "them to OPTION_KINDS or CHOICES.")

    def __init__(self, preset: str | None = None, **overrides):
        if preset is not None and not isinstance(preset, str):
            raise ValueError(f"A {self.method} preset is a name ({', '.join(self.PRESETS)}); "
                             f"got {preset!r}.")
        preset = preset or next(iter(self.PRESETS))
        if preset not in self.PRESETS:
            raise ValueError(
                f"Unknown {self.method} preset '{preset}'. Valid presets: "
                f"{', '.join(self.PRESETS)}."
            )
        unknown = sorted(set(overrides) - set(self.PRESETS[preset]))
        if unknown:
            valid = ", ".join(self.PRESETS[preset]) or f"none ({self.method} takes no options)"
            raise UnknownOptionError(
                f"Unknown {self.method} option(s) {unknown}. Valid options: {valid}.")
        self.preset = preset
        self.overrides = dict(overrides)
        self.config = {**self.PRESETS[preset], **overrides}
        for option, valid in self.CHOICES.items():
            value = self.config.get(option)
            if not isinstance(value, str) or value not in valid:
                raise ValueError(
                    f"Unknown {option} '{value}' for {self.method}. "
                    f"Valid: {', '.join(map(str, valid))}."
                )
        for option, kind in self.OPTION_KINDS.items():
            if option in self.config:
                kind.check(option, self.config[option], f"{self.method} option")

    @classmethod
    def options(cls, preset: str | None = None) -> dict:
        """The options of a preset (default: the first) and their values."""
        return dict(cls.PRESETS[preset or next(iter(cls.PRESETS))])

    # What the model needs to know before training --------------------------------
    @property
    def uses_features(self) -> bool:
        return False

    @property
    def adaptation(self) -> bool:
        """Whether shallow features pass a learned Dense before the feature term."""
        return False

    def feature_exits(self, num_exits: int) -> list[int]:
        """Exits whose features the loss reads, besides the deepest."""
        return []

    def validate(self, num_exits: int) -> None:
        """Raises now, not mid-fit, if the options do not fit an `num_exits`-exit model."""
        self.feature_exits(num_exits)

    @property
    def scheduled(self) -> bool:
        """Whether the loss depends on the epoch (then the model tracks it)."""
        return False

    def schedule(self, epoch, total_epochs) -> dict:
        """The values of the scheduled weights at `epoch` of `total_epochs`."""
        return {}

    # The loss ---------------------------------------------------------------------
    def compute(self, labels, logits: list, features: list | None, *, sample_weight,
                distill: bool, cross_replica_sum, epoch, total_epochs) -> dict:
        raise NotImplementedError

    def network_options(self) -> dict:
        """What network the method trains, as defaults of the zoo builders' keywords (the
        one place a method says so; a keyword the user gives wins): `default_head`
        (the head used when `head` is not given and the family can build it), `exits`
        (`()` for methods that train the plain network), `branches` (ONE's copies of
        the last stage)."""
        options = {}
        if self.HEAD is not None:
            options["default_head"] = self.HEAD
        if self.PLAIN_NETWORK:
            options["exits"] = ()
        return options

    def terms(self, y_true, y_pred: dict, sample_weight=None, *, training: bool = True,
              cross_replica_sum: Callable | None = None, epoch=0.0, total_epochs=1.0
              ) -> dict:
        """All terms ("loss" and `TERMS`) for the output dict `y_pred`. With
        `training=False` the distillation terms are dropped (they are 0)."""
        num_exits = sum(1 for key in y_pred if key.startswith("exit_"))
        logits = [y_pred[f"exit_{k}"] for k in range(1, num_exits + 1)]
        features = None
        if training and self.uses_features:
            features = [y_pred.get(f"feature_{k}") for k in range(1, num_exits + 1)]
        if self.config.get("total_epochs"):
            total_epochs = float(self.config["total_epochs"])
        return self.compute(y_true, logits, features, sample_weight=sample_weight,
                            distill=training, cross_replica_sum=cross_replica_sum,
                            epoch=epoch, total_epochs=total_epochs)

    def __call__(self, y_true, y_pred: dict, sample_weight=None):
        return self.terms(y_true, y_pred, sample_weight)["loss"]

    def get_config(self) -> dict:
        return {"preset": self.preset, **self.overrides}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.overrides.items())
        return f"{type(self).__name__}({self.preset!r}{extra})"
