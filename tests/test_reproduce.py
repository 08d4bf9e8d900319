"""byot-reproduce on its smoke setting (mock CIFAR-100, tiny runs): the same code a GPU
user runs for the paper's rows, end to end, with the comparison against the paper."""

import json

import pytest
from user_files import sha256

from byot_keras.train.reproduce import reproduce

# The BYOT paper's ResNet-18 row on CIFAR-100 (../shared/docs/methods.md), typed in here
# independently of byot_keras.published.
PAPER_RESNET18 = {"baseline": 77.09, "exits": [67.85, 74.57, 78.23, 78.64], "ensemble": 79.67}


def test_smoke_runs_both_methods_and_compares_with_the_paper(tmp_path):
    comparison = reproduce(["resnet18"], output_dir=str(tmp_path), smoke=True)
    ce, byot = comparison["rows"]
    assert (ce["model"], byot["model"]) == ("resnet18", "resnet18_byot")
    assert ce["published_exits"] == [PAPER_RESNET18["baseline"]]
    assert byot["published_exits"] == PAPER_RESNET18["exits"]
    assert byot["published_ensemble"] == PAPER_RESNET18["ensemble"]
    assert len(ce["exits"]) == 1 and len(byot["exits"]) == 4
    # The numbers come from each run's own report.
    for row in (ce, byot):
        report = json.loads((tmp_path / f"resnet18_{row['method']}" / "report.json").read_text())
        assert row["exits"][-1] == round(100 * report["accuracy"][f"exit_{len(row['exits'])}"],
                                         2)
        assert row["deepest_difference"] == pytest.approx(
            row["exits"][-1] - row["published_exits"][-1], abs=0.011)
    table = (tmp_path / "comparison.md").read_text()
    assert "Smoke setting" in table and "67.85 / 74.57 / 78.23 / 78.64" in table
    record = json.loads((tmp_path / "comparison.json").read_text())
    # It says who wrote both files (a later run replaces only those): see test_output_folders.
    assert record.pop("written_by") == "byot-reproduce"
    assert record.pop("file_sha256") == {"comparison.md": sha256(tmp_path / "comparison.md")}
    assert record == comparison
    # Run again: both runs are complete, so they resume without training.
    again = reproduce(["resnet18"], output_dir=str(tmp_path), smoke=True)
    assert [r["train_seconds"] for r in again["rows"]] == [r["train_seconds"]
                                                          for r in comparison["rows"]]


def test_unknown_rows_are_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="'vgg19'.*resnet18, resnet50"):
        reproduce(["vgg19"], output_dir=str(tmp_path), smoke=True)
    assert not any(tmp_path.iterdir())
