"""A run's checkpoints and logs: after every epoch whose loss is finite, the weights and
the optimizer state are saved atomically to `<run>/checkpoints/` (`epoch_<N>.weights.h5`,
then `state.json` switched to it), with the training time so far; a new invocation of
the same run restores them before `fit`, because the input pipeline starts at the saved
epoch. A non-finite loss stops training (Keras' `TerminateOnNaN`, which here also records
where) and keeps the last good checkpoint.

Keras' `BackupAndRestore` is not used: it restores inside `fit` (too late for the
pipeline's start epoch), writes its files in place (a kill mid-write leaves a damaged
checkpoint) and deletes them at the end of training.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import time

import keras
import numpy as np

from byot_keras.saving import replace_atomically, write_json_atomically
from byot_keras.train.run_folder import STATE_FILE


def save_checkpoint(model: keras.Model, directory: str, epoch: int, state: dict) -> str:
    """Saves weights + optimizer state after `epoch` epochs. The weights go to a new
    file, then `state.json` is switched to it atomically, then older files are removed:
    a process killed at any moment leaves a complete checkpoint behind."""
    name = f"epoch_{epoch:04d}.weights.h5"
    path = replace_atomically(os.path.join(directory, name), model.save_weights,
                              suffix=".weights.h5")
    write_json_atomically({**state, "epoch": epoch, "weights": name},
                          os.path.join(directory, STATE_FILE))
    for old in glob.glob(os.path.join(directory, "epoch_*.weights.h5")):
        if os.path.basename(old) != name:
            os.remove(old)
    return path


def restore_checkpoint(model: keras.Model, directory: str) -> dict:
    """Loads the last checkpoint into `model` (built and compiled); returns its state
    (`epoch`: completed epochs, 0 and nothing loaded when there is none)."""
    path = os.path.join(directory, STATE_FILE)
    if not os.path.exists(path):
        return {"epoch": 0, "train_seconds": 0.0, "resumed": []}
    with open(path) as f:
        state = json.load(f)
    weights = os.path.join(directory, state["weights"])
    if not os.path.exists(weights):
        raise ValueError(f"Checkpoint {path} refers to {weights}, which is missing; delete "
                         f"'{directory}' to start over.")
    if not model.optimizer.built:  # its variables must exist to receive the saved state
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(weights)
    except Exception as error:  # h5py / Keras report damage in several ways
        raise ValueError(
            f"Checkpoint {weights} is damaged or does not fit this run ({error}). To start "
            f"the run over, delete '{directory}' (or pass --overwrite, which deletes only "
            "the run's files).") from error
    return state


class NonFiniteLossGuard(keras.callbacks.TerminateOnNaN):
    """Keras' `TerminateOnNaN` (stops training at the first batch whose loss is NaN or
    infinite) that also records where, for the error message: `failure` is
    {"epoch", "step", "loss"} (1-based), or None."""

    def __init__(self):
        super().__init__()
        self.failure = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.failure is None and loss is not None and not np.isfinite(float(loss)):
            self.failure = {"epoch": self._epoch + 1, "step": batch + 1, "loss": float(loss)}
        super().on_batch_end(batch, logs)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves a checkpoint after every completed epoch whose loss is finite, with the
    cumulative training time."""

    def __init__(self, directory: str, guard: NonFiniteLossGuard, state: dict):
        super().__init__()
        self.directory = directory
        self.guard = guard
        self.state = dict(state)
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if self.guard.failure or loss is None or not np.isfinite(float(loss)):
            return  # keep the last good checkpoint
        self.state["train_seconds"] = (self.state.get("train_seconds", 0.0)
                                       + time.perf_counter() - self._start)
        save_checkpoint(self.model, self.directory, epoch + 1, self.state)


def trim_csv_log(path: str, completed_epochs: int) -> None:
    """Keeps the CSV log's rows of the epochs the checkpoint holds (a killed run may have
    logged an epoch whose checkpoint it did not finish)."""
    if not os.path.exists(path):
        return
    if completed_epochs == 0:
        os.remove(path)
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, body = rows[0], [r for r in rows[1:] if r and int(r[0]) < completed_epochs]

    def write(temporary):
        with open(temporary, "w", newline="") as f:
            csv.writer(f).writerows([header, *body])

    replace_atomically(path, write, suffix=".csv")


def read_csv_log(path: str) -> list[dict]:
    """The CSV log as a list of {column: float} rows (one per epoch)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items() if _number(v) is not None}
                for row in csv.DictReader(f)]


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):  # CSVLogger writes "NA" for metrics it did not get
        return None


def read_state(checkpoint_dir: str) -> dict:
    path = os.path.join(checkpoint_dir, STATE_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)
