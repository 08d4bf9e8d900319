"""byot-train end to end: resume after SIGKILL, NaN stop, MirroredStrategy and a
two-process MultiWorkerMirroredStrategy run, reports, byot-eval, and bad input.

The runs that need their own process (a killed run, two logical CPUs, two workers) are
started by tests/train_helper.py when this module starts, in the background; the
in-process tests run meanwhile and the tests at the end collect the results.

Those runs train a small convolutional multi-exit network (train_helper.toy_multi_exit,
with SelfDistillationModel and the official BYOT loss) through the trainer's `model_fn`:
TensorFlow traces it in about a second where a ResNet-18 takes ten or more, which keeps
seven trainings within the time budget. The zoo path (a narrow ResNet-18) is trained on
the real CIFAR-10. Data: 256 of the embedded digits, 3 epochs of 8 steps. The
single-device runs use float64 and deterministic ops: in float32 two runs on different
replica counts cannot be compared tightly (see tests/distribute_helper.py).
"""

from __future__ import annotations

import csv
import functools
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from train_helper import toy_multi_exit

from byot_keras.saving import write_json_atomically
from byot_keras.train import TrainConfig, TrainingDiverged, cli, make_config, train
from byot_keras.train import trainer as trainer_lib
from byot_keras.train.distribute import check_global_batch

ROOT = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).with_name("train_helper.py")
TIMEOUT = 420  # seconds per helper process, a bound for a hung run
STEPS_PER_EPOCH = 8
SMALL = dict(
    dataset="digits", model="toy_multi_exit", sync_batchnorm=True, epochs=3, batch_size=32,
    train_examples=256, test_examples=64, lr=0.05, lr_milestones=["2"], weight_decay=5e-4,
    augment=["pad_crop", "flip"], validation_freq=1, deterministic=True, verbose="0",
)
# The zoo model of the CIFAR-10 run: a ResNet-18 at 1/8 width, bottleneck heads, one
# shallow exit (traces faster than the default four sepconv heads).
ZOO_SMALL = dict(model="resnet18_byot", width_multiplier=0.125,
                 method_options={"head": "bottleneck", "exits": [2]})
KILL_AFTER = STEPS_PER_EPOCH + 4  # in the middle of epoch 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(spec: dict, *flags: str, env: dict | None = None) -> subprocess.Popen:
    environment = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
                       PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.Popen([sys.executable, str(HELPER), json.dumps(spec), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environment, cwd=ROOT)


def _finish(process: subprocess.Popen) -> tuple[int, dict, str]:
    """(return code, {job: result} of the jobs that finished, stderr's tail)."""
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    jobs = {}
    for line in stdout.splitlines():
        if line.startswith('{"job"'):
            result = json.loads(line)
            jobs[result.pop("job")] = result
    return process.returncode, jobs, "\n".join(stderr.strip().splitlines()[-30:])


class Background:
    """The helper processes of this module, started at once, collected on demand.

    "single": the uninterrupted reference run, the odd-batch check and the mirrored run
    (2 logical CPUs), then the run that is killed in epoch 2; "resumed": the same
    command again once that process is gone; "mw0"/"mw1": the two workers."""

    def __init__(self, root: Path):
        self.root = root
        self.dirs = {name: root / name for name in ("reference", "killed", "mirrored", "mw")}
        mirrored = {**SMALL, "strategy": "mirrored", "devices": ["/cpu:0", "/cpu:1"]}
        # Every single-process job sees the same device set-up (2 logical CPUs, float64).
        self.single_flags = ["--logical-cpus", "2", "--float64"]
        self.processes = {"single": _start({"jobs": {
            "reference": {"config": {**SMALL, "output_dir": str(self.dirs["reference"])},
                          "toy": True},
            "odd_batch": {"config": {**mirrored, "batch_size": 33,
                                     "output_dir": str(root / "odd")}, "toy": True},
            "mirrored": {"config": {**mirrored, "output_dir": str(self.dirs["mirrored"])},
                         "toy": True},
            "killed": {"config": {**SMALL, "output_dir": str(self.dirs["killed"])},
                       "toy": True, "kill_after_steps": KILL_AFTER},
        }}, *self.single_flags)}
        workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
        worker_config = {**SMALL, "epochs": 2, "deterministic": False,
                         "strategy": "multiworker", "output_dir": str(self.dirs["mw"])}
        for index in range(2):
            tf_config = {"cluster": {"worker": workers},
                         "task": {"type": "worker", "index": index}}
            self.processes[f"mw{index}"] = _start(
                {"jobs": {"worker": {"config": worker_config, "toy": True}}},
                env={"TF_CONFIG": json.dumps(tf_config)})
        self.results = {}
        self.killed_state = None

    def result(self, name: str):
        if name not in self.results:
            if name == "resumed":  # the restart, once the killed run is gone
                self.result("single")
                self.processes["resumed"] = _start(
                    {"jobs": {"resumed": {"config": {**SMALL,
                                                     "output_dir": str(self.dirs["killed"])},
                                          "toy": True}}},
                    *self.single_flags)
            self.results[name] = _finish(self.processes[name])
            if name == "single":
                self.killed_state = _state(self.dirs["killed"])
        return self.results[name]

    def close(self):
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()


@pytest.fixture(scope="module", autouse=True)
def background(tmp_path_factory):
    runs = Background(tmp_path_factory.mktemp("recipe_runs"))
    yield runs
    runs.close()


def _state(run_dir: Path) -> dict:
    path = run_dir / "checkpoints" / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _checkpoint(run_dir: Path) -> dict[str, np.ndarray]:
    """Every array of the last checkpoint (weights and optimizer state), by path."""
    state = _state(run_dir)
    arrays = {}
    with h5py.File(run_dir / "checkpoints" / state["weights"]) as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return arrays


def _job(result, name: str) -> dict:
    returncode, jobs, stderr = result
    assert name in jobs, f"job {name} did not finish (exit code {returncode}):\n{stderr}"
    assert jobs[name]["status"] == "ok", (jobs[name], stderr)
    return jobs[name]


# ---------------------------------------------------------------------------------------
# In-process: cheap checks, run while the helper processes work.


def test_presets_reproduce_the_papers_schedules():
    config = make_config("byot_cifar")
    assert (config.epochs, config.batch_size, config.lr, config.momentum,
            config.weight_decay) == (250, 128, 0.1, 0.9, 5e-4)
    # The official code divides by 10 at epochs // 3, epochs * 2 // 3 and epochs - 10.
    assert config.milestone_epochs() == [250 // 3, 250 * 2 // 3, 250 - 10]
    assert make_config("eed_cifar").milestone_epochs() == [75, 130, 180]
    assert make_config("byot_imagenet").milestone_epochs() == [30, 60]
    schedule = trainer_lib.learning_rate(config, steps_per_epoch=10)
    # The optimizer passes the number of steps taken: step 830 is epoch 83's first.
    for step, expected in [(0, 0.1), (829, 0.1), (830, 0.01), (1660, 1e-3), (2399, 1e-3),
                           (2400, 1e-4), (2499, 1e-4)]:
        assert float(schedule(step)) == pytest.approx(expected), step


def test_flags_override_the_preset():
    flag_values = cli.flags.FlagValues()
    cli.define_flags(flag_values)
    flag_values(["byot-train", "--preset", "byot_cifar", "--epochs", "30",
                 "--augment", "pad_crop,flip,cutout", "--method_options", "temperature=4"])
    config = cli.config_from_flags(flag_values)
    assert (config.preset, config.epochs, config.lr, config.batch_size) == (
        "byot_cifar", 30, 0.1, 128)
    assert config.milestone_epochs() == [10, 20]  # 1/3, 2/3 and -10 of 30 epochs
    assert config.augment == ["pad_crop", "flip", "cutout"]
    assert config.method_options == {"temperature": 4}


def test_flags_for_settings_parse_back_to_the_same_config():
    """`flags_for` (what the study and the resume tests hand byot-train) is the inverse of
    the flag parser: every kind of value (number, string, list, bool both ways, method
    options with a list inside) comes back as given."""
    settings = dict(model="resnet18_byot", epochs=3, lr=0.05, augment=["pad_crop", "flip"],
                    cache=False, deterministic=True,
                    method_options={"head": "bottleneck", "exits": [2], "temperature": 4})
    flag_values = cli.flags.FlagValues()
    cli.define_flags(flag_values)
    flag_values(["byot-train", "--preset", "digits_quick", *cli.flags_for(settings)])
    config = cli.config_from_flags(flag_values)
    assert config == make_config("digits_quick", **settings)
    assert config.cache is False and config.deterministic is True


def test_weight_decay_adds_wd_times_w_to_every_gradient():
    import tensorflow as tf

    model = toy_multi_exit(num_classes=10, input_shape=(32, 32, 3))
    trainer_lib.add_weight_decay(model, 5e-4)
    with tf.GradientTape() as tape:
        penalty = tf.add_n(model.losses)
    gradients = tape.gradient(penalty, model.trainable_variables)
    values = [v.numpy() for v in model.trainable_variables]
    assert float(penalty) == pytest.approx(0.5 * 5e-4 * sum(np.sum(v ** 2) for v in values),
                                           rel=1e-5)
    for value, gradient in zip(values, gradients):
        np.testing.assert_allclose(gradient.numpy(), 5e-4 * value, rtol=1e-5, atol=1e-12)


def test_bad_settings_fail_before_training(tmp_path):
    def fails(match, **settings):
        output = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        with pytest.raises(ValueError, match=match):
            train(make_config(**{**SMALL, **ZOO_SMALL, "output_dir": str(output), **settings}))
        assert not (output / "checkpoints").exists()  # nothing was trained

    fails("Invalid dataset='mnist'", dataset="mnist")
    empty = tmp_path / "empty_tfds"
    empty.mkdir()
    fails("'cifar100' .*not available in .*empty_tfds.*--download", dataset="cifar100",
          data_dir=str(empty))
    one_class = tmp_path / "one_class" / "cat"
    one_class.mkdir(parents=True)
    fails("at least two", dataset="image_folder", data_dir=str(one_class.parent))
    fails("Unknown model name 'resnet19_byot'", model="resnet19_byot")
    fails("Unknown method 'magic'", method="magic")
    with pytest.raises(ValueError, match="does not split evenly over 2 replicas"):
        check_global_batch(33, 2)
    # A folder that holds another run is refused, and the differences are named.
    other = tmp_path / "other_run"
    write_json_atomically(make_config(**{**SMALL, **ZOO_SMALL, "lr": 0.1}).to_dict(),
                          str(other / "config.json"))
    fails(r"holds a different run \(lr: 0.1 there, 0.05 now", output_dir=str(other))


def test_the_command_reports_bad_input_on_stderr(tmp_path, capsys):
    flag_values = cli.flags.FlagValues()
    cli.define_flags(flag_values)
    flag_values(["byot-train", "--dataset", "image_folder", "--data_dir",
                 str(tmp_path / "missing"), "--output_dir", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as stop:
        cli.main([], flag_values)
    assert stop.value.code == 1
    assert "byot-train: error: Image folder" in capsys.readouterr().err


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    class Poison(keras.callbacks.Callback):  # a diverging run, in epoch 2
        steps = 0

        def on_train_batch_end(self, batch, logs=None):
            Poison.steps += 1
            if Poison.steps == STEPS_PER_EPOCH + 2:
                kernel = self.model.trainable_variables[0]
                kernel.assign(np.full(kernel.shape, np.nan, kernel.dtype))

    config = make_config(**{**SMALL, "epochs": 2, "deterministic": False,
                            "output_dir": str(tmp_path)})
    with pytest.raises(TrainingDiverged, match=r"nan at epoch 2.*after epoch 1\) is kept"):
        train(config, callbacks=[Poison()], model_fn=toy_multi_exit)
    assert _state(tmp_path)["epoch"] == 1
    assert all(np.all(np.isfinite(a)) for a in _checkpoint(tmp_path).values()
               if a.dtype.kind == "f")
    assert not (tmp_path / "report.json").exists() and not (tmp_path / "model.keras").exists()


def test_cskd_runs_on_class_pairs_from_the_pipeline(tmp_path):
    """`--method cskd` makes the trainer feed class-paired batches (the loss refuses any
    other), `--batch_size` pairs per step, the usual steps per epoch."""
    config = make_config(**{**SMALL, "method": "cskd", "epochs": 1, "lr_milestones": [],
                            "output_dir": str(tmp_path)})
    report = train(config, model_fn=functools.partial(toy_multi_exit, method="cskd"))
    assert report["training"]["steps_per_epoch"] == 256 // 32
    assert report["training"]["images_per_step"] == 2 * 32
    with open(tmp_path / "log.csv") as f:
        log = list(csv.DictReader(f))
    assert len(log) == 1 and float(log[0]["kd_loss"]) > 0.0


def test_cifar10_run_reports_what_an_independent_evaluation_measures(tmp_path, cifar10_dir):
    from byot_keras.data import load_cifar
    from byot_keras.train.evaluate import evaluate_model_file

    config = make_config(**{**SMALL, **ZOO_SMALL, "dataset": "cifar10", "data_dir": cifar10_dir,
                            "epochs": 1, "lr_milestones": [], "batch_size": 64,
                            "test_examples": 200,
                            "validation_freq": 100, "deterministic": False,
                            "augment": ["pad_crop", "flip", "cutout"],
                            "baseline_accuracy": 0.5, "output_dir": str(tmp_path)})
    report = train(config)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["summary"] == report["summary"]
    assert saved["config"] == config.to_dict()
    assert saved["dataset"]["name"] == "cifar10" and saved["dataset"]["num_test"] == 200
    assert {"tensorflow", "keras", "numpy", "byot_keras", "python"} <= set(saved["versions"])
    assert saved["training"]["epochs_completed"] == 1 and saved["training"]["train_seconds"] > 0
    assert [row["exit"] for row in saved["exits"]] == ["exit_1", "exit_2"]
    assert saved["exits"][0]["flops"] < saved["exits"][1]["flops"]
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The reported accuracies are the saved model's on the first 200 test images, read
    # and normalised by the independent NumPy loader.
    model = keras.saving.load_model(tmp_path / "model.keras")
    x_test, y_test = load_cifar("cifar10", "test[:200]", cifar10_dir)
    logits = model.predict(x_test, batch_size=200, verbose=0)
    for name in model.exit_names:
        assert saved["accuracy"][name] == pytest.approx(
            np.mean(logits[name].argmax(-1) == y_test), abs=1e-9)
    ensemble = np.mean([logits[n] for n in model.exit_names], axis=0).argmax(-1)
    assert saved["accuracy"]["ensemble"] == pytest.approx(np.mean(ensemble == y_test), abs=1e-9)
    # byot-eval measures the saved model the same way.
    evaluation = evaluate_model_file(str(tmp_path / "model.keras"), "cifar10", cifar10_dir,
                                     test_examples=200)
    assert evaluation["accuracy"] == saved["accuracy"]
    assert (tmp_path / "eval_report.json").exists()
    if trainer_lib._tensorboard_installed():
        assert list((tmp_path / "logs" / "train").glob("events.out.tfevents.*"))


# ---------------------------------------------------------------------------------------
# The helper processes' results.


def test_a_killed_run_resumes_to_the_uninterrupted_runs_weights(background):
    single = background.result("single")
    assert single[0] == -signal.SIGKILL, f"the killed job was not killed:\n{single[2]}"
    assert "killed" not in single[1]
    assert background.killed_state["epoch"] == 1  # killed in epoch 2, after epoch 1's save
    reference = _job(single, "reference")
    resumed = _job(background.result("resumed"), "resumed")
    # It resumed: only epochs 2 and 3 were trained by the new process.
    assert (reference["steps"], resumed["steps"]) == (3 * STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH)
    report = json.loads((background.dirs["killed"] / "report.json").read_text())
    reference_report = json.loads((background.dirs["reference"] / "report.json").read_text())
    assert report["accuracy"] == reference_report["accuracy"]
    assert report["training"]["resumed_after_epochs"] == [1]
    history = report["training"]["history"]
    assert [row["epoch"] for row in history] == [0, 1, 2]  # the log has each epoch once
    assert all("val_ensemble_accuracy" in row for row in history)
    a, b = _checkpoint(background.dirs["reference"]), _checkpoint(background.dirs["killed"])
    assert len(a) > 20  # weights, BN statistics, optimizer state
    assert set(a) == set(b)
    different = [name for name in a if not np.array_equal(a[name], b[name])]
    assert not different, f"{len(different)} arrays differ, e.g. {different[:3]}"


def test_mirrored_on_two_cpus_matches_one_device(background):
    single = background.result("single")
    odd = single[1]["odd_batch"]
    assert odd["status"] == "error" and "does not split evenly over 2 replicas" in odd["message"]
    assert _job(single, "mirrored")["replicas"] == 2
    _job(single, "reference")
    one, two = _checkpoint(background.dirs["reference"]), _checkpoint(background.dirs["mirrored"])
    assert set(one) == set(two)
    worst = max(float(np.max(np.abs(one[n] - two[n]))) / max(float(np.max(np.abs(one[n]))), 1e-6)
                for n in one)
    assert worst < 1e-4, f"largest relative difference {worst}"


def test_two_multiworker_processes_complete_and_agree(background):
    chief = _job(background.result("mw0"), "worker")
    other = _job(background.result("mw1"), "worker")
    assert chief["replicas"] == other["replicas"] == 2
    # Each worker ran its half of every global batch of 32: 8 steps per epoch.
    assert chief["steps"] == other["steps"] == 2 * STEPS_PER_EPOCH
    first = _checkpoint(background.dirs["mw"])
    second = _checkpoint(background.dirs["mw"] / "workers" / "worker_1")
    assert set(first) == set(second)
    for name in first:
        np.testing.assert_allclose(first[name], second[name], rtol=1e-6, atol=1e-7,
                                   err_msg=name)
    chief_report = json.loads((background.dirs["mw"] / "report.json").read_text())
    other_report = json.loads(
        (background.dirs["mw"] / "workers" / "worker_1" / "report.json").read_text())
    assert chief_report["accuracy"] == other_report["accuracy"]


def test_config_round_trips_through_json():
    config = make_config("digits_quick", epochs=2)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="Unknown configuration key"):
        TrainConfig.from_dict({"epoch": 3})
