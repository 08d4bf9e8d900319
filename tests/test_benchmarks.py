"""The benchmark code (benchmarks/run.py and helpers) runs end to end and reads profiles
correctly. Timings are not asserted: they are measurements, not behaviour."""

import json

import numpy as np
import pytest

from benchmarks import profiling, training_speed
from benchmarks import run as bench

MS = 10**9  # picoseconds per millisecond


def _write_xplane(path, ops, memory):
    """An XSpace with one host plane: `ops` are (name, start_ms, duration_ms) on one
    executor thread, `memory` (event name, bytes in use) allocator records."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    plane = space.planes.add(name="/host:CPU")
    names = {}

    def metadata(name):
        if name not in names:
            names[name] = len(names) + 1
            plane.event_metadata[names[name]].name = name
        return names[name]

    plane.stat_metadata[1].name = "bytes_allocated"
    line = plane.lines.add(name="tf_Compute/1")
    for name, start, duration in ops:
        line.events.add(metadata_id=metadata(name), offset_ps=int(start * MS),
                        duration_ps=int(duration * MS))
    for offset, (name, in_use) in enumerate(memory):
        event = line.events.add(metadata_id=metadata(name), offset_ps=offset, duration_ps=0)
        event.stats.add(metadata_id=1, int64_value=in_use)
    path.write_bytes(space.SerializeToString())


def test_profile_summary_counts_self_time_per_model_part(tmp_path):
    network = "resnet18_byot_network"
    ops = [
        # The function call wraps every op: control ops are not counted.
        ("StatefulPartitionedCall:StatefulPartitionedCall", 0, 100),
        (f"StatefulPartitionedCall/m/{network}_1/stage1_conv1_1/Conv2D:Conv2D", 1, 10),
        # An op with one nested in it: 10 - 3 ms of its own.
        (f"gradient_tape/m/{network}_1/stage1_bn1_1/mul:Mul", 20, 10),
        (f"gradient_tape/m/{network}_1/stage1_bn1_1/sub:Sub", 22, 3),
        (f"StatefulPartitionedCall/m/{network}_1/exit_1_head_sep1_dw1_1/d:Depthwise", 40, 4),
        (f"StatefulPartitionedCall/m/{network}_1/exit_4_1/MatMul:MatMul", 45, 2),
        ("StatefulPartitionedCall/adaptation_1_1/MatMul:MatMul", 48, 1),
        ("StatefulPartitionedCall/AddN_7:AddN", 50, 5),
        ("StatefulPartitionedCall/Softmax:Softmax", 56, 0.5),
        ("StatefulPartitionedCall/sgd/Mul_2:Mul", 60, 2),
        ("ExecutorState::Process", 70, 9),  # a runtime marker, not an op
    ]
    memory = [("MemoryAllocation", 1000), ("MemoryAllocation", 5000),
              ("MemoryDeallocation", 3000), ("MemoryAllocation", 4000)]
    path = tmp_path / "host.xplane.pb"
    _write_xplane(path, ops, memory)

    summary = profiling.summarize_xplane(str(path), network_name=network, num_exits=4)

    # Hand-computed: backbone = conv 10 + mul (10 - 3) + sub 3 + deepest classifier 2.
    assert summary["op_ms"] == pytest.approx({
        "backbone": 22.0, "heads": 5.0, "gradient sums": 5.0, "loss and metrics": 0.5,
        "optimizer": 2.0})
    # Inside the heads: the depthwise op of a SepConv, and the adaptation layer's MatMul.
    assert summary["heads_by_op"] == pytest.approx({"Depthwise": 4.0, "MatMul": 1.0})
    assert summary["heads_by_layer"] == pytest.approx({"sep_dw": 4.0,
                                                       profiling.HEAD_OTHER: 1.0})
    assert summary["memory"]["peak_bytes_in_use"] == 5000
    assert summary["memory"]["step_temporary_bytes"] == 5000 - 1000


def test_paired_ratio_is_the_median_of_per_round_ratios():
    values, reference = [3.0, 2.0, 9.0, 4.0], [1.5, 2.0, 3.0, 1.0]
    expected = float(np.median(np.array(values) / np.array(reference)))
    assert training_speed.paired_ratio(values, reference) == pytest.approx(expected)


def test_unknown_mode_or_section_is_refused_with_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="smoke, quick, full"):
        bench.run("fast", output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="speed, peer, inference, starvation, accuracy"):
        bench.run("smoke", output_dir=str(tmp_path), sections=("speed", "latency"))


def test_smoke_run_writes_the_report_and_its_figures(tmp_path):
    results = bench.main(["--smoke", "--output_dir", str(tmp_path), "--data_dir", "",
                          "--sections", "speed,inference"])

    stored = json.loads((tmp_path / "benchmarks_smoke.json").read_text())
    page = (tmp_path / "RESULTS_smoke.md").read_text()
    assert stored["targets"] == results["targets"]
    assert "python -m benchmarks.run --smoke" in page
    for heading in ("## Targets", "## Training throughput", "## Where a training step's time",
                    "## Inference latency per exit"):
        assert heading in page

    group = results["speed"]["alexnet_tiny"]
    ce, byot = group["results"]["ce"], group["results"]["byot"]
    assert byot["images_per_s"] == pytest.approx(byot["batch_size"] / byot["step_s"])
    assert len(byot["windows_wall_s"]) == group["group"]["windows"]
    # The plain network's training MACs are its deployable exit's (a separate count).
    from byot_keras import zoo

    plain = zoo.create_model("alexnet_byot", method="ce", num_classes=10,
                             width_multiplier=0.125)
    assert ce["train_macs"] == plain.exit_costs()[-1]["macs"]
    assert byot["flops_ratio"] == pytest.approx(byot["train_macs"] / ce["train_macs"])
    assert byot["flops_ratio"] > 1.0
    # Only the multi-exit model has heads; both run backbone ops.
    assert ce["profile"]["op_ms"]["heads"] == 0
    assert byot["profile"]["op_ms"]["heads"] > 0 and byot["profile"]["op_ms"]["backbone"] > 0
    (row,) = results["targets"]
    assert row["method"] == "byot"
    assert row["limit"] == pytest.approx(bench.OVERHEAD_TARGET * byot["flops_ratio"])
    latency = results["inference"]["keras"]["median_ms"]
    assert sorted(latency) == ["all exits", "exit_1", "exit_2", "exit_3"]
    assert all(value > 0 for value in latency.values())


def test_readme_performance_block_is_the_renderer_output_of_the_stored_json():
    """README.md's "Performance" block is generated (python -m benchmarks.run --full
    [--render_only]), not typed: it equals what the renderer makes of the checked-in
    JSON."""
    import os

    from benchmarks import report

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "benchmarks", "results", "benchmarks_full.json")) as f:
        results = json.load(f)
    with open(os.path.join(root, "README.md")) as f:
        readme = f.read()
    assert report.readme_block(readme) == report.render_readme(results)
    # The section sits before the layout table, which lists the benchmarks.
    assert readme.index("## Performance") < readme.index("## Layout")
    assert "| `benchmarks/" in readme[readme.index("## Layout"):]


def test_readme_block_replacement_keeps_the_rest_of_the_file():
    from benchmarks import report

    text = f"# t\n\nbefore\n{report.README_START}\nold\n{report.README_END}\nafter\n"
    new = report.replace_readme_block(text, "new table\n")
    assert new == f"# t\n\nbefore\n{report.README_START}\nnew table\n{report.README_END}\nafter\n"
    assert report.readme_block(new) == "new table\n"
    with pytest.raises(ValueError, match="performance:start"):
        report.replace_readme_block("no markers", "x")


def test_int8_agreement_report_counts_agreements_against_the_target():
    """The benchmark's own numbers come from export_tflite, CascadeRuntime and LiteRTModel
    (tested elsewhere); a run converts 16 files (~75 s), so only its parsing and report
    are checked here."""
    from benchmarks import int8_agreement

    assert int8_agreement.parse_budget("64:1:32") == (64, 1, 32)
    for bad in ("64:1", "64:0:32", "a:1:32"):
        with pytest.raises(ValueError, match="examples:epochs:batch"):
            int8_agreement.parse_budget(bad)
    row = dict(float_accuracy=0.4, int8_accuracy=0.39, int8_logit_rms_error=0.03,
               median_top2_gap=0.2, float32_bytes=4000, int8_bytes=1000)
    results = {"model": "resnet18_byot", "width_multiplier": 0.25, "learning_rate": 0.05,
               "seed": 0, "test_examples": 100, "calibration_examples": 16, "target": 0.97,
               "host": {"cpu": "test", "logical_cpus": 2}, "date": "today",
               "models": [{"train_examples": 64, "epochs": 1, "batch_size": 32, "exits": [
                   {**row, "exit": "exit_1", "file_agreement": 0.96,
                    "cascade_agreement": 0.97},
                   {**row, "exit": "exit_2", "file_agreement": 0.99,
                    "cascade_agreement": 0.98}]}]}
    text = int8_agreement.markdown(results)
    assert "**3 of 4**" in text and "range 96.00-99.00 %" in text
    assert "--budgets=64:1:32" in text and "| exit_2 |" in text and "4.00x" in text


def test_byot_loss_terms_parts_add_up_to_the_official_loss_and_its_gradient():
    """The diagnosis splits the official BYOT loss into four parts: their values and
    their trunk gradients must add up to the whole loss's (the loss is a weighted sum)."""
    import keras

    from benchmarks import byot_loss_terms
    from byot_keras import zoo

    keras.utils.set_random_seed(0)
    model = zoo.resnet18_byot(num_classes=10, width_multiplier=0.125)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(16, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 10, size=16)
    result = byot_loss_terms.term_gradients(model, images, labels)
    rows = result["rows"]
    parts = [row for name, row in rows.items() if name != "total"]
    assert len(parts) == 4 and all(row["trunk_gradient_norm"] > 0 for row in parts)
    assert sum(row["value"] for row in parts) == pytest.approx(rows["total"]["value"],
                                                               rel=1e-5)
    gradients = result["gradients"]
    summed = sum(g for name, g in gradients.items() if name != "total")
    np.testing.assert_allclose(summed, gradients["total"], rtol=1e-4,
                               atol=1e-5 * float(np.max(np.abs(gradients["total"]))))
    assert rows["deepest exit's CE"]["cosine_with_deepest_ce"] == pytest.approx(1.0)
    # Only the deepest exit's CE reaches the last stage alone; section 1 is shared by all.
    assert 0 < rows["total"]["section_1_gradient_norm"] < rows["total"]["trunk_gradient_norm"]


def test_study_compares_a_run_in_progress_with_finished_runs_at_the_same_epoch(tmp_path):
    from benchmarks import study_cifar10 as study

    def log(folder, header, rows):
        folder.mkdir()
        (folder / "log.csv").write_text("\n".join([",".join(header)] + [
            ",".join(map(str, row)) for row in rows]) + "\n")

    # Rows out of order, as a resumed run may leave them; Keras counts epochs from 0.
    log(tmp_path / "r18w025_ce_s0", ["epoch", "val_exit_1_accuracy"],
        [[1, 0.6], [0, 0.5], [2, 0.7]])
    log(tmp_path / "r18w025_ce_s1", ["epoch", "val_exit_1_accuracy"],
        [[0, 0.4], [1, 0.5], [2, 0.9]])
    log(tmp_path / "r18w025_msd_s0",
        ["epoch", "val_ensemble_accuracy", "val_exit_2_accuracy", "val_exit_1_accuracy"],
        [[0, 0.3, 0.2, 0.1], [1, 0.55, 0.5, 0.45]])
    (tmp_path / "r18w025_ce_s0" / "report.json").write_text("{}")
    (tmp_path / "r18w025_ce_s1" / "report.json").write_text("{}")

    assert [row["epoch"] for row in study.read_history(tmp_path / "r18w025_ce_s0")] == [1, 2, 3]
    (progress,) = study.unfinished_runs(str(tmp_path))
    assert progress == {"name": "r18w025_msd_s0", "epochs": 2, "exits": [45.0, 50.0],
                        "ensemble": 55.0}
    finished = [{"variant": "ce", "deepest_by_epoch": [row["exit_1"] for row in
                                                       study.read_history(tmp_path / name)]}
                for name in ("r18w025_ce_s0", "r18w025_ce_s1")]
    assert study.at_same_epoch(finished, "ce", 2) == 55.0  # (60 + 50) / 2
    assert study.at_same_epoch(finished, "ce", 4) is None
    assert study.at_same_epoch(finished, "ce", 0) is None  # a run that has just started
    assert study.at_same_epoch(finished, "byot", 2) is None


def test_readme_quotes_the_study_as_rendered():
    """The README's summary of the converged study states the figures of
    benchmarks/results/study_cifar10.json (re-rendering the study with more runs makes
    this fail until the README says what the new table says)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    summary = json.loads((root / "benchmarks/results/study_cifar10.json").read_text())["summary"]
    readme = " ".join((root / "README.md").read_text().split())
    byot, ce, msd = summary["byot"], summary["ce"], summary["msd"]
    assert (f"`byot` {byot['exits_mean'][-1]:.2f} +- {byot['exits_spread'][-1]:.2f} % "
            f"against `ce`'s {ce['exits_mean'][-1]:.2f}") in readme
    assert f"`msd` {msd['exits_mean'][-1]:.2f} +- {msd['exits_spread'][-1]:.2f} %" in readme
    assert f"ensemble {msd['ensemble_mean']:.2f} %" in readme
    assert (f"first exit {msd['exits_mean'][0]:.2f} % against byot's "
            f"{byot['exits_mean'][0]:.2f}") in readme
