"""The model cards in zoo/ (zoo/cards.py, zoo/generate_cards.py).

Building every model takes minutes, so the cards are rendered from zoo/facts.json, the
facts measured on the built models. The tests check that (1) every registered model has
facts and a card, (2) every checked-in file equals a fresh rendering, (3) the cached facts
equal a fresh build for a sample: resnet18_byot every run, plus the cheapest model of one
family that rotates daily (BYOT_CARDS_REBUILD=all, or a comma list of names, rebuilds
those instead), and (4) facts shown on the cards equal independent references
(published parameter counts, a closed-form MAC count, the papers' accuracy tables).
"""

import datetime
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from byot_keras import zoo
from zoo import cards

ZOO_DIR = Path(__file__).resolve().parents[1] / "zoo"
REGENERATE = "python zoo/generate_cards.py"
ANCHOR = "resnet18_byot"


@pytest.fixture(scope="module")
def facts():
    return cards.load_facts(ZOO_DIR / cards.FACTS_FILE)


@pytest.fixture(scope="module")
def measurements():
    return cards.load_measurements(ZOO_DIR / cards.MEASUREMENTS_FILE)


def card_text(name: str) -> str:
    return (ZOO_DIR / f"{name}.md").read_text()


# ---------------------------------------------------------------------------------------
# In sync with the registry and with a fresh rendering.


def test_every_registered_model_has_facts_and_nothing_else(facts):
    registered, cached = set(zoo.list_models()), set(facts["models"])
    assert registered == cached, (
        f"zoo/facts.json is out of date: registered models without a card "
        f"{sorted(registered - cached)}, cards of unregistered models "
        f"{sorted(cached - registered)}. Run `{REGENERATE} --reuse_facts` (builds only the "
        "new models).")


def test_checked_in_files_equal_a_fresh_rendering(facts, measurements):
    expected = cards.render_all(facts, measurements)
    differing = [name for name, text in expected.items()
                 if not (ZOO_DIR / name).exists() or (ZOO_DIR / name).read_text() != text]
    stale = cards.stale_cards(ZOO_DIR, zoo.list_models())
    assert not differing and not stale, (
        f"zoo/ differs from a fresh rendering in {differing}; stale cards {stale}. Run "
        f"`{REGENERATE} --reuse_facts` (text, published or measured numbers changed) or "
        f"`{REGENERATE}` (an architecture changed).")


def test_cached_facts_have_the_current_structure(facts):
    """Cheap for every model: family, generic-builder arguments, configurations."""
    for name, cached in facts["models"].items():
        assert cached["family"] == cards.family_of(name), name
        if "configs" not in cached:
            assert cached == cards.model_facts(name), name  # generic builder: no build
            continue
        labels = [config["label"] for config in cached["configs"]]
        assert labels == [c.label for c in cards.card_configs(name)], (
            f"{name}: cached configurations {labels}; run `{REGENERATE} --rebuild {name} "
            "--reuse_facts`.")


def models_to_rebuild(facts) -> dict[str, list[str] | None]:
    """name -> config labels to rebuild (None: all of them)."""
    buildable = {n: f for n, f in facts["models"].items() if "configs" in f}
    override = os.environ.get("BYOT_CARDS_REBUILD", "").strip()
    if override == "all":
        return {name: None for name in buildable}
    if override:
        return {name.strip(): None for name in override.split(",")}
    families = sorted({f["family"] for f in buildable.values()})
    family = families[datetime.date.today().toordinal() % len(families)]
    cheapest = min((n for n, f in buildable.items() if f["family"] == family),
                   key=lambda n: (buildable[n]["configs"][0]["layers"], n))
    return {ANCHOR: ["cifar100"], cheapest: ["cifar100"]}


def test_cached_facts_equal_a_fresh_build(facts):
    checked = models_to_rebuild(facts)
    for name, labels in checked.items():
        rebuilt = cards.model_facts(name, labels=labels)
        cached = dict(facts["models"][name])
        cached["configs"] = [c for c in cached["configs"] if labels is None
                             or c["label"] in labels]
        assert rebuilt == cached, (
            f"The cached facts of {name} differ from a fresh build: the architecture or the "
            f"counting changed. Run `{REGENERATE}` (or `{REGENERATE} --reuse_facts "
            f"--rebuild <names>` for the changed families).")


# ---------------------------------------------------------------------------------------
# Card facts against independent references.


def cost_rows(card: str, title: str) -> list[list[str]]:
    """Cells of the exit rows of the cost table under the `### <title>:` heading."""
    section = card.split(f"### {title}:", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| `exit_")]


def exit_row(card: str, title: str, exit_name: str) -> list[str]:
    rows = [row for row in cost_rows(card, title) if row[0] == f"`{exit_name}`"]
    assert len(rows) == 1, f"no single row for {exit_name} under {title}"
    return rows[0]


def cifar_resnet18_macs(num_classes: int) -> int:
    """Closed form: CIFAR ResNet-18 (3x3 stem, 4 stages of 2 basic blocks, 1x1 projection
    shortcuts where the width changes), conv and dense multiply-accumulates at 32 px."""
    macs = 32 * 32 * 64 * 3 * 9  # stem
    size, cin = 32, 64
    for stage, width in enumerate((64, 128, 256, 512)):
        if stage:
            size //= 2
            macs += size * size * width * cin  # projection shortcut
        macs += size * size * width * cin * 9 + 3 * size * size * width * width * 9
        cin = width
    return macs + 512 * num_classes


def test_resnet18_card_matches_published_count_and_closed_form_macs():
    card = card_text("resnet18_byot")
    cells = exit_row(card, "CIFAR-100", "exit_4")
    assert cells[:3] == ["`exit_4`", "4", "11,220,132"]  # CIFAR ResNet-18, 100 classes
    macs = cifar_resnet18_macs(100)
    assert macs == 555_468_800
    assert cells[5] == f"{macs / 1e6:,.1f}" and cells[6] == f"{2 * macs / 1e6:,.1f}"
    assert exit_row(card, "ImageNet", "exit_4")[2] == "11,689,512"  # torchvision resnet18
    index = (ZOO_DIR / "README.md").read_text()
    assert f"| [`resnet18_byot`](resnet18_byot.md) | ResNet | 4 | 11,220,132 | " \
           f"{2 * macs / 1e9:.3f} |" in index


@pytest.mark.parametrize("name, title, trainable", [
    ("resnet50_byot", "ImageNet", "25,557,032"),  # torchvision resnet50
    ("resnext50_32x4d_byot", "ImageNet", "25,028,904"),  # torchvision resnext50_32x4d
    ("vgg16_byot", "ImageNet", "138,365,992"),  # torchvision vgg16_bn
    ("wrn28_10_byot", "CIFAR-100", "36,536,884"),  # WRN-28-10 ("36.5M", WRN paper)
])
def test_deepest_exit_matches_published_parameter_count(name, title, trainable):
    deepest = cost_rows(card_text(name), title)[-1]
    assert deepest[2] == trainable


def test_resnet50_imagenet_card_gives_4_1_gmacs():
    cells = exit_row(card_text("resnet50_byot"), "ImageNet", "exit_4")
    assert round(float(cells[5].replace(",", "")) / 1000, 2) == 4.09  # torchvision: 4.09 G


# The BYOT paper's CIFAR-100 table (baseline, classifiers 1/4..4/4, ensemble), copied
# from the paper independently of cards.PUBLISHED.
BYOT_TABLE = {
    "ResNet18": (77.09, (67.85, 74.57, 78.23, 78.64), 79.67),
    "ResNet50": (77.68, (68.23, 74.21, 75.23, 80.56), 81.04),
    "ResNet101": (77.98, (69.45, 77.29, 81.17, 81.23), 82.03),
    "ResNet152": (79.21, (68.84, 78.72, 81.43, 81.61), 82.29),
    "VGG19 (BN)": (64.47, (63.59, 67.04, 68.03, 67.73), 68.54),
    "WideResNet44-8": (79.93, (72.54, 81.15, 81.96, 82.09), 82.61),
}


def test_published_rows_equal_the_paper_and_name_registered_models():
    byot = [row for row in cards.PUBLISHED if row.method == "BYOT"]
    assert {row.network: (row.baseline, row.classifiers, row.ensemble) for row in byot} \
        == BYOT_TABLE
    baselines = [row for row in cards.PUBLISHED if row.method == cards.BASELINE]
    assert {row.network: row.classifiers for row in baselines} == \
        {network: (baseline,) for network, (baseline, _, _) in BYOT_TABLE.items()}
    for row in cards.PUBLISHED:
        assert row.model in zoo.list_models(), row
        assert "arXiv 1905.08094" in row.source, row
    assert {row.model for row in cards.PUBLISHED if row.comparable} == {
        "resnet18_byot", "resnet50_byot", "resnet101_byot", "resnet152_byot",
        "resnet18", "resnet50", "resnet101", "resnet152"}


def test_resnet18_card_shows_the_published_row():
    card = card_text("resnet18_byot")
    published = card.split("## Published CIFAR-100 top-1 (%)", 1)[1].split("\n## ", 1)[0]
    assert "| ResNet18 | BYOT | 77.09 | 67.85 / 74.57 / 78.23 / 78.64 | 79.67 |" in published
    assert "not directly comparable" not in published
    assert "not directly comparable" in card_text("vgg19_byot")
    baseline = card_text("resnet18").split("## Published CIFAR-100 top-1 (%)", 1)[1]
    assert "| ResNet18 | baseline (cross-entropy only) | - | 77.09 | - |" in baseline


# ---------------------------------------------------------------------------------------
# Measurements.


def measurement(**overrides) -> dict:
    entry = {"model": "resnet18_byot", "config": {}, "method": "BYOT (official preset)",
             "variant": "Keras float32", "dataset": "cifar100", "epochs": 200,
             "exit_top1": [67.5, 74.25, 77.0, 78.125], "ensemble_top1": 79.5,
             "command": "python recipes/train.py --model resnet18_byot | tee log.txt",
             "date": "2026-11-22", "source": "runs/example/results.json"}
    entry.update(overrides)
    return entry


@pytest.mark.parametrize("overrides, message", [
    ({"model": "resnet19_byot"}, "not registered"),
    ({"exit_top1": [67.5, 101.0, 77.0, 78.0]}, "exit_top1"),
    ({"exit_top1": [0.675, 0.7, "0.77", 0.78]}, "exit_top1"),
    ({"ensemble_top1": -1}, "ensemble_top1"),
    ({"date": "22/11/2026"}, "date"),
    ({"command": " "}, "command"),
    ({"epochs": 2.5}, "epochs"),
    ({"accuracy": 0.9}, "unknown fields ['accuracy']"),
])
def test_bad_measurements_are_refused_naming_the_field(tmp_path, overrides, message):
    path = tmp_path / "measurements.json"
    with pytest.raises(ValueError, match=re.escape(message)):
        cards.append_measurement(measurement(**overrides), path)
    assert not path.exists()  # nothing half-written


def test_measurement_without_a_field_is_refused(tmp_path):
    entry = measurement()
    del entry["source"]
    with pytest.raises(ValueError, match=r"missing fields \['source'\]"):
        cards.append_measurement(entry, tmp_path / "measurements.json")


def test_appended_measurement_appears_on_the_card(tmp_path, facts):
    path = tmp_path / "measurements.json"
    cards.append_measurement(measurement(), path)
    cards.append_measurement(measurement(variant="TFLite int8 (PTQ)", ensemble_top1=None,
                                         exit_top1=[None, None, None, 77.75]), path)
    entries = cards.load_measurements(path)
    assert json.loads(path.read_text())["format_version"] == cards.MEASUREMENTS_VERSION
    card = cards.render_card("resnet18_byot", facts, entries)
    measured = card.split("## Measured by us", 1)[1]
    assert ("| 1 | cifar100 | BYOT (official preset) | Keras float32 | default | 200 "
            "| 67.50 / 74.25 / 77.00 / 78.12 | 79.50 | 2026-11-22 |") in measured
    assert "| - / - / - / 77.75 | - |" in measured
    assert ("1. `python recipes/train.py --model resnet18_byot | tee log.txt` (numbers "
            "from `runs/example/results.json`).") in measured
    assert "None yet" not in measured
    other = cards.render_card("vgg11_byot", facts, entries)
    assert "None yet" in other.split("## Measured by us", 1)[1]

    wrong_count = [measurement(exit_top1=[70.0, 71.0, 72.0])]
    with pytest.raises(ValueError, match="3 exit_top1 values; the model has 4 exits"):
        cards.render_card("resnet18_byot", facts, wrong_count)


def test_checked_in_measurements_are_valid(measurements):
    for entry in measurements:
        assert (ZOO_DIR.parent / entry["source"]).exists(), entry


# ---------------------------------------------------------------------------------------
# The writer.


def test_write_cards_reuses_facts_replaces_stale_cards_and_keeps_other_files(tmp_path, facts):
    # With a model missing from facts.json, write_cards would build it (minutes); that
    # case is reported by test_every_registered_model_has_facts_and_nothing_else.
    assert set(facts["models"]) == set(zoo.list_models()), f"run `{REGENERATE} --reuse_facts`"
    for name in (cards.FACTS_FILE, cards.MEASUREMENTS_FILE):
        shutil.copy(ZOO_DIR / name, tmp_path / name)
    (tmp_path / "old_model.md").write_text(f"# old_model\n\n{cards.GENERATED_MARKER}\n")
    (tmp_path / "notes.md").write_text("hand-written notes\n")
    written = cards.write_cards(tmp_path, reuse_facts=True)  # every model cached: no build
    assert not (tmp_path / "old_model.md").exists()
    assert (tmp_path / "notes.md").read_text() == "hand-written notes\n"
    assert sorted(written) == sorted([f"{n}.md" for n in zoo.list_models()]
                                     + ["README.md", cards.FACTS_FILE])
    for name in written:
        assert (tmp_path / name).read_text() == (ZOO_DIR / name).read_text(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cards-")]
    with pytest.raises(ValueError, match="Cannot rebuild \\['resnet19_byot'\\]"):
        cards.write_cards(tmp_path, reuse_facts=True, rebuild=["resnet19_byot"])
