"""Fine-tuning a tf_keras twin with the trained model's own self-distillation loss.

The loss objects of `byot_keras.losses` are written in `keras.ops`; with the TensorFlow
backend those ops run on the tf tensors of a tf_keras `train_step`, so the loss math is
reused as is (no second copy): the trainer calls `model.objective.terms(...)` on the
twin's output dict. The training model's adaptation layers (`adaptation_k`) come along
as tf_keras Dense layers, so the feature term keeps its trained adapters.

Example:
    >>> import numpy as np
    >>> from byot_keras import zoo
    >>> from byot_keras.compress import finetune, twin
    >>> model = zoo.alexnet_byot(num_classes=10, width_multiplier=0.125)
    >>> trainer = finetune.distillation_trainer(twin.build_twin(model).network, model)
    >>> images, labels = np.zeros((4, 32, 32, 3), "float32"), np.arange(4)
    >>> history = finetune.fit(trainer, images, labels, epochs=1, verbose=0)
    >>> sorted(history)
    ['exit_1_accuracy', 'exit_2_accuracy', 'exit_3_accuracy', 'loss']
"""

from __future__ import annotations

import functools

import numpy as np

from byot_keras.compress import extra


def training_progress(model) -> dict:
    """Where a scheduled loss (e.g. MSD's feature weight) stood when training ended:
    fine-tuning continues from the end of the schedule. Empty for unscheduled losses."""
    if not getattr(model.objective, "scheduled", False):
        return {}
    return {"epoch": float(np.asarray(model.schedule_epoch)),
            "total_epochs": float(np.asarray(model.schedule_total_epochs))}


@functools.cache
def _trainer_class():
    import tensorflow as tf

    tf_keras = extra.tf_keras()

    class DistillationTrainer(tf_keras.Model):
        """Trains a multi-exit tf_keras network with a byot_keras loss object."""

        def __init__(self, network, objective, exit_names, num_classes, adapters=None,
                     progress=None, **kwargs):
            super().__init__(**kwargs)
            self.network = network
            self.objective = objective
            self.exit_names = list(exit_names)
            self.num_classes = int(num_classes)
            adapters = dict(adapters or {})
            self.adapter_exits = sorted(adapters)
            self.adapter_layers = [adapters[k] for k in self.adapter_exits]  # trained too
            self.progress = dict(progress or {})
            self.loss_tracker = tf_keras.metrics.Mean(name="loss")
            self.exit_accuracy = [
                tf_keras.metrics.SparseCategoricalAccuracy(name=f"{name}_accuracy")
                for name in self.exit_names
            ]

        @property
        def metrics(self):
            return [self.loss_tracker, *self.exit_accuracy]

        def call(self, inputs, training=None):
            return self.network(inputs, training=training)

        def _loss_and_outputs(self, x, y, training):
            outputs = dict(self.network(x, training=training))
            if training:
                for k, adapter in zip(self.adapter_exits, self.adapter_layers):
                    outputs[f"feature_{k}"] = adapter(outputs[f"feature_{k}"])
            terms = self.objective.terms(y, outputs, training=training, **self.progress)
            loss = terms["loss"]
            if self.network.losses:
                loss = loss + tf.add_n(self.network.losses)
            return loss, outputs

        def _update_metrics(self, loss, y, outputs):
            from byot_keras.losses import sparse_labels

            self.loss_tracker.update_state(loss)
            labels = sparse_labels(y, self.num_classes)
            for metric, name in zip(self.exit_accuracy, self.exit_names):
                metric.update_state(labels, outputs[name])
            return {m.name: m.result() for m in self.metrics}

        def train_step(self, data):
            x, y = data[0], data[1]
            with tf.GradientTape() as tape:
                loss, outputs = self._loss_and_outputs(x, y, training=True)
            variables = self.trainable_variables
            gradients = tape.gradient(loss, variables)
            self.optimizer.apply_gradients(
                [(g, v) for g, v in zip(gradients, variables) if g is not None])
            return self._update_metrics(loss, y, outputs)

        def test_step(self, data):
            x, y = data[0], data[1]
            loss, outputs = self._loss_and_outputs(x, y, training=False)
            return self._update_metrics(loss, y, outputs)

    return DistillationTrainer


def distillation_trainer(network, model, adapters: dict | None = None):
    """A tf_keras model that trains the tf_keras `network` (a twin, quantized or pruned)
    with the loss of the Keras 3 training `model` (`model.objective`), its adaptation
    layers (default: `twin.adapter_twins(model)`) and, for scheduled losses, the
    schedule's final state."""
    from byot_keras.compress.twin import adapter_twins

    if adapters is None:
        adapters = adapter_twins(model)
    return _trainer_class()(network, model.objective, model.exit_names, model.num_classes,
                            adapters=adapters, progress=training_progress(model),
                            name=f"{model.name}_finetune")


def fit(trainer, images: np.ndarray, labels: np.ndarray, *, epochs: int = 1,
        batch_size: int = 64, learning_rate: float = 0.005, callbacks=(), seed: int = 0,
        verbose="auto") -> dict:
    """Fine-tunes with SGD (momentum 0.9, cosine decay to 0); returns the history."""
    tf_keras = extra.tf_keras()
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}.")
    if len(images) != len(labels) or not len(images):
        raise ValueError(f"Got {len(images)} images and {len(labels)} labels; give the same "
                         "non-zero number of each.")
    tf_keras.utils.set_random_seed(seed)
    steps = epochs * int(np.ceil(len(images) / batch_size))
    schedule = tf_keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    trainer.compile(optimizer=tf_keras.optimizers.SGD(schedule, momentum=0.9))
    history = trainer.fit(images, labels, batch_size=batch_size, epochs=epochs,
                          callbacks=list(callbacks), verbose=verbose)
    return {name: [float(v) for v in values] for name, values in history.history.items()}


def compression_record(method: str, model, twin_result, images: np.ndarray, *, epochs: int,
                       batch_size: int, learning_rate: float, history, eval_data=None,
                       **details) -> dict:
    """The manifest's `compression` entry shared by QAT and pruning: the tool, the twin's
    match to the Keras 3 model, the fine-tuning run, `details` of the method, and (with
    `eval_data`) the float Keras model's top-1 per exit for comparison."""
    tfmot = extra.tfmot()
    record = {
        "method": method,
        "tool": f"tensorflow-model-optimization {tfmot.__version__}",
        "builder": twin_result.builder,
        "twin_max_abs_diff": {k: v["max_abs_diff"] for k, v in
                              twin_result.differences.items()},
        **details,
        "finetune": {"examples": int(len(images)), "epochs": epochs,
                     "batch_size": batch_size, "learning_rate": learning_rate,
                     "loss": repr(model.objective), "history": history},
    }
    if eval_data is not None:
        logits = model.predict(eval_data[0], verbose=0)
        record["float_keras_accuracy"] = {
            name: float(np.mean(np.argmax(logits[name], -1) == eval_data[1]))
            for name in model.exit_names}
    return record
