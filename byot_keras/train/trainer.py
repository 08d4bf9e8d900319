"""The training loop of `byot-train`: data, model, strategy, checkpoints, resume, report.

`train(config)` runs one `TrainConfig` to the end:

- every setting is checked before training starts (names, data, batch vs replicas,
  an output folder that holds a different run);
- the model is built and compiled inside the `tf.distribute` strategy's scope;
  `config.batch_size` is the *global* batch, split over the replicas; the loss is scaled
  per replica by the model (see `SelfDistillationModel.compute_loss`);
- after every epoch the weights and the optimizer state are saved atomically to
  `<output_dir>/checkpoints/`; a new invocation with the same configuration resumes from
  the last one. Each epoch's batches depend only on `(seed, epoch)`
  (byot_keras.data.pipeline), so with `deterministic=True` a run killed and resumed ends
  with the same weights as an uninterrupted one. The interrupted epoch is redone from
  its start (work since the last epoch boundary is recomputed, not kept);
- a non-finite loss stops the run with `TrainingDiverged`; the last good checkpoint is
  kept (the diverged epoch is not saved);
- at the end: `model.keras`, `report.json`, `report.png`, `log.csv`, TensorBoard logs.
"""

from __future__ import annotations

import contextlib
import os
import sys

import keras
import numpy as np

from byot_keras.saving import write_json_atomically
from byot_keras.train.checkpoints import (
    EpochCheckpoint,
    NonFiniteLossGuard,
    read_csv_log,
    read_state,
    restore_checkpoint,
    trim_csv_log,
)
from byot_keras.train.config import TrainConfig
from byot_keras.train.distribute import (
    check_global_batch,
    select_strategy,
    work_around_keras_multiworker_bugs,
    worker_role,
)
from byot_keras.train.run_folder import (
    CHECKPOINT_DIR,
    COMMAND,
    CONFIG_FILE,
    LOG_DIR,
    MODEL_FILE,
    WORKERS_DIR,
    WRITTEN_BY,
    check_run_dir,
    run_config_record,
)

EARLY_EXIT_THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.99)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ---------------------------------------------------------------------------------------
# Model and optimizer


def known_methods() -> list[str]:
    """The training methods `zoo.create_model(method=...)` accepts."""
    from byot_keras import losses

    list_methods = getattr(losses, "list_methods", None)
    return list(list_methods()) if list_methods else ["byot"]


def check_names(config: TrainConfig, registry: bool = True) -> None:
    """Unknown model (when built from the `registry`) or method names raise before
    anything is loaded."""
    from byot_keras import zoo

    if registry:
        zoo.get_model_builder(config.model)
    methods = known_methods()
    if config.method not in methods:
        raise ValueError(f"Unknown method '{config.method}'. Valid: {', '.join(methods)}.")


def build_model(config: TrainConfig, num_classes: int, input_shape: tuple) -> keras.Model:
    """The registry model with the configuration's options (call inside the scope)."""
    from byot_keras import zoo

    options = dict(num_classes=num_classes, input_shape=tuple(input_shape),
                   width_multiplier=config.width_multiplier)
    if config.sync_batchnorm:
        options["sync_batchnorm"] = True
    if config.method != "byot":  # the default: leaves builders without `method=` working
        options["method"] = config.method
    options.update(config.method_options)
    return zoo.create_model(config.model, **options)


def add_weight_decay(model: keras.Model, weight_decay: float) -> None:
    """L2 weight decay coupled to the gradient, as PyTorch's SGD(weight_decay=wd) applies
    it (what the papers' numbers used): a loss of wd/2 * ||w||^2 on every trainable
    variable, so each gradient gains wd * w before momentum. (Keras' own
    `weight_decay=` is decoupled, applied outside the momentum, a weaker decay.)
    The loss is part of `model.losses`, which the model adds and scales per replica."""
    if weight_decay <= 0:
        return
    regularizer = keras.regularizers.L2(weight_decay / 2)
    for variable in model.trainable_variables:
        variable.regularizer = regularizer


def learning_rate(config: TrainConfig, steps_per_epoch: int):
    """The schedule over optimizer steps: "step" (x lr_decay at each milestone epoch),
    "cosine" (to 0 over the run) or "constant"."""
    if config.lr_schedule == "constant":
        return config.lr
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.lr, config.epochs * steps_per_epoch)
    milestones = config.milestone_epochs()
    if not milestones:
        return config.lr
    # PiecewiseConstantDecay switches when step > boundary; the optimizer passes the
    # number of steps already taken, so the first step of epoch e sees e * steps.
    boundaries = [e * steps_per_epoch - 1 for e in milestones]
    values = [config.lr * config.lr_decay ** k for k in range(len(milestones) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    return keras.optimizers.SGD(learning_rate(config, steps_per_epoch),
                                momentum=config.momentum, nesterov=config.nesterov)


# ---------------------------------------------------------------------------------------
# The run


def train(config: TrainConfig, *, strategy=None, callbacks=(), model_fn=None) -> dict:
    """Trains (or resumes) `config` to the end; returns the report (also written to
    `<output_dir>/report.json`).

    Args:
        config: the run.
        strategy: a `tf.distribute` strategy to use instead of `config.strategy`'s.
        callbacks: more Keras callbacks.
        model_fn: `model_fn(num_classes=..., input_shape=...)` builds the model instead of
            the zoo registry: any model with `SelfDistillationModel`'s interface (outputs
            `exit_k` logits, `exit_names`, `exit_costs()`); `config.model` then only
            names it.

    Raises ValueError for bad settings or data (before training), TrainingDiverged when
    the loss becomes non-finite.

    Example:
        >>> from byot_keras.train import make_config
        >>> config = make_config("digits_quick", model="alexnet_byot", epochs=1,
        ...                      width_multiplier=0.125, train_examples=128,
        ...                      test_examples=64, output_dir="run", verbose="0")
        >>> report = train(config)  # writes the run into the folder "run"
        >>> sorted(report["accuracy"])
        ['ensemble', 'exit_1', 'exit_2', 'exit_3']
    """
    config.validate()
    check_names(config, registry=model_fn is None)
    if strategy is None and config.strategy not in ("default", "data_parallel") and (
            keras.backend.backend() != "tensorflow"):
        raise ValueError(
            f"--strategy {config.strategy} is a tf.distribute strategy, for the TensorFlow "
            f"backend only; Keras runs on {keras.backend.backend()} here. On JAX use "
            "--strategy data_parallel (keras.distribution.DataParallel); on torch Keras "
            "has no data parallelism: train on one device (--strategy default).")
    if strategy is None:  # first: collective ops must be configured before other TF work
        strategy = select_strategy(config.strategy, config.devices, config.tpu)
    # keras.distribution must be current for the whole run (building and fit); a
    # tf.distribute strategy only needs its scope while the model is built.
    from byot_keras.backend.distribution import DataParallelRun

    whole_run = isinstance(strategy, DataParallelRun)
    with strategy.scope() if whole_run else contextlib.nullcontext():
        return _train(config, strategy, callbacks, model_fn)


def _train(config: TrainConfig, strategy, callbacks, model_fn) -> dict:
    replicas = int(strategy.num_replicas_in_sync)
    check_global_batch(config.batch_size, replicas)
    is_chief, worker = worker_role(strategy)
    # Workers other than the chief keep their own folder: they may not share a disk.
    run_dir = config.output_dir if is_chief else os.path.join(config.output_dir, WORKERS_DIR,
                                                              worker)
    check_run_dir(run_dir, config)

    import tensorflow as tf

    from byot_keras.data import pipeline

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        # Process-wide, and TensorFlow has no public switch back: later training in
        # the same process (e.g. a test session) runs deterministic ops too.
        tf.config.experimental.enable_op_determinism()
    source = pipeline.load_source(
        config.dataset, config.data_dir, download=config.download, image_size=config.image_size,
        train_examples=config.train_examples, test_examples=config.test_examples,
        validation_split=config.validation_split, seed=config.seed,
        verify_images=config.verify_images)
    steps = pipeline.steps_per_epoch(source.num_train, config.batch_size)

    with strategy.scope(), dtype_policy(config.precision):
        if model_fn is None:
            model = build_model(config, source.num_classes, source.image_shape)
        else:
            model = model_fn(num_classes=source.num_classes, input_shape=source.image_shape)
        add_weight_decay(model, config.weight_decay)
        model.compile(optimizer=make_optimizer(config, steps))
        model.optimizer.build(model.trainable_variables)
        multiworker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        if multiworker:
            work_around_keras_multiworker_bugs(model)
        checkpoint_dir = os.path.join(run_dir, CHECKPOINT_DIR)
        state = restore_checkpoint(model, checkpoint_dir)
    initial_epoch = int(state["epoch"])
    if initial_epoch:
        state["resumed"] = [*state.get("resumed", []), initial_epoch]
    write_json_atomically(run_config_record(config), os.path.join(run_dir, CONFIG_FILE))

    dtype = keras.config.floatx()
    train_data = pipeline.training_dataset(
        source, config.batch_size, seed=config.seed, augment=config.augment,
        epochs=config.epochs, initial_epoch=initial_epoch, cache=config.cache,
        shuffle_buffer=config.shuffle_buffer, dtype=dtype,
        class_pairs=getattr(model, "paired_batches", False))
    eval_data = pipeline.evaluation_dataset(source, config.eval_batch_size, dtype=dtype)

    guard = NonFiniteLossGuard()
    csv_path = os.path.join(run_dir, "log.csv")
    trim_csv_log(csv_path, initial_epoch)
    all_callbacks = [
        guard,
        keras.callbacks.CSVLogger(csv_path, append=True),
        EpochCheckpoint(checkpoint_dir, guard, state),
        *callbacks,
    ]
    verbose = _verbosity(config.verbose) if is_chief else 0
    if _tensorboard_installed():
        all_callbacks.insert(1, keras.callbacks.TensorBoard(os.path.join(run_dir, LOG_DIR),
                                                            write_graph=False))
    elif verbose:
        print("TensorBoard logs skipped: the tensorboard package is not installed.")
    if initial_epoch and verbose:
        print(f"Resuming {run_dir} after epoch {initial_epoch} of {config.epochs}.")
    if initial_epoch < config.epochs:
        model.fit(train_data, epochs=config.epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=steps, validation_data=eval_data,
                  validation_freq=config.validation_freq, callbacks=all_callbacks,
                  shuffle=False, verbose=verbose)  # the pipeline shuffles
    if guard.failure:
        failure = guard.failure
        kept = read_state(checkpoint_dir).get("epoch", 0)
        raise TrainingDiverged(
            f"The training loss became {failure['loss']} at epoch {failure['epoch']}, step "
            f"{failure['step']}: training stopped. The last good checkpoint (after epoch "
            f"{kept}) is kept in '{checkpoint_dir}'. Try a lower --lr (now {config.lr}) in a "
            "new --output_dir, and check the data for NaN/inf values.")
    state = read_state(checkpoint_dir)
    return finish(model, config, source, eval_data, run_dir, strategy, state,
                  multiworker=multiworker)


@contextlib.contextmanager
def dtype_policy(name: str):
    """Builds the model under Keras' dtype policy `name` ("float32", "mixed_float16",
    "mixed_bfloat16"); the global policy is restored afterwards. A mixed_float16 model's
    optimizer is wrapped in a LossScaleOptimizer by `compile`."""
    if name == "float32":  # the default: keep the global policy (and floatx) as set
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _tensorboard_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _verbosity(verbose: str) -> int:
    if str(verbose) == "auto":
        return 1 if sys.stdout.isatty() else 2  # a progress bar only on a terminal
    return int(verbose)


def evaluate_exits(model: keras.Model, eval_data, *, early_exit: bool = True) -> dict:
    """Per-exit and ensemble (mean of the exits' logits) top-1 accuracy of `model` on the
    batched `(images, labels)` in `eval_data`, and the early-exit table.

    With `early_exit` the logits are gathered on this process (`predict`) and both are
    computed from them; otherwise (e.g. under MultiWorkerMirroredStrategy, whose
    `predict` does not return every worker's logits) `evaluate`'s metrics are used and
    the table is None."""
    if not early_exit:
        metrics = model.evaluate(eval_data, verbose=0, return_dict=True)
        accuracy = {name: float(metrics[f"{name}_accuracy"]) for name in model.exit_names}
        accuracy["ensemble"] = float(metrics["ensemble_accuracy"])
        return {"accuracy": accuracy, "early_exit": None}
    from byot_keras.inference import early_exit_curve

    logits = model.predict(eval_data, verbose=0)
    labels = np.concatenate([y for _, y in eval_data.as_numpy_iterator()])
    accuracy = {name: float(np.mean(np.argmax(logits[name], -1) == labels))
                for name in model.exit_names}
    ensemble = np.mean([logits[name] for name in model.exit_names], axis=0)
    accuracy["ensemble"] = float(np.mean(np.argmax(ensemble, -1) == labels))
    costs = [c["cascade_macs"] for c in model.exit_costs()]
    curve = early_exit_curve(logits, labels, list(EARLY_EXIT_THRESHOLDS), answer_costs=costs)
    return {"accuracy": accuracy, "early_exit": curve}


def finish(model, config: TrainConfig, source, eval_data, run_dir: str, strategy, state: dict,
           multiworker: bool = False) -> dict:
    """Final evaluation, model.keras, report.json / report.png; returns the report."""
    from byot_keras.folders import file_sha256
    from byot_keras.saving import save_model_atomically
    from byot_keras.train import report as report_lib

    # The early-exit table needs every logit on one process: not under multiworker. ONE's
    # exits are side-by-side branches, not a chain an image could leave early.
    chain = getattr(model, "exits_form_a_chain", True)
    evaluation = evaluate_exits(model, eval_data, early_exit=not multiworker and chain)
    if hasattr(model, "input_normalization"):  # saved with it: exports build it in
        model.input_normalization = source.normalization
    model_file = save_model_atomically(model, os.path.join(run_dir, MODEL_FILE))
    training = {
        "epochs_completed": int(state.get("epoch", 0)),
        "train_seconds": round(float(state.get("train_seconds", 0.0)), 1),
        "resumed_after_epochs": state.get("resumed", []),
        "steps_per_epoch": source.num_train // config.batch_size,
        "global_batch_size": config.batch_size,
        # CS-KD: a batch is batch_size class pairs
        "images_per_step": config.batch_size * (2 if getattr(model, "paired_batches", False)
                                                else 1),
        "replicas": int(strategy.num_replicas_in_sync),
        "strategy": config.strategy,
        "history": read_csv_log(os.path.join(run_dir, "log.csv")),
    }
    report = report_lib.build_report(
        model=model, config=config.to_dict(), data=source.describe(), evaluation=evaluation,
        training=training, model_file=model_file)
    report[WRITTEN_BY] = COMMAND
    # A later run replaces model.keras only while it is still this file.
    report["file_sha256"] = {MODEL_FILE: file_sha256(model_file)}
    report_lib.write_report(report, run_dir)
    return report
