"""tflite/README.md against a fresh export of its reference model: every file, signature,
tensor name, shape and dtype of its tensor table, every manifest field of its manifest
table, and every name its Kotlin code looks up must be what the exporter writes. The same
export (conftest.py) checks the multi-signature `model.tflite` against the Keras exits in
test_export_multisignature.py (real images: test_cifar10.py)."""

import re
from pathlib import Path

import pytest

from byot_keras.export import (
    QUANTIZATIONS,
    LiteRTModel,
    read_manifest,
)
from tflite.readme_tables import (
    MANIFEST_FIELDS,
    export_signatures,
    generated_block,
    manifest_paths,
)

README = Path(__file__).resolve().parents[1] / "tflite" / "README.md"


@pytest.fixture(scope="module")
def exported(reference_export):
    # float32: every exit file, the cascade and the multi-signature model.tflite (conftest)
    return reference_export


@pytest.fixture(scope="module")
def export_dir(exported):
    return exported[1]


@pytest.fixture(scope="module")
def readme():
    return README.read_text()


def _table_rows(block: str) -> list[list[str]]:
    rows = [line for line in block.splitlines() if line.startswith("|")]
    return [[cell.strip().strip("`") for cell in row.strip("|").split("|")]
            for row in rows[2:]]  # past the header and the |---| line


def test_tensor_table_matches_the_files(export_dir, readme):
    manifest = read_manifest(export_dir)
    rows = _table_rows(generated_block(readme, "tensors"))
    expected = set(export_signatures(manifest, "float32"))
    assert ("model.tflite", "exit_1") in expected
    assert {(row[0], row[1]) for row in rows} == expected
    documented = {}
    for file, signature, direction, name, shape, dtype in rows:
        documented.setdefault((file, signature), set()).add((direction, name))
        runner = LiteRTModel(export_dir / file, signature=signature)
        details = runner.input_details if direction == "input" else runner.output_details
        assert name in details, (file, signature, direction, name, list(details))
        assert [int(d) for d in details[name]["shape"]] == [
            int(d) for d in re.findall(r"\d+", shape)], (file, name)
        assert details[name]["dtype"].__name__ == dtype, (file, name)
    for (file, signature), tensors in documented.items():  # nothing left out of the table
        runner = LiteRTModel(export_dir / file, signature=signature)
        assert runner.signature_names == ([signature] if signature == manifest["signature"]
                                          else manifest["multi_signature"]["signatures"])
        assert tensors == ({("input", n) for n in runner.input_names}
                           | {("output", n) for n in runner.output_names}), file


def test_manifest_table_lists_every_field(export_dir, readme):
    present = manifest_paths(read_manifest(export_dir))
    rows = _table_rows(generated_block(readme, "manifest"))
    documented = {row[0]: row[2] for row in rows}
    assert set(present) <= set(documented), set(present) - set(documented)
    conditional = {path for path, _, condition in MANIFEST_FIELDS if condition}
    for path, example in documented.items():
        # Fields of a float32-only export are always there; the rest (int8 calibration,
        # accuracies, latency) only under their documented condition.
        assert path in present or example.startswith("written only") or (
            path in conditional), path


def test_kotlin_code_uses_only_real_names(export_dir, readme):
    manifest = read_manifest(export_dir)
    tensor_names, signatures = set(), set()
    for file, signature in export_signatures(manifest, "float32"):
        runner = LiteRTModel(export_dir / file, signature=signature)
        tensor_names |= set(runner.input_names) | set(runner.output_names)
        signatures.add(signature)
    manifest_keys = {part.split("[")[0] for path in manifest_paths(manifest)
                     for part in path.split(".")}
    # "byot" is the sample's asset folder and log tag, not a name from the export.
    allowed = tensor_names | manifest_keys | signatures | {"byot"} | set(QUANTIZATIONS)
    blocks = re.findall(r"```kotlin\n(.*?)```", readme, re.S)
    kotlin = "\n".join(b for b in blocks if "dependencies {" not in b)  # not the Gradle one
    literals = set(re.findall(r'"([A-Za-z0-9_]+)"', kotlin))
    assert {"image", "trunk_in", "trunk_out", "logits", "exit_2"} <= literals
    assert literals <= allowed, literals - allowed



SHIPPED = README.parents[1] / "benchmarks" / "results" / "shipped_cifar10.json"


def _table_after(text: str, heading: str) -> list[list[str]]:
    """The rows of the first Markdown table after the line that starts with `heading`."""
    rest = text[text.index(heading):]
    lines = rest.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")),
               len(lines))
    return _table_rows("\n".join(lines[start:end]))


def _percent(cell: str) -> float:
    return float(cell.rstrip(" %"))


def test_shipped_model_figures_are_the_measured_ones(readme):
    """The shipped model's file and cascade tables quote benchmarks/results/
    shipped_cifar10.json (written by `python -m benchmarks.shipped_cifar10`)."""
    import json

    result = json.loads(SHIPPED.read_text())
    files = {(f["exit"], f["quantization"]): f for f in result["files"]}
    rows = _table_after(readme, "Its files on all 10,000")
    assert [row[0] for row in rows] == ["exit_1", "exit_2", "exit_3", "exit_4"]
    for name, float_kb, float_top1, int8_kb, int8_top1, agreement in rows:
        for quantization, kb, top1 in (("float32", float_kb, float_top1),
                                       ("int8", int8_kb, int8_top1)):
            measured = files[(name, quantization)]
            assert _percent(top1) == pytest.approx(100 * measured["accuracy"], abs=0.005)
            assert float(kb.split()[0].replace(",", "")) == round(measured["bytes"] / 1000)
        assert _percent(agreement) == pytest.approx(
            100 * files[(name, "int8")]["agreement_with_keras"], abs=0.005)
    sweep = {row["threshold"]: row for row in result["sweep"]["float32"]}
    rows = _table_after(readme, "The shipped CIFAR-10 model's float32 cascade")
    assert len(rows) >= 4
    for threshold, top1, mean_exit, mflops, fractions in rows:
        measured = sweep[float(threshold)]
        assert _percent(top1) == pytest.approx(100 * measured["accuracy"], abs=0.005)
        assert float(mean_exit) == pytest.approx(measured["mean_exit"], abs=0.005)
        assert float(mflops) == pytest.approx(measured["mean_mflops"], abs=0.05)
        shares = [float(f) for f in fractions.rstrip(" %").split(" / ")]
        assert shares == pytest.approx([100 * f for f in measured["exit_fractions"]],
                                       abs=0.05)
