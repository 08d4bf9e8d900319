"""The run folder of `byot-train`: what a run writes there, which folders a run may use,
and what `--overwrite` deletes.

A run folder is recognised by its `config.json` (written before training starts), which
says `"written_by": "byot-train"` (runs written before that marker existed are
recognised by their keys: every setting of a run and nothing else). A `config.json`
that is not a run's is the user's: refused, even with `--overwrite`. A new run goes
into a new or empty folder, or resumes the run of the same configuration; a folder
holding a different run, or files no run wrote, is refused unless `--overwrite`. Even
then only run files are deleted (see `run_files`), and a file no run wrote is never
overwritten: nor a `model.keras` or `report.png` the user put in place of the run's
(`report.json` records their SHA-256).
"""

from __future__ import annotations

import fnmatch
import json
import os

from byot_keras.folders import (
    changed_since_written,
    describe,
    foreign_entries,
    recorded_hashes,
    require_folder_path,
)

COMMAND = "byot-train"
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
REPORT_FILE = "report.json"
MODEL_FILE = "model.keras"
# The marker byot-train writes into its config.json and report.json.
WRITTEN_BY = "written_by"
LOG_DIR = "logs"
WORKERS_DIR = "workers"
RUN_FILES = (CONFIG_FILE, "log.csv", REPORT_FILE, "report.png", MODEL_FILE)
RUN_DIRS = (CHECKPOINT_DIR, LOG_DIR, WORKERS_DIR)
# The files a run writes inside its sub-folders, by pattern.
CHECKPOINT_FILES = ("epoch_*.weights.h5", STATE_FILE, ".tmp-*")
LOG_FILES = ("events.out.tfevents.*",)
# Every setting of the first TrainConfig: a config.json written before the marker holds
# all of these (later versions only added settings).
UNMARKED_RUN_KEYS = frozenset((
    "model", "method", "method_options", "width_multiplier", "sync_batchnorm", "dataset",
    "data_dir", "download", "image_size", "train_examples", "test_examples",
    "validation_split", "verify_images", "epochs", "batch_size", "lr", "lr_schedule",
    "lr_milestones", "lr_decay", "momentum", "nesterov", "weight_decay", "augment", "cache",
    "shuffle_buffer", "eval_batch_size", "validation_freq", "seed", "deterministic",
    "strategy", "devices", "tpu", "output_dir", "overwrite", "verbose", "baseline_accuracy",
    "baseline_name", "preset"))
# What a report.json written before the marker holds (train.report.build_report).
UNMARKED_REPORT_KEYS = frozenset(("model", "method", "dataset", "accuracy", "exits",
                                  "training", "config", "versions"))


def run_config_record(config) -> dict:
    """What byot-train writes to config.json: the marker, then every setting."""
    return {WRITTEN_BY: COMMAND, **config.to_dict()}


def is_run_config(values) -> bool:
    """Whether `values` (a config.json's content) is a byot-train run's configuration:
    it carries the marker, or (a run written before the marker) holds every setting of
    a run and nothing but settings."""
    from byot_keras.train.config import TrainConfig

    if not isinstance(values, dict):
        return False
    if values.get(WRITTEN_BY) == COMMAND:
        return True
    settings = set(TrainConfig.__dataclass_fields__)
    return UNMARKED_RUN_KEYS <= set(values) <= settings


def is_run_report(values) -> bool:
    """Whether `values` (a report.json's content) is one byot-train wrote."""
    return isinstance(values, dict) and (values.get(WRITTEN_BY) == COMMAND or (
        WRITTEN_BY not in values and UNMARKED_REPORT_KEYS <= set(values)))


def _read_json(path: str):
    """The JSON in `path`; None if it cannot be read or parsed."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def replaced_run_files(run_dir: str) -> list[str]:
    """The files of the run in `run_dir` that are no longer what the run wrote: a
    report.json that is not a run's report, a model.keras or report.png whose SHA-256
    differs from what report.json records (for reports written before the hashes: a
    model.keras newer than the report), and a model.keras or report.png without a
    report.json (the run writes them only with it)."""
    present = [name for name in (MODEL_FILE, "report.png")
               if os.path.isfile(os.path.join(run_dir, name))]
    report_path = os.path.join(run_dir, REPORT_FILE)
    if not os.path.isfile(report_path):
        return present
    report = _read_json(report_path)
    if not is_run_report(report):
        return [REPORT_FILE]
    hashes = recorded_hashes(report.get("file_sha256"))
    # An unmarked report was written before report.png: only model.keras can be dated.
    checked = present if hashes is not None else [n for n in present if n == MODEL_FILE]
    return changed_since_written(run_dir, checked, REPORT_FILE, hashes)


def inspect_run_dir(run_dir: str, config) -> str:
    """What this run does with its output folder, having checked it (nothing is
    changed): "new" (an empty, new or other-files-only folder), "resume" (the same
    run's folder) or "replace" (a different run's, with `config.overwrite`: its run
    files are to be deleted).

    Raises ValueError naming the folder, what it holds and what to do, for a folder
    this run may not use (see the module docstring).
    """
    require_folder_path(run_dir)
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.exists(path):
        _check_folder_without_run(run_dir, config.overwrite)
        return "new"
    previous = _read_json(path)
    if not is_run_config(previous):
        beside = [e for e in RUN_FILES + RUN_DIRS
                  if e != CONFIG_FILE and os.path.exists(os.path.join(run_dir, e))]
        also = f", nor {describe(beside)} beside it" if beside else ""
        raise ValueError(
            f"--output_dir '{run_dir}' holds a {CONFIG_FILE} that is not a byot-train run's "
            f"configuration (it lacks '{WRITTEN_BY}': '{COMMAND}' and a run's settings): "
            f"byot-train will not use, delete or overwrite it{also}, not even with "
            "--overwrite. Move it away or choose another --output_dir.")
    replaced = replaced_run_files(run_dir)
    if replaced:
        them = "it" if len(replaced) == 1 else "them"
        raise ValueError(
            f"--output_dir '{run_dir}' holds a byot-train run, but its {describe(replaced)} "
            f"{'is' if len(replaced) == 1 else 'are'} not what the run wrote (replaced or "
            f"added since; the run records what it wrote in {REPORT_FILE}). byot-train will "
            f"not overwrite or delete {them}, not even with --overwrite: move {them} away "
            "or choose another --output_dir.")
    differences = config.differences({k: v for k, v in previous.items() if k != WRITTEN_BY})
    if not differences:
        return "resume"
    if config.overwrite:
        return "replace"
    listed = "; ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in
                       list(differences.items())[:6])
    raise ValueError(f"--output_dir '{run_dir}' holds a different run ({listed}). Use another "
                     "--output_dir, the same settings to resume it, or --overwrite to delete "
                     "that run's files.")


def check_run_dir(run_dir: str, config) -> None:
    """Refuses an output folder this run may not use (`inspect_run_dir`); with
    `config.overwrite`, deletes the run files of a different run found there.

    Raises ValueError naming the folder, what it holds and what to do.
    """
    if inspect_run_dir(run_dir, config) == "replace":
        clear_run_dir(run_dir)


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
