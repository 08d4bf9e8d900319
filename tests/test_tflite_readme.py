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

