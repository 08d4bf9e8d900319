"""The reference early-exit runtime (byot_keras.export.runtime) on a tiny real export:
same answers as byot_keras.inference on the Keras logits, stops after segment 1 at
threshold 0, clear errors, the sweep's files, and one quick latency benchmark call.
No timing assertions."""

import csv
import json
import shutil

import keras
import numpy as np
import pytest

from byot_keras.data import DIGITS_NORMALIZATION, load_digits
from byot_keras.export import CascadeRuntime, export_tflite, read_manifest, run_sweep
from byot_keras.export.runtime import export_inputs
from byot_keras.inference import early_exit_from_logits, softmax
from tflite.readme_tables import reference_model

TIE = 1e-4  # confidences this close to the threshold may fall either way in TFLite


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An untrained tiny ResNet-18 (4 exits) that records the digits' normalisation: the
    cascade plus the deepest exit's file, float32; 48 digits test images as the files
    take them (0..255 pixels), their labels, and the Keras logits for them."""
    keras.utils.set_random_seed(0)
    model = reference_model()
    model.input_normalization = DIGITS_NORMALIZATION
    export_dir = tmp_path_factory.mktemp("runtime") / "export"
    export_tflite(model, export_dir, exits=[model.num_exits], multi_signature=False)
    _, (x_test, y_test) = load_digits()
    images, labels = x_test[:48], y_test[:48]
    pixels, warning = export_inputs(read_manifest(export_dir), images, DIGITS_NORMALIZATION)
    assert warning is None and pixels.max() == 255.0
    return export_dir, pixels, labels, model.predict(images, verbose=0)


@pytest.fixture(scope="module")
def runtime(exported):
    return CascadeRuntime(exported[0], num_threads=1)


def _thresholds(keras_logits):
    """Thresholds that split the images between exits for this (untrained) model."""
    confidences = np.concatenate([softmax(np.asarray(keras_logits[f"exit_{k}"], np.float64))
                                  .max(-1) for k in (1, 2)])
    return [0.0, *np.quantile(confidences, [0.25, 0.5, 0.75]).round(4), 1.0]


def test_answers_equal_early_exit_from_logits_on_keras_logits(exported, runtime):
    _, images, _, keras_logits = exported
    confidences = np.stack([softmax(np.asarray(keras_logits[f"exit_{k}"], np.float64))
                            .max(-1) for k in range(1, runtime.num_exits + 1)])
    several_exits_seen = False
    for threshold in _thresholds(keras_logits):
        expected = early_exit_from_logits(keras_logits, threshold)
        got = runtime.classify_batch(images, threshold)
        clear = ~np.any(np.abs(confidences - threshold) < TIE, axis=0)
        assert clear.mean() > 0.8, threshold
        np.testing.assert_array_equal(got.exits[clear], expected.exits[clear])
        np.testing.assert_array_equal(got.predictions[clear], expected.predictions[clear])
        np.testing.assert_allclose(got.confidences[clear], expected.confidences[clear],
                                   atol=TIE)
        assert np.all(got.latency_ms > 0)
        several_exits_seen |= len(np.unique(expected.exits)) > 1
    assert several_exits_seen  # the thresholds did exercise the cascade
    logits = runtime.exit_logits(images)
    for name, reference in keras_logits.items():
        if name.startswith("exit_"):
            np.testing.assert_allclose(logits[name], reference, atol=1e-4)


def test_threshold_zero_answers_at_exit_1_running_only_segment_1(exported, runtime):
    _, images, _, _ = exported
    calls = [0] * runtime.num_exits
    original = list(runtime.segments)

    class Counting:  # counts the runs of one segment, delegates the rest
        def __init__(self, k):
            self.k = k

        def raw(self, **inputs):
            calls[self.k] += 1
            return original[self.k].raw(**inputs)

        def __getattr__(self, name):
            return getattr(original[self.k], name)

    def counting(k):
        return Counting(k)

    runtime.segments[:] = [counting(k) for k in range(runtime.num_exits)]
    try:
        result = runtime.classify_batch(images[:5], threshold=0.0)
        answer = runtime.classify(images[0], threshold=0.0)
    finally:
        runtime.segments[:] = original
    assert result.exits.tolist() == [1] * 5 and answer.exit == 1
    assert calls == [6, 0, 0, 0]
    assert answer.prediction == result.predictions[0]
    assert 0.0 < answer.confidence <= 1.0


def test_bad_thresholds_folders_and_inputs_fail_clearly(exported, runtime, tmp_path):
    export_dir, images, labels, _ = exported
    for threshold in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="threshold must be a probability"):
            runtime.classify(images[0], threshold)
    with pytest.raises(ValueError, match="threshold must be a probability"):
        run_sweep(export_dir, images[:2], labels[:2], tmp_path / "sweep", thresholds=[2.0])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CascadeRuntime(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No manifest.json"):
        CascadeRuntime(tmp_path / "empty")
    with pytest.raises(ValueError, match="No 'int8' files"):
        CascadeRuntime(export_dir, quantization="int8")
    with pytest.raises(ValueError, match="Expected images of shape"):
        runtime.classify(np.zeros((16, 16, 3)), 0.5)
    broken = tmp_path / "broken"
    shutil.copytree(export_dir, broken)
    (broken / "cascade" / "segment_3.tflite").unlink()
    with pytest.raises(FileNotFoundError, match="segment_3.tflite.*missing"):
        CascadeRuntime(broken)
    old = {**read_manifest(export_dir), "format_version": 1}  # normalised input, logits
    (broken / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="format_version 1.*Export the model again"):
        CascadeRuntime(broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_manifest(broken)


def test_sweep_writes_csv_markdown_and_png(exported, tmp_path):
    export_dir, images, labels, keras_logits = exported
    thresholds = [0.0, _thresholds(keras_logits)[2], 1.0]
    rows, paths = run_sweep(export_dir, images[:16], labels[:16], tmp_path / "sweep",
                            thresholds=thresholds, repeats=2, warmup=1, num_threads=1)
    assert [row["threshold"] for row in rows] == thresholds
    assert rows[0]["mean_exit"] == 1.0 and rows[0]["exit_fractions"][0] == 1.0
    for row in rows:
        assert sum(row["exit_fractions"]) == pytest.approx(1.0)
        assert 0.0 <= row["accuracy"] <= 1.0 and row["mean_latency_ms"] > 0
    assert rows[0]["mean_mflops"] < rows[-1]["mean_mflops"]
    with open(paths["csv"]) as f:
        table = list(csv.DictReader(f))
    assert [float(r["threshold"]) for r in table] == thresholds
    assert {"accuracy", "mean_exit", "mean_latency_ms", "exit_4_fraction"} <= set(table[0])
    assert "| threshold | accuracy |" in open(paths["md"]).read()
    with open(paths["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "sweep" / "early_exit_sweep.png").stat().st_size > 1000


def test_latency_benchmark_quick_mode(exported, tmp_path):
    from benchmarks import tflite_latency

    export_dir = tmp_path / "export"
    shutil.copytree(exported[0], export_dir)
    output = tmp_path / "latency.md"
    latency = tflite_latency.run_benchmark(str(export_dir), str(output), threads=(1,),
                                           repeats=2, rounds=1, warmup=1)
    manifest = json.loads((export_dir / "manifest.json").read_text())
    assert manifest["latency"] == json.loads(json.dumps(latency))
    figures = manifest["latency"]["results"]["float32"]["threads_1"]
    assert len(figures["cascade_ms"]) == len(figures["segment_ms"]) == 4
    assert figures["exit_ms"][:3] == [None] * 3 and figures["exit_ms"][3] > 0
    assert figures["exit_cpu_ms"][:3] == [None] * 3 and figures["exit_cpu_ms"][3] > 0
    assert len(figures["cascade_cpu_ms"]) == 4
    assert [row["target"] for row in latency["targets"]] == [
        "cascade to exit N / single deepest file",
        "cascade to exit N / single deepest file (thread CPU time)",
        "cascade to exit N / single deepest file (paired runs)"]
    assert figures["cascade_paired_ratio"] > 0
    assert "## Targets" in output.read_text()
    assert not [p for p in export_dir.iterdir() if p.name.startswith(".manifest-")]


def test_latency_targets_from_given_figures():
    from benchmarks.tflite_latency import check_targets

    manifest = {"exits": [{"flops": 100}, {"flops": 400}]}
    results = {
        "float32": {"threads_1": {"exit_ms": [3.0, 8.0], "cascade_ms": [3.0, 8.4]}},
        "int8": {"threads_1": {"exit_ms": [1.0, 5.0], "cascade_ms": [1.0, 6.0]}},
    }
    rows = {(r["target"].split()[0], r["quantization"], r["item"]): r
            for r in check_targets(manifest, results)}
    share = rows[("exit", "float32", "exit_1")]  # 3 ms vs 25 % of 8 ms = 2 ms
    assert share["measured"] == pytest.approx(1.5) and not share["met"]
    assert rows[("int8", "int8", "exit_1")]["met"]          # 3x
    assert not rows[("int8", "int8", "exit_2")]["met"]      # 1.6x
    assert rows[("cascade", "float32", "exit_2")]["met"]    # 1.05x
    assert not rows[("cascade", "int8", "exit_2")]["met"]   # 1.2x
