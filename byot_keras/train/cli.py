"""`byot-train`: train any zoo model with any method on CIFAR, ImageNet, an image folder
or the embedded digits; resumable, with a report at the end.

    byot-train --preset byot_cifar --data_dir ~/tensorflow_datasets --output_dir runs/r18
    byot-train --preset digits_quick --output_dir runs/digits     # offline, minutes on CPU
    byot-train --list_presets

Flags given on the command line override the preset's values. Re-running the same
command resumes an interrupted run from its last completed epoch.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS

# Flag name -> TrainConfig field of the same name; how each flag's value is converted.
_LIST_FLAGS = ("lr_milestones", "augment", "devices")


def parse_method_options(entries: list[str]) -> dict:
    """["temperature=4", "objective=paper"] -> {"temperature": 4, "objective": "paper"}
    (values are read as JSON when they parse, else kept as strings)."""
    options = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise ValueError(f"--method_options entry '{entry}' is not key=value.")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def flags_for(settings: dict) -> list[str]:
    """byot-train's command-line arguments for TrainConfig settings, the inverse of
    `config_from_flags`: {"epochs": 2, "augment": ["flip"], "cache": False,
    "method_options": {"head": "bottleneck"}} -> ["--epochs", "2", "--augment", "flip",
    "--nocache", "--method_options", 'head="bottleneck"']."""
    arguments = []
    for key, value in settings.items():
        if isinstance(value, bool):
            arguments.append(f"--{key}" if value else f"--no{key}")
            continue
        if isinstance(value, dict):
            value = ",".join(f"{k}={json.dumps(v)}" for k, v in value.items())
        elif isinstance(value, list):
            value = ",".join(map(str, value))
        arguments += [f"--{key}", str(value)]
    return arguments


def config_from_flags(flag_values) -> object:
    """The TrainConfig of the parsed flags: the preset, then the flags given explicitly."""
    from byot_keras.train.config import TrainConfig
    from byot_keras.train.presets import make_config

    overrides = {}
    for field in TrainConfig.__dataclass_fields__:
        if field in ("preset",) or field not in flag_values or not flag_values[field].present:
            continue
        value = flag_values[field].value
        if field == "method_options":
            value = parse_method_options(value)
        elif field in _LIST_FLAGS:
            value = [v for v in value if v]
        overrides[field] = value
    return make_config(flag_values.preset, **overrides)


def presets_table() -> str:
    from byot_keras.train.presets import PRESET_SOURCES, PRESETS

    lines = []
    for name, values in sorted(PRESETS.items()):
        settings = ", ".join(f"{k}={v}" for k, v in values.items())
        lines.append(f"{name}: {PRESET_SOURCES.get(name, '')}\n    {settings}")
    return "\n".join(lines)


def _quiet_absl_logging() -> None:
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # tensorflow-datasets' INFO lines


def main(argv, flag_values=FLAGS):
    del argv
    _quiet_absl_logging()
    if flag_values.list_presets:
        print(presets_table())
        return
    from byot_keras.train.trainer import TrainingDiverged, train

    if flag_values.backend:
        from byot_keras.backend.process import rerun_on_backend

        try:
            # Run as the command: start again on that backend with the same arguments.
            argv = sys.argv if flag_values is FLAGS else None
            rerun_on_backend(flag_values.backend, "byot_keras.train.cli", argv)
        except ValueError as error:
            print(f"byot-train: error: {error}", file=sys.stderr)
            sys.exit(1)
    try:
        config = config_from_flags(flag_values)
        report = train(config)
    except (ValueError, TrainingDiverged) as error:
        print(f"byot-train: error: {error}", file=sys.stderr)
        sys.exit(1)
    print(report["summary"])
    print(json.dumps({"report": os.path.join(config.output_dir, "report.json")}))


def define_flags(flag_values=FLAGS):
    """Defines byot-train's flags on `flag_values`. Called when the command runs, not at
    import: absl flags are global, and two commands imported into one process (e.g. by
    tests) would clash; tests pass their own `absl.flags.FlagValues()`."""
    from byot_keras.backend.process import BACKENDS
    from byot_keras.data.pipeline import AUGMENTATIONS, DATASETS
    from byot_keras.train.config import LR_SCHEDULES, PRECISIONS, STRATEGIES, TrainConfig
    from byot_keras.train.presets import list_presets

    d = TrainConfig()
    define = _Definer(flag_values)
    define.DEFINE_enum("preset", None, list_presets(), "Named settings of a paper (see "
                      "--list_presets); other flags override them.")
    define.DEFINE_bool("list_presets", False, "Print the presets and exit.")
    define.DEFINE_string("model", d.model, "Registry name (zoo.list_models()).")
    define.DEFINE_string("method", d.method, "Training method (byot_keras.losses.list_methods()).")
    define.DEFINE_list("method_options", [], "key=value options for the method / builder, e.g. "
                      "objective=paper,temperature=4.")
    define.DEFINE_float("width_multiplier", d.width_multiplier, "Channel scale (1.0 standard).")
    define.DEFINE_bool("sync_batchnorm", d.sync_batchnorm, "Batch statistics over all replicas.")
    define.DEFINE_enum("dataset", d.dataset, list(DATASETS), "Data set.")
    define.DEFINE_string("data_dir", d.data_dir, "tensorflow-datasets data_dir, or the image "
                        "folder (class sub-folders, or train/ and val/).")
    define.DEFINE_bool("download", d.download, "Let tensorflow-datasets download the data set.")
    define.DEFINE_integer("image_size", d.image_size, "Input size for imagenet2012 / "
                         "image_folder (default 224).")
    define.DEFINE_integer("train_examples", d.train_examples, "Use only the first N training "
                         "examples.")
    define.DEFINE_integer("test_examples", d.test_examples, "Use only the first N test examples.")
    define.DEFINE_float("validation_split", d.validation_split, "Test share of a single image "
                       "folder.")
    define.DEFINE_bool("verify_images", d.verify_images, "Decode every file of an image folder "
                      "before training.")
    define.DEFINE_integer("epochs", d.epochs, "Epochs.")
    define.DEFINE_integer("batch_size", d.batch_size, "Global batch size (over all replicas); for "
                         "--method cskd, class pairs per batch (2x the images).")
    define.DEFINE_float("lr", d.lr, "Peak learning rate (SGD).")
    define.DEFINE_enum("lr_schedule", d.lr_schedule, list(LR_SCHEDULES), "Learning-rate schedule.")
    define.DEFINE_list("lr_milestones", d.lr_milestones, "Epochs where the step schedule "
                      "multiplies the lr by --lr_decay: 30, 1/3 (of the run), -10 (epochs-10).")
    define.DEFINE_float("lr_decay", d.lr_decay, "Step schedule factor.")
    define.DEFINE_float("momentum", d.momentum, "SGD momentum.")
    define.DEFINE_bool("nesterov", d.nesterov, "Nesterov momentum.")
    define.DEFINE_float("weight_decay", d.weight_decay, "L2 weight decay (PyTorch SGD style).")
    define.DEFINE_list("augment", d.augment, f"Augmentations, in order: {', '.join(AUGMENTATIONS)}"
                      " or none.")
    define.DEFINE_bool("cache", d.cache, "Cache decoded training images in memory.")
    define.DEFINE_integer("shuffle_buffer", d.shuffle_buffer, "Shuffle buffer (default: the "
                         "whole training set).")
    define.DEFINE_integer("eval_batch_size", d.eval_batch_size, "Evaluation batch size.")
    define.DEFINE_integer("validation_freq", d.validation_freq, "Validate every N epochs.")
    define.DEFINE_integer("seed", d.seed, "Seed for weights, shuffling and augmentation.")
    define.DEFINE_bool("deterministic", d.deterministic, "Deterministic TensorFlow ops (slower; "
                      "a resumed run then ends with the uninterrupted run's weights).")
    define.DEFINE_enum("precision", d.precision, list(PRECISIONS), "Compute precision: "
                      "mixed_float16 on GPUs, mixed_bfloat16 on TPUs and bfloat16 CPUs "
                      "(variables and the loss stay float32).")
    define.DEFINE_enum("strategy", d.strategy, list(STRATEGIES), "tf.distribute strategy on "
                      "TensorFlow (multiworker reads TF_CONFIG), or data_parallel on JAX "
                      "(keras.distribution.DataParallel); none on torch.")
    define.DEFINE_enum("backend", None, list(BACKENDS), "Keras backend to train on (default: "
                      "KERAS_BACKEND, else Keras' configured one). The tf.data pipeline feeds "
                      "each; the saved model.keras loads and exports on TensorFlow.")
    define.DEFINE_list("devices", d.devices, "Devices for --strategy mirrored (default all GPUs) "
                      "or data_parallel (e.g. cpu:0,cpu:1; default all).")
    define.DEFINE_string("tpu", d.tpu, "TPU name or address for --strategy tpu.")
    define.DEFINE_string("output_dir", d.output_dir, "Run folder: checkpoints, logs, report.")
    define.DEFINE_bool("overwrite", d.overwrite, "Use an --output_dir that holds a different "
                      "run (its run files are deleted) or other files (they are kept).")
    define.DEFINE_enum("verbose", d.verbose, ["auto", "0", "1", "2"], "Keras verbosity (auto: a "
                      "progress bar on a terminal, one line per epoch otherwise).")
    define.DEFINE_float("baseline_accuracy", d.baseline_accuracy, "Accuracy (0-1) of the "
                       "single-exit baseline, drawn in report.png.")
    define.DEFINE_string("baseline_name", d.baseline_name, "Label of the baseline.")


class _Definer:
    """absl's DEFINE_* functions bound to one FlagValues."""

    def __init__(self, flag_values):
        self._flag_values = flag_values

    def __getattr__(self, name):
        define = getattr(flags, name)
        return lambda *args, **kwargs: define(*args, flag_values=self._flag_values, **kwargs)


def run():
    """Console-script entry point (`byot-train`)."""
    from byot_keras import commands

    commands.run("byot-train", __doc__, define_flags, main)


if __name__ == "__main__":
    run()
