"""The README's main job (byot-quickstart) end to end, shortened to two epochs, in a
folder that also holds a user's files (with --overwrite: they must survive)."""

import hashlib
import json

import keras
import numpy as np

from byot_keras.data import load_digits
from byot_keras.quickstart import format_report, train_and_report


def test_quickstart_trains_reports_and_saves_a_loadable_model(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    digest = hashlib.sha256(notes.read_bytes()).hexdigest()
    results = train_and_report(
        "resnet18_byot", width_multiplier=0.125, objective="official", epochs=2,
        batch_size=64, learning_rate=0.05, seed=0, output_dir=str(tmp_path),
        thresholds=[0.5, 0.99], verbose=0, overwrite=True,
    )
    assert hashlib.sha256(notes.read_bytes()).hexdigest() == digest
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["ensemble_accuracy"] == results["ensemble_accuracy"]
    assert [e["exit"] for e in saved["exits"]] == ["exit_1", "exit_2", "exit_3", "exit_4"]
    # What a later quickstart checks before it replaces model.keras.
    assert saved["file_sha256"] == {"model.keras": hashlib.sha256(
        (tmp_path / "model.keras").read_bytes()).hexdigest()}
    # The reported accuracies are the saved model's, recomputed independently here.
    model = keras.saving.load_model(tmp_path / "model.keras")
    _, (x_test, y_test) = load_digits(seed=0)
    logits = model.predict(x_test, verbose=0)
    for row in saved["exits"]:
        accuracy = np.mean(logits[row["exit"]].argmax(-1) == y_test)
        assert abs(row["accuracy"] - accuracy) < 1e-6
        # Two epochs on digits: measured 40-91 % per exit; chance is 10 % +- 1.6 %.
        assert row["accuracy"] > 0.25
    report = format_report(results)
    assert "exit_4" in report and "ensemble" in report and "early exit" in report
    assert not list(tmp_path.glob(".saving-*"))  # no temporary file left behind
