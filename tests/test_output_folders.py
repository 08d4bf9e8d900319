"""Nothing a user owns is deleted or overwritten: every function and command that writes
files, pointed at a folder holding a user's notes and a user's own `model.keras`, leaves
both byte-for-byte as they were (checked by SHA-256), and replaces only what it wrote
itself: not a file of its names it did not write (a user's config.json, comparison.md),
nor one the user put in place of its own since (the writers record SHA-256 hashes).
(byot-qat and byot-prune are checked in test_compress.py, in their own process.)
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
from byot_keras.train.reproduce import check_comparison_files, reproduce, write_comparison
from byot_keras.train.run_folder import (
    check_run_dir,
    clear_run_dir,
    inspect_run_dir,
    run_files,
)

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
    del manifest["files"], manifest["file_sha256"]  # as format_version 1 wrote it
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


def test_an_exported_file_the_user_replaced_is_theirs_and_never_overwritten(model, tmp_path):
    out = tmp_path / "export"
    manifest = export_tflite(model, out, **ONE_FILE)
    assert manifest["file_sha256"] == {f: sha256(out / f) for f in ("exit_1.tflite",
                                                                     "labels.txt")}
    (out / "exit_1.tflite").write_bytes(b"my own, better model")  # put in its place
    digests = {out / "exit_1.tflite": sha256(out / "exit_1.tflite")}
    for allow in (False, True):  # the next export writes exit_1.tflite: refused either way
        with pytest.raises(OutputFolderError, match=r"'exit_1.tflite', which export_tflite "
                           r"wrote there earlier but which has been replaced since"):
            export_tflite(model, out, allow_other_files=allow, **ONE_FILE)
    assert_untouched(digests)
    # An export that does not write it: the replaced file is a foreign entry, kept.
    with pytest.raises(OutputFolderError, match="'exit_1.tflite'.*--allow_other_files"):
        export_tflite(model, out, cascade=False, multi_signature=False, exits=[2])
    second = export_tflite(model, out, cascade=False, multi_signature=False, exits=[2],
                           allow_other_files=True)
    assert second["files"] == ["exit_2.tflite", "labels.txt", "manifest.json"]
    assert sorted(os.listdir(out)) == ["exit_1.tflite", "exit_2.tflite", "labels.txt",
                                       "manifest.json"]
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


def test_a_config_json_byot_train_did_not_write_is_never_used_or_deleted(tmp_path):
    """The survey's data loss: any JSON object named config.json was taken for a run, and
    --overwrite then deleted it with the user's model.keras and report.json."""
    out = tmp_path / "mine"
    hashes = put_user_files(out)
    for name, content in (("config.json", '{"experiment": "mine", "lr": 0.1}'),
                          ("report.json", '{"my": "report"}')):
        (out / name).write_text(content)
        hashes[out / name] = sha256(out / name)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=r"holds a config.json that is not a byot-train "
                           r"run's configuration.*'model.keras', 'report.json' beside it, "
                           r"not even with --overwrite"):
            train_toy(output_dir=str(out), overwrite=overwrite)
    # A config.json holding only some of a run's settings is not a run's either.
    (out / "config.json").write_text('{"model": "resnet18_byot"}')
    hashes[out / "config.json"] = sha256(out / "config.json")
    with pytest.raises(ValueError, match="not a byot-train run's configuration"):
        train_toy(output_dir=str(out), overwrite=True)
    assert_untouched(hashes)


def test_runs_written_before_the_marker_still_resume(tmp_path):
    """Runs started by earlier versions (e.g. long runs still going) wrote config.json as
    TrainConfig.to_dict(), without "written_by" and, older still, without "precision":
    recognised by their keys, the same settings resume, others are a different run."""
    out = tmp_path / "old_run"
    out.mkdir()
    config = make_config(**TRAIN, output_dir=str(out))
    unmarked = config.to_dict()
    del unmarked["precision"]  # a setting added after the first version
    (out / "config.json").write_text(json.dumps(unmarked))
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "state.json").write_text('{"epoch": 1}')
    assert inspect_run_dir(str(out), config) == "resume"
    other = make_config(**{**TRAIN, "lr": 0.01}, output_dir=str(out))
    with pytest.raises(ValueError, match="holds a different run.*lr: 0.05 there, 0.01 now"):
        inspect_run_dir(str(out), other)
    assert inspect_run_dir(str(out), make_config(**{**TRAIN, "lr": 0.01}, overwrite=True,
                                                 output_dir=str(out))) == "replace"


def test_overwrite_of_a_different_run_deletes_only_run_files(tmp_path):
    out = tmp_path / "run"
    train_toy(output_dir=str(out))
    assert json.loads((out / "config.json").read_text())["written_by"] == "byot-train"
    report = json.loads((out / "report.json").read_text())
    assert report["file_sha256"] == {"model.keras": sha256(out / "model.keras"),
                                     "report.png": sha256(out / "report.png")}
    # The user's model.keras in place of the run's: not resumed over, not deleted.
    keras_file = out / "model.keras"
    run_model = keras_file.read_bytes()
    keras_file.write_bytes(b"my own model")
    mine = {keras_file: sha256(keras_file)}
    for overwrite in (False, True):
        for lr in (0.05, 0.01):  # the same run (resume) or a different one
            with pytest.raises(ValueError, match=r"its 'model.keras' is not what the run "
                               r"wrote.*not even with --overwrite"):
                check_run_dir(str(out), make_config(**{**TRAIN, "lr": lr}, overwrite=overwrite,
                                                    output_dir=str(out)))
    assert_untouched(mine)
    keras_file.write_bytes(run_model)
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


def test_quickstart_never_replaces_a_model_keras_the_user_put_in_place_of_its_own(tmp_path):
    """The survey's data loss: an earlier quickstart's folder whose model.keras the user
    replaced with their own. results.json records the SHA-256 of the model it saved;
    results.json written before that (no hashes) is dated: a model.keras modified after it
    is not the quickstart's."""
    out = tmp_path / "quick"
    out.mkdir()
    written = out / "model.keras"
    written.write_bytes(b"the quickstart's model")
    record = {"written_by": "byot-quickstart", "file_sha256": {"model.keras": sha256(written)}}
    (out / "results.json").write_text(json.dumps(record))
    check_output_dir(str(out))  # still its own: replaced
    written.write_bytes(b"the user's own model")
    hashes = {written: sha256(written), out / "results.json": sha256(out / "results.json")}
    for overwrite in (False, True):
        with pytest.raises(OutputFolderError, match=r"'model.keras', which byot-quickstart "
                           r"wrote there earlier but which has been replaced since.*"
                           r"results.json"):
            check_output_dir(str(out), overwrite)
    with pytest.raises(OutputFolderError, match="model.keras"):
        train_and_report(**QUICK, output_dir=str(out), overwrite=True)
    assert_untouched(hashes)
    # A results.json without hashes, written before the model was replaced.
    (out / "results.json").write_text(json.dumps({"written_by": "byot-quickstart"}))
    past = os.stat(out / "results.json").st_mtime_ns - 10**9
    os.utime(out / "results.json", ns=(past, past))
    with pytest.raises(OutputFolderError, match="replaced since"):
        check_output_dir(str(out))
    os.utime(written, ns=(past - 10**9, past - 10**9))  # written before the record: its own
    check_output_dir(str(out))


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
    # ... unless it records another PNG than the one there now (the user's).
    (folder / "eval_report.json").write_text(json.dumps(
        {"written_by": "byot-eval", "file_sha256": {"eval_report.png": "0" * 64}}))
    with pytest.raises(OutputFolderError, match="eval_report.png.*not written by byot-eval"):
        check_report_files(str(folder))
    (folder / "eval_report.json").write_text(json.dumps(
        {"written_by": "byot-eval",
         "file_sha256": {"eval_report.png": sha256(folder / "eval_report.png")}}))
    check_report_files(str(folder))

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


# --------------------------------------------------------------------------- byot-reproduce


def test_reproduce_refuses_a_comparison_it_did_not_write_before_training(tmp_path,
                                                                          monkeypatch):
    """The survey's data loss: a user's comparison.md was overwritten after the runs."""
    from byot_keras import train as train_package

    monkeypatch.setattr(train_package, "train", lambda config: pytest.fail("trained"))
    out = tmp_path / "reproduce"
    out.mkdir()
    (out / "comparison.md").write_text("my own comparison")
    hashes = {out / "comparison.md": sha256(out / "comparison.md")}
    with pytest.raises(OutputFolderError, match=r"already holds 'comparison.md', which "
                       r"byot-reproduce did not write and would overwrite"):
        reproduce(smoke=True, output_dir=str(out))
    # A comparison.json without the marker is not byot-reproduce's either.
    (out / "comparison.json").write_text('{"rows": []}')
    hashes[out / "comparison.json"] = sha256(out / "comparison.json")
    with pytest.raises(OutputFolderError, match="'comparison.json', 'comparison.md'"):
        check_comparison_files(str(out))
    assert_untouched(hashes)
    # Its own files are replaced; a comparison.md the user edited since is not.
    own = tmp_path / "own"
    write_comparison({"smoke": True, "source": "paper", "rows": []}, str(own))
    check_comparison_files(str(own))
    (own / "comparison.md").write_text("edited by hand")
    with pytest.raises(OutputFolderError, match="'comparison.md'"):
        check_comparison_files(str(own))
