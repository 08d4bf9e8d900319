"""Nothing a user owns is deleted or overwritten: every function and command that writes
files, pointed at a folder holding a user's notes and a user's own `model.keras`, leaves
both byte-for-byte as they were (checked by SHA-256), and replaces only what it wrote
itself. (byot-qat and byot-prune are checked in test_compress.py, in their own process.)
"""

import json
import os

import keras
import numpy as np
import pytest
from train_helper import toy_multi_exit
from user_files import assert_untouched, put_user_files, sha256

from byot_keras import zoo
from byot_keras.export import export_tflite
from byot_keras.export.runtime import write_sweep
from byot_keras.folders import OutputFolderError, foreign_entries
from byot_keras.quickstart import check_output_dir, train_and_report
from byot_keras.train import make_config, train
from byot_keras.train.evaluate import check_report_files
from byot_keras.train.run_folder import check_run_dir, clear_run_dir, run_files

# One conversion per export keeps these tests fast.
ONE_FILE = dict(cascade=False, multi_signature=False, exits=[1])


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return zoo.resnet18_byot(num_classes=4, width_multiplier=0.125, exits=[2])


# --------------------------------------------------------------------------- export


def test_export_refuses_a_folder_of_user_files_before_converting(model, tmp_path, monkeypatch):
    hashes = put_user_files(tmp_path / "run")
    from byot_keras.export import tflite as tflite_module

    monkeypatch.setattr(tflite_module, "convert", lambda *a, **k: pytest.fail("converted"))
    with pytest.raises(OutputFolderError, match=r"'data/', 'model.keras', 'notes.txt'.*"
                       r"--allow_other_files"):
        export_tflite(model, tmp_path / "run", **ONE_FILE)
    assert_untouched(hashes)
    assert sorted(os.listdir(tmp_path / "run")) == ["data", "model.keras", "notes.txt"]


def test_export_into_the_current_folder_is_refused_and_empties_nothing(model, tmp_path,
                                                                      monkeypatch):
    hashes = put_user_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputFolderError, match="did not write"):
        export_tflite(model, ".", **ONE_FILE)
    assert_untouched(hashes)


def test_allowed_export_beside_user_files_keeps_them_and_replaces_only_its_own(model, tmp_path):
    out = tmp_path / "run"
    hashes = put_user_files(out)
    first = export_tflite(model, out, cascade=False, multi_signature=False,
                          allow_other_files=True)
    assert first["files"] == ["exit_1.tflite", "exit_2.tflite", "labels.txt", "manifest.json"]
    assert_untouched(hashes)
    # A second export replaces the first one's files, including one it no longer writes
    # (exit_2.tflite), without being told to: they are listed in the first manifest.
    second = export_tflite(model, out, allow_other_files=True, **ONE_FILE)
    assert second["files"] == ["exit_1.tflite", "labels.txt", "manifest.json"]
    assert sorted(os.listdir(out)) == ["data", "exit_1.tflite", "labels.txt", "manifest.json",
                                       "model.keras", "notes.txt"]
    assert_untouched(hashes)


def test_export_over_an_earlier_export_needs_no_flag_and_deletes_its_empty_folders(model,
                                                                                   tmp_path):
    out = tmp_path / "export"
    export_tflite(model, out, multi_signature=False, exits=[])
    assert (out / "cascade" / "segment_2.tflite").exists()
    export_tflite(model, out, **ONE_FILE)
    assert sorted(os.listdir(out)) == ["exit_1.tflite", "labels.txt", "manifest.json"]


def test_manifests_written_before_the_files_list_are_still_recognised(model, tmp_path):
    out = tmp_path / "export"
    export_tflite(model, out, **ONE_FILE)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["files"]  # as format_version 1 wrote it
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert foreign_entries(str(out), owned=["exit_1.tflite"]) == ["labels.txt",
                                                                  "manifest.json"]
    export_tflite(model, out, **ONE_FILE)  # recognised as an earlier export: replaced
    assert "files" in json.loads((out / "manifest.json").read_text())


def test_a_user_file_with_an_export_name_is_never_overwritten(model, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "exit_1.tflite").write_bytes(b"my own model")
    (out / "manifest.json").write_text('{"mine": true}')  # not an export's manifest
    digests = {p: sha256(p) for p in out.iterdir()}
    with pytest.raises(OutputFolderError, match="would overwrite"):
        export_tflite(model, out, allow_other_files=True, **ONE_FILE)
    assert_untouched(digests)


# --------------------------------------------------------------------------- byot-train

TRAIN = dict(dataset="digits", model="toy_multi_exit", epochs=1, batch_size=64,
             train_examples=128, test_examples=64, lr=0.05, lr_milestones=[], verbose="0")


def train_toy(**settings):
    return train(make_config(**{**TRAIN, **settings}), model_fn=toy_multi_exit)


def test_train_refuses_a_folder_of_user_files_unless_overwrite_and_then_keeps_them(tmp_path):
    out = tmp_path / "folder"
    hashes = put_user_files(out)
    # Not a run folder, with a model.keras byot-train would overwrite: refused.
    with pytest.raises(ValueError, match="'model.keras' but no config.json"):
        check_run_dir(str(out), make_config(**TRAIN, output_dir=str(out)))
    os.remove(out / "model.keras")
    del hashes[out / "model.keras"]
    with pytest.raises(ValueError, match=r"'data/', 'notes.txt'.*--overwrite"):
        train_toy(output_dir=str(out))
    keras_file = out / "model.keras"
    keras_file.write_bytes(b"user's model")
    hashes[keras_file] = sha256(keras_file)
    with pytest.raises(ValueError, match="'model.keras' but no config.json.*not even with"):
        train_toy(output_dir=str(out), overwrite=True)
    assert_untouched(hashes)
    # Beside the user's files (their model.keras moved away), --overwrite trains and
    # keeps them.
    os.remove(keras_file)
    del hashes[keras_file]
    train_toy(output_dir=str(out), overwrite=True)
    assert (out / "model.keras").exists() and (out / "config.json").exists()
    assert_untouched(hashes)


def test_overwrite_of_a_different_run_deletes_only_run_files(tmp_path):
    out = tmp_path / "run"
    train_toy(output_dir=str(out))
    hashes = {}
    for extra in (out / "notes.txt", out / "checkpoints" / "README", out / "logs" / "mine.txt"):
        extra.write_text("mine")
        hashes[extra] = sha256(extra)
    written = run_files(str(out))
    assert {"config.json", "model.keras", "report.json", "log.csv",
            "checkpoints/state.json", "checkpoints/epoch_0001.weights.h5"} <= set(written)
    assert any(f.startswith("logs/") and "events.out.tfevents" in f for f in written)
    with pytest.raises(ValueError, match="holds a different run"):
        check_run_dir(str(out), make_config(**{**TRAIN, "lr": 0.01}, output_dir=str(out)))
    deleted = clear_run_dir(str(out))
    assert deleted == written
    assert_untouched(hashes)
    assert run_files(str(out)) == []


def test_train_into_a_file_path_is_refused(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        train_toy(output_dir=str(target))
    assert target.read_text() == "keep"


# --------------------------------------------------------------------------- quickstart

QUICK = dict(model_name="resnet18_byot", width_multiplier=0.125, objective="official",
             epochs=1, batch_size=64, learning_rate=0.05, seed=0, thresholds=[0.9],
             verbose=0)


def test_quickstart_refuses_user_files_before_training_and_replaces_its_own_output(tmp_path):
    out = tmp_path / "quick"
    hashes = put_user_files(out)
    for overwrite in (False, True):  # the user's model.keras: refused either way
        with pytest.raises(OutputFolderError, match="model.keras"):
            train_and_report(**QUICK, output_dir=str(out), overwrite=overwrite)
    with pytest.raises(ValueError, match="--thresholds entry 1.5"):
        train_and_report(**{**QUICK, "thresholds": [0.5, 1.5]}, output_dir=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()
    assert_untouched(hashes)
    # (A run beside user files, with --overwrite, is test_quickstart.py's.)
    # Its own earlier output is replaced without a flag.
    own = tmp_path / "own"
    own.mkdir()
    (own / "model.keras").write_bytes(b"written by an earlier quickstart")
    (own / "results.json").write_text(json.dumps({"written_by": "byot-quickstart"}))
    check_output_dir(str(own))
    (own / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match="notes.txt.*--overwrite"):
        check_output_dir(str(own))


# --------------------------------------------------------------------------- reports


def test_eval_report_and_sweep_never_overwrite_files_they_did_not_write(tmp_path):
    folder = tmp_path / "run"
    hashes = put_user_files(folder)
    check_report_files(str(folder))  # nothing of its names there: fine
    (folder / "eval_report.png").write_bytes(b"my plot")
    hashes[folder / "eval_report.png"] = sha256(folder / "eval_report.png")
    with pytest.raises(OutputFolderError, match="eval_report.png.*not written by byot-eval"):
        check_report_files(str(folder))
    (folder / "eval_report.json").write_text(json.dumps({"written_by": "byot-eval"}))
    check_report_files(str(folder))  # an earlier byot-eval's report: replaced

    rows = [{"threshold": t, "accuracy": 0.5, "mean_exit": 1.5, "mean_latency_ms": 1.0,
             "p90_latency_ms": 2.0, "exit_fractions": [0.5, 0.5]} for t in (0.5, 0.9)]
    paths = write_sweep(rows, str(folder))
    assert sorted(os.path.basename(p) for p in paths.values()) == [
        "early_exit_sweep.csv", "early_exit_sweep.md", "early_exit_sweep.png"]
    write_sweep(rows, str(folder))  # its own files: replaced
    (folder / "mine.csv").write_text("a,b\n")
    with pytest.raises(OutputFolderError, match="mine.csv"):
        write_sweep(rows, str(folder), stem="mine")
    assert (folder / "mine.csv").read_text() == "a,b\n"
    assert_untouched(hashes)
    assert np.all([os.path.getsize(p) > 0 for p in paths.values()])
