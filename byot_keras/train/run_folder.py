"""The run folder of `byot-train`: what a run writes there, which folders a run may use,
and what `--overwrite` deletes.

A run folder is recognised by its `config.json` (written before training starts). A new
run goes into a new or empty folder, or resumes the run of the same configuration; a
folder holding a different run, or files no run wrote, is refused unless `--overwrite`.
Even then only run files are deleted (see `run_files`), and a file no run wrote is
never overwritten.
"""

from __future__ import annotations

import fnmatch
import json
import os

from byot_keras.folders import describe, foreign_entries, require_folder_path

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
LOG_DIR = "logs"
WORKERS_DIR = "workers"
RUN_FILES = (CONFIG_FILE, "log.csv", "report.json", "report.png", "model.keras")
RUN_DIRS = (CHECKPOINT_DIR, LOG_DIR, WORKERS_DIR)
# The files a run writes inside its sub-folders, by pattern.
CHECKPOINT_FILES = ("epoch_*.weights.h5", STATE_FILE, ".tmp-*")
LOG_FILES = ("events.out.tfevents.*",)


def check_run_dir(run_dir: str, config) -> None:
    """Refuses an output folder this run may not use (see the module docstring); with
    `config.overwrite`, deletes the run files of a different run found there.

    Raises ValueError naming the folder, what it holds and what to do.
    """
    require_folder_path(run_dir)
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.exists(path):
        _check_folder_without_run(run_dir, config.overwrite)
        return
    try:
        with open(path) as f:
            previous = json.load(f)
        if not isinstance(previous, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read {path} ({error}): it is not a byot-train run's "
                         "configuration. Choose another --output_dir.") from error
    differences = config.differences(previous)
    if not differences:
        return
    if config.overwrite:
        clear_run_dir(run_dir)
        return
    listed = "; ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in
                       list(differences.items())[:6])
    raise ValueError(f"--output_dir '{run_dir}' holds a different run ({listed}). Use another "
                     "--output_dir, the same settings to resume it, or --overwrite to delete "
                     "that run's files.")


def _check_folder_without_run(run_dir: str, overwrite: bool) -> None:
    # Other workers of a multi-worker run may have created their folders already.
    entries = foreign_entries(os.path.abspath(run_dir), owned=(f"{WORKERS_DIR}/",))
    if not entries:
        return
    clashes = [e for e in entries if e.rstrip("/") in RUN_FILES + RUN_DIRS]
    if clashes:
        them = "it" if len(clashes) == 1 else "them"
        raise ValueError(
            f"--output_dir '{run_dir}' holds {describe(clashes)} but no {CONFIG_FILE}: "
            f"byot-train did not write {them} and will not overwrite {them} (not even with "
            f"--overwrite). Move {them} away or choose another --output_dir.")
    if not overwrite:
        raise ValueError(
            f"--output_dir '{run_dir}' is not empty and holds no byot-train run "
            f"({describe(entries)}). Choose a new or empty --output_dir, or pass --overwrite "
            "to write the run beside these files (they are kept).")


def run_files(run_dir: str) -> list[str]:
    """The files in `run_dir` that byot-train writes (relative paths): `RUN_FILES`, the
    checkpoints, the TensorBoard event files, and the same in every worker's folder."""
    found = [name for name in RUN_FILES if os.path.isfile(os.path.join(run_dir, name))]
    for folder, patterns in ((CHECKPOINT_DIR, CHECKPOINT_FILES), (LOG_DIR, LOG_FILES)):
        for root, _, files in os.walk(os.path.join(run_dir, folder)):
            found += [os.path.relpath(os.path.join(root, name), run_dir) for name in files
                      if any(fnmatch.fnmatch(name, p) for p in patterns)]
    workers = os.path.join(run_dir, WORKERS_DIR)
    if os.path.isdir(workers):
        for worker in sorted(os.listdir(workers)):
            found += [os.path.join(WORKERS_DIR, worker, f)
                      for f in run_files(os.path.join(workers, worker))]
    return sorted(found)


def clear_run_dir(run_dir: str) -> list[str]:
    """Deletes the run files of `run_dir` (see `run_files`) and the folders they leave
    empty; everything else stays. Returns what was deleted."""
    deleted = run_files(run_dir)
    for relative in deleted:
        os.remove(os.path.join(run_dir, relative))
    for folder in RUN_DIRS:  # every deleted file lies in one of these, or at the top
        _remove_empty_tree(os.path.join(run_dir, folder))
    return deleted


def _remove_empty_tree(folder: str) -> None:
    """Removes `folder` and its sub-folders when they hold no file."""
    if not os.path.isdir(folder):
        return
    for root, _, _ in os.walk(folder, topdown=False):
        if not os.listdir(root):
            os.rmdir(root)
