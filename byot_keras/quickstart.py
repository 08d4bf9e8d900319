"""The main job on the embedded offline default: train a small multi-exit ResNet with
BYOT on scikit-learn's digits, then print every exit's accuracy and cost, the ensemble's,
and the early-exit trade-off. Runs with no network: `byot-quickstart`.
"""

from __future__ import annotations

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
COMMAND = "byot-quickstart"
MODEL_FILE = "model.keras"
RESULTS_FILE = "results.json"


def check_output_dir(output_dir: str, overwrite: bool = False) -> None:
    """The quickstart writes `model.keras` and `results.json`: it replaces those of an
    earlier quickstart, and refuses a folder holding anything else unless `overwrite`
    (the other files are then kept). A `model.keras` it did not write is never replaced:
    nor one put in place of an earlier quickstart's (its SHA-256, which results.json
    records, differs)."""
    from byot_keras.folders import (
        changed_since_written,
        check_output_folder,
        recorded_hashes,
        require_folder_path,
    )

    path = require_folder_path(output_dir)
    results = _quickstart_results(path)
    owned, changed = (), []
    if results is not None:
        owned = (MODEL_FILE, RESULTS_FILE)
        changed = changed_since_written(path, [MODEL_FILE], RESULTS_FILE,
                                        recorded_hashes(results.get("file_sha256")))
    check_output_folder(path, owned=owned, writes=(MODEL_FILE, RESULTS_FILE),
                        allow_others=overwrite, command=COMMAND, allow_flag="overwrite",
                        changed=changed, record=RESULTS_FILE)


def _quickstart_results(folder: str) -> dict | None:
    """The folder's results.json if an earlier quickstart wrote it, else None."""
    try:
        with open(os.path.join(folder, RESULTS_FILE)) as f:
            results = json.load(f)
    except (OSError, ValueError):
        return None
    if isinstance(results, dict) and (results.get("written_by") == COMMAND or {
            "model", "objective", "exits", "early_exit", "model_file"} <= set(results)):
        return results
    return None


def check_thresholds(thresholds) -> list[float]:
    """Confidence thresholds as floats in [0, 1]; else a ValueError naming the value."""
    values = []
    for entry in thresholds:
        try:
            value = float(entry)
        except (TypeError, ValueError):
            value = None
        if value is None or not 0.0 <= value <= 1.0:
            raise ValueError(f"--thresholds entry {entry!r} is not a confidence: give "
                             "numbers between 0 and 1, e.g. 0.5,0.9.")
        values.append(value)
    if not values:
        raise ValueError("--thresholds is empty: give at least one confidence, e.g. 0.9.")
    return values


def train_and_report(model_name: str, width_multiplier: float, objective: str, epochs: int,
                     batch_size: int, learning_rate: float, seed: int, output_dir: str,
                     thresholds: list[float], verbose="auto", overwrite: bool = False
                     ) -> dict:
    """Trains on digits, saves `output_dir/model.keras`, returns (and writes) the results.
    The folder is checked first (`check_output_dir`)."""
    import keras
    import numpy as np

    from byot_keras import zoo
    from byot_keras.data import DIGITS_NORMALIZATION, load_digits
    from byot_keras.folders import file_sha256
    from byot_keras.inference import early_exit_curve
    from byot_keras.options import POSITIVE
    from byot_keras.saving import save_model_atomically, write_text_atomically

    thresholds = check_thresholds(thresholds)
    POSITIVE.check("learning_rate", learning_rate)  # before the training it would spoil
    check_output_dir(output_dir, overwrite)
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = load_digits(seed=seed)
    model = zoo.create_model(model_name, num_classes=10, input_shape=x_train.shape[1:],
                             width_multiplier=width_multiplier, objective=objective)
    model.input_normalization = DIGITS_NORMALIZATION  # what load_digits did to the pixels
    steps = epochs * int(np.ceil(len(x_train) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9))
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs,
              validation_data=(x_test, y_test), verbose=verbose)
    train_seconds = time.perf_counter() - start
    metrics = model.evaluate(x_test, y_test, batch_size=256, verbose=0, return_dict=True)
    costs = model.exit_costs()
    logits = model.predict(x_test, batch_size=256, verbose=0)
    curve = early_exit_curve(logits, y_test, thresholds,
                             answer_costs=[c["cascade_macs"] for c in costs])
    results = {
        "written_by": COMMAND,
        "files": [MODEL_FILE, RESULTS_FILE],
        "model": model_name,
        "width_multiplier": width_multiplier,
        "objective": objective,
        "epochs": epochs,
        "train_seconds": round(train_seconds, 1),
        "test_examples": int(len(x_test)),
        "exits": [{**c, "accuracy": metrics[f"{c['exit']}_accuracy"]} for c in costs],
        "ensemble_accuracy": metrics["ensemble_accuracy"],
        "early_exit": curve,
    }
    check_output_dir(output_dir, overwrite)  # again: the folder may have changed meanwhile
    results["model_file"] = save_model_atomically(model, os.path.join(output_dir, MODEL_FILE))
    # What a later quickstart checks before replacing the file: still the one written here?
    results["file_sha256"] = {MODEL_FILE: file_sha256(results["model_file"])}
    write_text_atomically(os.path.join(output_dir, RESULTS_FILE),
                          json.dumps(results, indent=2))
    return results


def format_report(results: dict) -> str:
    lines = [
        f"{results['model']} (width x{results['width_multiplier']}, {results['objective']} "
        f"BYOT loss), {results['epochs']} epochs on digits in {results['train_seconds']} s; "
        f"test accuracy on {results['test_examples']} images:",
        f"{'exit':<10}{'params':>12}{'MFLOPs':>10}{'accuracy':>10}",
    ]
    for e in results["exits"]:
        lines.append(f"{e['exit']:<10}{e['params']:>12,}{e['flops'] / 1e6:>10.1f}"
                     f"{e['accuracy']:>10.4f}")
    lines.append(f"{'ensemble':<10}{'':>12}{'':>10}{results['ensemble_accuracy']:>10.4f}")
    lines.append("early exit (answer at the first exit whose max softmax >= threshold):")
    lines.append(f"{'threshold':<10}{'accuracy':>10}{'mean exit':>11}{'MFLOPs/img':>12}")
    for row in results["early_exit"]:
        lines.append(f"{row['threshold']:<10}{row['accuracy']:>10.4f}{row['mean_exit']:>11.2f}"
                     f"{2 * row['mean_cost'] / 1e6:>12.1f}")
    lines.append(f"saved {results['model_file']}")
    return "\n".join(lines)


def main(argv):
    del argv
    results = train_and_report(
        FLAGS.model, FLAGS.width_multiplier, FLAGS.objective, FLAGS.epochs, FLAGS.batch_size,
        FLAGS.learning_rate, FLAGS.seed, FLAGS.output_dir, FLAGS.thresholds,
        overwrite=FLAGS.overwrite,
    )
    print(format_report(results))


def _define_flags():
    # Defined when the command runs, not at import: absl flags are global, and two
    # commands imported into one process (e.g. by tests) would clash.
    flags.DEFINE_string("model", "resnet18_byot", "Registry name (see zoo.list_models()).")
    flags.DEFINE_float("width_multiplier", 0.25, "Channel scale of the backbone (1.0 = standard).")
    flags.DEFINE_string("objective", "official", "BYOT loss preset: official | paper.")
    flags.DEFINE_integer("epochs", 5, "Training epochs.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 64, "Batch size.", lower_bound=1)
    flags.DEFINE_float("learning_rate", 0.05, "Peak SGD learning rate (cosine decay to 0).")
    flags.DEFINE_integer("seed", 0, "Random seed for weights, shuffling and the split.")
    flags.DEFINE_string("output_dir", "runs/quickstart", "Where model.keras and results.json "
                        "go (an earlier quickstart's are replaced).")
    flags.DEFINE_bool("overwrite", False, "Write into an --output_dir that holds other files "
                      "(they are kept; a model.keras the quickstart did not write is never "
                      "replaced).")
    flags.DEFINE_list("thresholds", ["0.5", "0.8", "0.9", "0.95", "0.99"],
                      "Confidence thresholds for the early-exit table.")


def run():
    """Console-script entry point (`byot-quickstart`)."""
    from byot_keras import commands

    commands.run(COMMAND, __doc__, _define_flags, main)


if __name__ == "__main__":
    run()
