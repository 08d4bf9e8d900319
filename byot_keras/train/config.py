"""The configuration of one training run: every setting that changes its result.

`TrainConfig` is what `byot-train` builds from a preset plus flags; it is written to
`<output_dir>/config.json`, compared on resume (a different configuration in the same
folder is refused) and copied into the report.
"""

from __future__ import annotations

import dataclasses
import fractions
import json

from byot_keras.data.pipeline import DATASETS, check_augmentations

# "data_parallel": keras.distribution.DataParallel on the JAX backend; the others are
# tf.distribute strategies (TensorFlow backend).
STRATEGIES = ("default", "mirrored", "multiworker", "tpu", "data_parallel")
LR_SCHEDULES = ("step", "cosine", "constant")
# Keras dtype policies: "mixed_float16" for GPUs, "mixed_bfloat16" for TPUs and CPUs with
# bfloat16 units. Variables and the loss stay float32 (byot_keras.training).
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# Fields that may differ between the interrupted and the resumed invocation: they do not
# change what is computed.
RESUMABLE_DIFFERENCES = ("verbose", "overwrite", "baseline_accuracy", "baseline_name")


@dataclasses.dataclass
class TrainConfig:
    """One run. `lr_milestones` entries are epochs: an integer ("30"), a fraction of the
    run ("1/3") or an offset from its end ("-10" = epochs - 10).

    Example:
        >>> config = TrainConfig(dataset="digits", epochs=3, lr_milestones=["1/3", "-1"])
        >>> config.milestone_epochs()
        [1, 2]
    """

    model: str = "resnet18_byot"
    method: str = "byot"
    method_options: dict = dataclasses.field(default_factory=dict)
    width_multiplier: float = 1.0
    sync_batchnorm: bool = False
    dataset: str = "cifar100"
    data_dir: str | None = None
    download: bool = False
    image_size: int | None = None
    train_examples: int | None = None
    test_examples: int | None = None
    validation_split: float = 0.1
    verify_images: bool = True
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    lr_schedule: str = "step"
    lr_milestones: list = dataclasses.field(default_factory=lambda: ["1/3", "2/3", "-10"])
    lr_decay: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    augment: list = dataclasses.field(default_factory=lambda: ["pad_crop", "flip"])
    cache: bool = True
    shuffle_buffer: int | None = None
    eval_batch_size: int = 256
    validation_freq: int = 1
    seed: int = 0
    deterministic: bool = False
    precision: str = "float32"
    strategy: str = "default"
    devices: list = dataclasses.field(default_factory=list)
    tpu: str | None = None
    output_dir: str = "runs/train"
    overwrite: bool = False
    verbose: str = "auto"
    baseline_accuracy: float | None = None
    baseline_name: str = "baseline"
    preset: str | None = None

    def validate(self) -> TrainConfig:
        """Checks values that need no data or model; raises a ValueError naming the
        setting and what is valid. Returns self."""
        _require(self.dataset in DATASETS, "dataset", self.dataset, f"one of {DATASETS}")
        _require(self.strategy in STRATEGIES, "strategy", self.strategy, f"one of {STRATEGIES}")
        _require(self.lr_schedule in LR_SCHEDULES, "lr_schedule", self.lr_schedule,
                 f"one of {LR_SCHEDULES}")
        _require(self.precision in PRECISIONS, "precision", self.precision,
                 f"one of {PRECISIONS}")
        for name in ("epochs", "batch_size", "eval_batch_size", "validation_freq"):
            _require(int(getattr(self, name)) >= 1, name, getattr(self, name), ">= 1")
        _require(self.lr > 0, "lr", self.lr, "> 0")
        _require(0 < self.lr_decay <= 1, "lr_decay", self.lr_decay, "in (0, 1]")
        _require(0 <= self.momentum < 1, "momentum", self.momentum, "in [0, 1)")
        _require(self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")
        _require(self.width_multiplier > 0, "width_multiplier", self.width_multiplier, "> 0")
        if self.shuffle_buffer is not None:
            _require(int(self.shuffle_buffer) >= 1, "shuffle_buffer", self.shuffle_buffer,
                     ">= 1 (or unset: the whole training set)")
        if self.baseline_accuracy is not None:
            _require(0 <= self.baseline_accuracy <= 1, "baseline_accuracy",
                     self.baseline_accuracy, "a fraction in [0, 1] (e.g. 0.7709)")
        check_augmentations(self.augment)
        if self.image_size is not None and self.dataset not in ("image_folder", "imagenet2012"):
            raise ValueError(f"--image_size applies to image_folder and imagenet2012 only; "
                             f"{self.dataset} images have a fixed size.")
        if self.devices and self.strategy not in ("mirrored", "data_parallel"):
            raise ValueError("--devices applies to --strategy mirrored and data_parallel "
                             "only.")
        self.milestone_epochs()
        return self

    def milestone_epochs(self) -> list[int]:
        """The step schedule's milestones as sorted epochs in (0, epochs). An epoch beyond
        the run or a fraction outside (0, 1) is refused; an offset from the end that falls
        before the start (a preset's "-10" in a 5-epoch run) is dropped."""
        epochs = set()
        for entry in self.lr_milestones:
            text = str(entry).strip()
            try:
                if "/" in text:
                    fraction = fractions.Fraction(text)
                    value = int(fraction * self.epochs)
                    inside = 0 < fraction < 1
                else:
                    value = int(text)
                    inside = value < 0 or 0 < value <= self.epochs  # = epochs: no effect
                    value = self.epochs + value if value < 0 else value
            except (ValueError, ZeroDivisionError) as error:
                raise ValueError(f"lr_milestones entry '{entry}' is not an epoch: use an "
                                 "integer ('30'), a fraction of the run ('1/3') or an offset "
                                 "from the end ('-10').") from error
            if not inside:
                raise ValueError(f"lr_milestones entry '{entry}' lies outside the run of "
                                 f"{self.epochs} epochs: give epochs 1..{self.epochs}, "
                                 "fractions between 0 and 1, or offsets from the end.")
            if 0 < value < self.epochs:
                epochs.add(value)
        return sorted(epochs)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown configuration key(s) {unknown}; valid: {sorted(known)}.")
        return cls(**values)

    def differences(self, other: dict) -> dict:
        """{key: (other's value, this value)} for the result-relevant keys that differ. A
        key missing from `other` (a run saved before the setting existed) counts as its
        default, so older runs still resume."""
        mine = self.to_dict()
        defaults = TrainConfig().to_dict()
        other = {**{k: v for k, v in defaults.items() if k not in other}, **other}
        keys = (set(mine) | set(other)) - set(RESUMABLE_DIFFERENCES)
        return {k: (other.get(k), mine.get(k)) for k in sorted(keys) if other.get(k) != mine.get(k)}


def _require(condition: bool, name: str, value, valid: str) -> None:
    if not condition:
        raise ValueError(f"Invalid {name}={value!r}: must be {valid}.")
