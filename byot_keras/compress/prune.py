"""Magnitude pruning of a trained multi-exit model with tfmot: wrap the kernels, fine-tune
with the model's own self-distillation loss while a polynomial schedule raises the
sparsity to its target, strip the wrappers, export.

Pruned are the kernels of every Conv2D (3x3, 1x1 and grouped) and Dense layer, each to
the target sparsity (the smallest-magnitude weights become exact zeros). Depthwise
kernels are left dense (tfmot does not prune them; they are a tiny share of the
weights). Zeros do not make a .tflite file smaller by themselves, they make it compress:
the manifest records every file's gzip size, what an app download or an APK costs.

Example:
    >>> from byot_keras import zoo
    >>> from byot_keras.compress import prune, twin
    >>> model = zoo.alexnet_byot(num_classes=10, width_multiplier=0.125)
    >>> network = prune.prune_network(twin.build_twin(model).network, 0.5, end_step=100)
    >>> [layer.name for layer in network.layers][1:4]  # kernels wrapped for pruning
    ['conv1_pad', 'prune_low_magnitude_conv1', 'relu1']
"""

from __future__ import annotations

import numpy as np

from byot_keras.compress import extra
from byot_keras.options import POSITIVE

PRUNED_LAYERS = ("Conv2D", "Dense")
END_FRACTION = 2 / 3  # the target is reached after this share of the fine-tuning steps
UPDATES = 8  # sparsity steps on the way to the target


def pruning_schedule(total_steps: int, target_sparsity: float) -> dict:
    """The PolynomialDecay schedule's arguments: sparsity 0 -> target over the first
    two thirds of `total_steps`, raised every `frequency` steps, ending on an update
    step (tfmot only prunes on steps where (step - begin) % frequency == 0)."""
    if not 0.0 < target_sparsity < 1.0:
        raise ValueError(f"target_sparsity must be in (0, 1), got {target_sparsity}.")
    if total_steps < 2:
        raise ValueError(f"Pruning needs at least 2 fine-tuning steps, got {total_steps}: "
                         "use more examples or epochs, or a smaller batch size.")
    end = max(1, int(total_steps * END_FRACTION))
    frequency = max(1, end // UPDATES)
    end = frequency * (end // frequency)
    return {"initial_sparsity": 0.0, "final_sparsity": float(target_sparsity),
            "begin_step": 0, "end_step": end, "frequency": frequency}


def prune_network(network, target_sparsity: float, *, end_step: int, frequency: int = 1):
    """`network` with every Conv2D/Dense layer wrapped for magnitude pruning (tfmot's
    `prune_low_magnitude`), sparsity rising polynomially from 0 at step 0 to
    `target_sparsity` at `end_step`. Train it with `UpdatePruningStep` among the callbacks
    (`magnitude_pruning` does), then `strip`."""
    tfmot = extra.tfmot()
    tf_keras = extra.tf_keras()
    sparsity = tfmot.sparsity.keras
    schedule = sparsity.PolynomialDecay(initial_sparsity=0.0,
                                        final_sparsity=float(target_sparsity),
                                        begin_step=0, end_step=int(end_step),
                                        frequency=int(frequency))

    def wrap(layer):
        if type(layer).__name__ in PRUNED_LAYERS:
            return sparsity.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer  # shared, weights and all

    return tf_keras.models.clone_model(network, clone_function=wrap)


def strip(network):
    """The pruned network without tfmot's wrappers: plain layers, kernels with zeros.

    A fresh copy: `strip_pruning` reuses the wrapped layers, which then belong to several
    graphs (the twin's too), and cutting exit models out of those is ambiguous."""
    tf_keras = extra.tf_keras()
    stripped = extra.tfmot().sparsity.keras.strip_pruning(network)
    copy = tf_keras.models.clone_model(stripped)
    copy.set_weights(stripped.get_weights())
    return copy


def kernel_sparsity(network) -> dict[str, float]:
    """Fraction of exact zeros in each Conv2D/Dense kernel of a (stripped) network."""
    result = {}
    for layer in network.layers:
        if type(layer).__name__ in PRUNED_LAYERS:
            kernel = np.asarray(layer.kernel)
            result[layer.name] = float(np.mean(kernel == 0))
    return result


def overall_sparsity(network) -> float:
    """Zeros over all Conv2D/Dense kernel weights of a (stripped) network."""
    zeros = total = 0
    for layer in network.layers:
        if type(layer).__name__ in PRUNED_LAYERS:
            kernel = np.asarray(layer.kernel)
            zeros += int(np.sum(kernel == 0))
            total += kernel.size
    return zeros / max(total, 1)


def magnitude_pruning(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    output_dir: str,
    *,
    target_sparsity: float = 0.5,
    model_name: str | None = None,
    builder_kwargs: dict | None = None,
    epochs: int = 2,
    batch_size: int = 64,
    learning_rate: float = 0.005,
    quantizations=("float32",),
    eval_data: tuple[np.ndarray, np.ndarray] | None = None,
    representative_data: np.ndarray | None = None,
    class_names=None,
    normalization: dict | None = None,
    int8_io: bool = False,
    cascade: bool = True,
    seed: int = 0,
    verbose="auto",
    allow_other_files: bool = False,
) -> dict:
    """Prunes a trained Keras 3 multi-exit `model` to `target_sparsity` and exports it.

    The twin (`twin.build_twin`) is wrapped (`prune_network`), fine-tuned on
    `(images, labels)` with the model's own loss while the sparsity rises
    (`pruning_schedule`), stripped, and written to `output_dir` like
    `byot_keras.export.export_tflite` (with `quantizations`, e.g. float32 and int8 of the
    pruned weights). The manifest's `compression` entry holds the schedule, the measured
    kernel sparsity, and the float model's per-exit accuracy on `eval_data`; every file
    entry has `gzip_bytes`.

    `allow_other_files`: as in `export_tflite`; the folder is checked before any work.

    Returns:
        The manifest.
    """
    from byot_keras.compress import export, finetune, twin
    from byot_keras.export.cascade import exit_sections as cascade_sections

    tfmot = extra.tfmot()
    if not 0.0 < target_sparsity < 1.0:
        raise ValueError(f"target_sparsity must be in (0, 1), got {target_sparsity}.")
    POSITIVE.check("learning_rate", learning_rate)
    export.check_output_folder(output_dir, model.num_exits, quantizations, cascade,
                               allow_other_files)
    # Where the cascade cuts the trunk: the model's recorded structure (the twin is the
    # same network, so the same sections).
    sections = cascade_sections(model) if cascade else None
    steps = epochs * int(np.ceil(len(images) / batch_size))
    schedule = pruning_schedule(steps, target_sparsity)
    check = representative_data if representative_data is not None else images
    twin_result = twin.build_twin(model, model_name, check_images=np.asarray(check[:32]),
                                  **(builder_kwargs or {}))
    wrapped = prune_network(twin_result.network, target_sparsity, end_step=schedule["end_step"],
                            frequency=schedule["frequency"])
    trainer = finetune.distillation_trainer(wrapped, model)
    history = finetune.fit(trainer, images, labels, epochs=epochs, batch_size=batch_size,
                           learning_rate=learning_rate, seed=seed, verbose=verbose,
                           callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    pruned = strip(wrapped)
    per_layer = kernel_sparsity(pruned)
    compression = finetune.compression_record(
        "magnitude_pruning", model, twin_result, images, epochs=epochs,
        batch_size=batch_size, learning_rate=learning_rate, history=history,
        eval_data=eval_data, target_sparsity=float(target_sparsity),
        schedule={"kind": "PolynomialDecay", **schedule, "total_steps": steps},
        pruned_layers=len(per_layer), kernel_sparsity=overall_sparsity(pruned),
        min_layer_sparsity=min(per_layer.values()) if per_layer else 0.0)
    return export.export_network(
        pruned, output_dir, model_name=model.name, costs=model.exit_costs(),
        sections=sections,
        quantizations=quantizations, representative_data=representative_data,
        eval_data=eval_data, labels=class_names,
        normalization=(normalization if normalization is not None
                       else getattr(model, "input_normalization", None)),
        int8_io=int8_io, cascade=cascade, extra_manifest={"compression": compression},
        allow_other_files=allow_other_files,
    )
