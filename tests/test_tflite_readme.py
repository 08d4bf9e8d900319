"""tflite/README.md against a fresh export of its reference model: every file, tensor
name, shape and dtype of its tensor table, every manifest field of its manifest table,
and every name its Kotlin code looks up must be what the exporter writes."""

import re
from pathlib import Path

import keras
import pytest

from byot_keras.export import QUANTIZATIONS, LiteRTModel, export_tflite, read_manifest
from byot_keras.export.readme_tables import (
    export_files,
    generated_block,
    manifest_paths,
    reference_model,
)

README = Path(__file__).resolve().parents[1] / "tflite" / "README.md"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("readme") / "export"
    export_tflite(reference_model(), folder)  # float32, every exit file and the cascade
    return folder


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
    assert {row[0] for row in rows} == set(export_files(manifest, "float32"))
    documented = {}
    for file, direction, name, shape, dtype in rows:
        documented.setdefault(file, set()).add((direction, name))
        runner = LiteRTModel(export_dir / file)
        details = runner.input_details if direction == "input" else runner.output_details
        assert name in details, (file, direction, name, list(details))
        assert [int(d) for d in details[name]["shape"]] == [
            int(d) for d in re.findall(r"\d+", shape)], (file, name)
        assert details[name]["dtype"].__name__ == dtype, (file, name)
    for file, tensors in documented.items():  # nothing in a file left out of the table
        runner = LiteRTModel(export_dir / file)
        assert tensors == ({("input", n) for n in runner.input_names}
                           | {("output", n) for n in runner.output_names}), file


def test_manifest_table_lists_every_field(export_dir, readme):
    present = manifest_paths(read_manifest(export_dir))
    rows = _table_rows(generated_block(readme, "manifest"))
    documented = {row[0]: row[2] for row in rows}
    assert set(present) <= set(documented), set(present) - set(documented)
    for path, example in documented.items():
        assert path in present or example.startswith("written only"), path


def test_kotlin_code_uses_only_real_names(export_dir, readme):
    manifest = read_manifest(export_dir)
    tensor_names = set()
    for file in export_files(manifest, "float32"):
        runner = LiteRTModel(export_dir / file)
        tensor_names |= set(runner.input_names) | set(runner.output_names)
    manifest_keys = {part.split("[")[0] for path in manifest_paths(manifest)
                     for part in path.split(".")}
    # "byot" is the sample's asset folder and log tag, not a name from the export.
    allowed = tensor_names | manifest_keys | {manifest["signature"], "byot"} | set(
        QUANTIZATIONS)
    blocks = re.findall(r"```kotlin\n(.*?)```", readme, re.S)
    kotlin = "\n".join(b for b in blocks if "dependencies {" not in b)  # not the Gradle one
    literals = set(re.findall(r'"([A-Za-z0-9_]+)"', kotlin))
    assert {"image", "trunk_in", "trunk_out", "logits"} <= literals
    assert literals <= allowed, literals - allowed
