"""Runs byot_keras.train.trainer.train in a fresh process for tests/test_train_recipe.py.

    python tests/train_helper.py '{"jobs": {NAME: JOB, ...}}' [--logical-cpus 2] [--float64]

Jobs run one after the other in this process. A JOB is {"config": {TrainConfig fields},
"toy": bool, "kill_after_steps": N, "poison_after_steps": N} (all but config optional).
"toy": train `toy_multi_exit` (below) instead of the zoo model `config.model`. After each
job one line of JSON goes to stdout: {"job": NAME, "status": "ok", "summary", "replicas",
"steps"} (steps: training steps this job ran) or {"job", "status": "error", "type",
"message"}.

--logical-cpus N: split the CPU into N logical devices before TensorFlow starts (only
    one MirroredStrategy can be created per process: see tests/distribute_helper.py).
--float64: keras floatx float64 (tests/distribute_helper.py explains why comparisons
    across replica counts need it).
kill_after_steps: SIGKILL this process after N steps of the job: an abrupt stop with no
    Python clean-up, as a pre-empted machine would stop.
poison_after_steps: after N steps, overwrite a kernel with NaN (a stand-in for a
    diverging run: the next step's loss is NaN).
Between jobs `keras.backend.clear_session()` resets Keras' layer-name counters, so every
job's checkpoint names its arrays like a fresh process would.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
import traceback

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def toy_multi_exit(num_classes: int, input_shape, sync_batchnorm: bool = False,
                   method: str | None = None):
    """A small convolutional multi-exit network with the zoo's output contract (exit_k
    logits, feature_k pooled features), trained by SelfDistillationModel with the
    official BYOT loss (KD on exits 1-2, the feature term with adaptation on exit 1), or
    with `method`'s loss.
    TensorFlow traces it in about a second, where a ResNet-18 takes ten or more: it
    keeps the multi-process tests within their time budget."""
    import keras

    from byot_keras.training import SelfDistillationModel

    inputs = keras.Input(input_shape, name="image")
    x, outputs = inputs, {}
    for k, filters in enumerate((8, 16, 16), start=1):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False,
                                name=f"conv_{k}")(x)
        x = keras.layers.BatchNormalization(synchronized=sync_batchnorm, name=f"bn_{k}")(x)
        x = keras.layers.ReLU(name=f"relu_{k}")(x)
        feature = keras.layers.GlobalAveragePooling2D(name=f"feature_{k}")(x)
        outputs[f"feature_{k}"] = feature
        outputs[f"exit_{k}"] = keras.layers.Dense(num_classes, name=f"exit_{k}")(feature)
    return SelfDistillationModel(keras.Model(inputs, outputs, name="toy_network"),
                                 method=method, name="toy_multi_exit")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    parser.add_argument("--logical-cpus", type=int, default=0)
    parser.add_argument("--float64", action="store_true")
    args = parser.parse_args()

    import tensorflow as tf

    if args.logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)
    import keras
    import numpy as np

    keras.config.disable_traceback_filtering()
    from byot_keras.train import TrainConfig, train
    from byot_keras.train.distribute import select_strategy

    class StepActions(keras.callbacks.Callback):
        """Counts the job's training steps; kills or poisons at the given step."""

        def __init__(self, kill_after: int = 0, poison_after: int = 0):
            super().__init__()
            self.steps, self.kill_after, self.poison_after = 0, kill_after, poison_after

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            if self.steps == self.kill_after:
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            if self.steps == self.poison_after:
                kernel = self.model.trainable_variables[0]
                kernel.assign(np.full(kernel.shape, np.nan, kernel.dtype))

    strategies = {}
    for index, (name, job) in enumerate(json.loads(args.spec)["jobs"].items()):
        if index:
            keras.backend.clear_session()
        if args.float64:
            keras.config.set_floatx("float64")
        config = TrainConfig.from_dict(job["config"])
        if config.strategy not in strategies:
            strategies[config.strategy] = select_strategy(config.strategy, config.devices)
        actions = StepActions(job.get("kill_after_steps", 0), job.get("poison_after_steps", 0))
        model_fn = None
        if job.get("toy"):
            model_fn = functools.partial(toy_multi_exit, sync_batchnorm=config.sync_batchnorm)
        try:
            report = train(config, strategy=strategies[config.strategy], callbacks=[actions],
                           model_fn=model_fn)
            result = {"status": "ok", "summary": report["summary"],
                      "replicas": report["training"]["replicas"], "steps": actions.steps}
        except Exception as error:  # reported to the test, which decides
            traceback.print_exc()
            result = {"status": "error", "type": type(error).__name__,
                      "message": str(error)[:2000]}
        print(json.dumps({"job": name, **result}), flush=True)


if __name__ == "__main__":
    main()
