"""The six console scripts as a user meets them: `--help` lists the command's own flags
and exits 0; a bad flag or input is one line on stderr that names it (`<command>: error:
...`, exit status 1, no traceback), before any training or conversion starts.

The commands run in this process (TensorFlow is imported once); each invocation's flags
are removed from absl's global FLAGS afterwards, so the next command can define its own.
"""

import importlib
import sys

import keras
import numpy as np
import pytest
from absl import flags
from user_files import assert_untouched, put_user_files

from byot_keras import zoo
from byot_keras.saving import save_model_atomically

# command -> (module, entry point, flags its --help must list)
COMMANDS = {
    "byot-quickstart": ("byot_keras.quickstart", "run",
                        ["--output_dir", "--[no]overwrite", "--thresholds", "--epochs"]),
    "byot-export": ("byot_keras.export.cli", "run",
                    ["--model_file", "--[no]allow_other_files", "--quantizations", "--exits"]),
    "byot-train": ("byot_keras.train.cli", "run",
                   ["--preset", "--output_dir", "--[no]overwrite", "--lr_milestones"]),
    "byot-eval": ("byot_keras.train.evaluate", "run", ["--model_file", "--dataset"]),
    "byot-qat": ("byot_keras.compress.cli", "run_qat",
                 ["--model_file", "--builder_kwargs", "--[no]allow_other_files"]),
    "byot-prune": ("byot_keras.compress.cli", "run_prune",
                   ["--target_sparsity", "--quantizations", "--[no]allow_other_files"]),
}


def invoke(capsys, command: str, *args: str) -> tuple[int, str, str]:
    """Runs `command` with `args` as its console script would; (status, stdout, stderr)."""
    module, entry, _ = COMMANDS[command]
    run = getattr(importlib.import_module(module), entry)
    before, argv = set(flags.FLAGS), sys.argv
    sys.argv = [command, *map(str, args)]
    try:
        with pytest.raises(SystemExit) as stop:
            run()
    finally:
        sys.argv = argv
        for name in set(flags.FLAGS) - before:
            delattr(flags.FLAGS, name)
    captured = capsys.readouterr()
    return stop.value.code or 0, captured.out, captured.err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_lists_the_commands_own_flags_and_exits_0(capsys, command):
    status, out, err = invoke(capsys, command, "--help")
    assert status == 0, err
    for flag in COMMANDS[command][2]:
        assert f"  {flag}:" in out, (flag, out)
    assert f"{command} flags:" in out and "Try --helpfull" not in out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A saved 4-class model, a truncated copy of it, and a plain file."""
    folder = tmp_path_factory.mktemp("commands")
    keras.utils.set_random_seed(0)
    model = zoo.resnet18_byot(num_classes=4, width_multiplier=0.125, exits=[2])
    good = folder / "model.keras"
    save_model_atomically(model, str(good))
    truncated = folder / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    plain = folder / "notes.txt"
    plain.write_text("a file, not a folder")
    return {"model": good, "truncated": truncated, "file": plain, "folder": folder}


# (command, arguments (str.format'ed with the `files` paths), what the message must name)
BAD_INPUTS = [
    ("byot-quickstart", ["--thresholds", "0.5,1.5"], "--thresholds entry '1.5'"),
    ("byot-quickstart", ["--thresholds", "high"], "'high'"),
    ("byot-quickstart", ["--epochs", "0"], "--epochs"),
    ("byot-quickstart", ["--output_dir", "{file}"], "is a file"),
    ("byot-quickstart", ["--learning_rate", "-1"], "learning_rate must be a number > 0, got -1.0"),
    ("byot-export", ["--model_file", "{folder}/missing.keras"], "missing.keras"),
    ("byot-export", ["--model_file", "{model}", "--calibration_examples", "0"],
     "--calibration_examples"),
    ("byot-export", ["--model_file", "{model}", "--eval_examples", "0"], "--eval_examples"),
    ("byot-export", ["--model_file", "{model}", "--quantizations", "int4"], "'int4'"),
    ("byot-export", ["--model_file", "{model}", "--quantizations", "int8"], "--dataset"),
    ("byot-export", ["--model_file", "{model}", "--exits", "first"], "--exits first"),
    ("byot-export", ["--model_file", "{model}", "--output_dir", "{file}"], "is a file"),
    ("byot-export", ["--model_file", "{model}", "--dataset", "digits"],
     "digits has 10 classes; the model has 4"),
    ("byot-export", ["--model_file", "{truncated}"], "truncated.keras"),
    ("byot-export", ["--model_file", "{model}", "--model", "resnet18_byot"], "exactly one of"),
    ("byot-export", ["--model", "resnet18_byot"], "--model resnet18_byot needs --weights"),
    ("byot-export", ["--model", "resnet18_byot", "--num_classes", "0"],
     "num_classes must be an integer >= 2, got 0"),  # before the missing --weights
    ("byot-export", ["--model", "resnet18_byot", "--weights", "{folder}/missing.npz"],
     "missing.npz': no such file"),
    ("byot-export", ["--model", "resnet18_byot", "--weights_file", "{folder}/old.weights.h5"],
     "old.weights.h5': no such file"),  # the deprecated name of --weights
    ("byot-export", ["--model", "resnet18_byot", "--weights", "a.npz", "--weights_file",
                     "b.npz"], "Give --weights only"),
    ("byot-export", ["--model_file", "{folder}"], "is a folder, not a .keras model file"),
    ("byot-train", ["--dataset", "mnist"], "mnist"),
    ("byot-train", ["--epochs", "5", "--lr_milestones", "30"], "'30'"),
    ("byot-train", ["--epochs", "5", "--lr_milestones", "3/2"], "'3/2'"),
    ("byot-train", ["--method_options", "temperature"], "'temperature' is not key=value"),
    ("byot-train", ["--method", "magic", "--dataset", "digits"], "'magic'"),
    ("byot-train", ["--model", "resnet19_byot", "--dataset", "digits"], "'resnet19_byot'"),
    ("byot-train", ["--lr", "-1"], "lr=-1.0"),
    ("byot-train", ["--dataset", "digits", "--output_dir", "{file}"], "is a file"),
    ("byot-train", ["--dataset", "digits", "--shuffle_buffer", "-1"], "shuffle_buffer=-1"),
    ("byot-train", ["--dataset", "digits", "--augment", "none,flip"],
     "'none' cannot be combined with other augmentations (got none,flip)"),
    ("byot-eval", ["--model_file", "{truncated}", "--dataset", "digits"], "truncated.keras"),
    ("byot-eval", ["--dataset", "digits"], "--model_file"),
    ("byot-eval", ["--model_file", "{folder}", "--dataset", "digits"],
     "is a folder, not a .keras model file"),
    ("byot-eval", ["--model_file", "{model}", "--dataset", "digits", "--batch_size", "0"],
     "--batch_size"),
    ("byot-eval", ["--model_file", "{model}", "--dataset", "digits", "--baseline_accuracy",
                   "7"], "baseline_accuracy must be in [0, 1], got 7.0"),
    ("byot-qat", ["--model_file", "{model}", "--builder_kwargs", "{{bad"], "--builder_kwargs"),
    ("byot-qat", ["--model_file", "{model}", "--builder_kwargs", "[1]"], "--builder_kwargs"),
    ("byot-qat", ["--model_file", "{model}", "--output_dir", "{file}"], "is a file"),
    ("byot-qat", ["--model_file", "{model}", "--learning_rate", "-1"],
     "learning_rate must be a number > 0, got -1.0"),
    ("byot-prune", ["--model_file", "{model}", "--target_sparsity", "1.5"],
     "--target_sparsity"),
    ("byot-prune", ["--model_file", "{folder}/missing.keras"], "missing.keras"),
    ("byot-prune", ["--model_file", "{model}", "--learning_rate", "0"],
     "learning_rate must be a number > 0, got 0.0"),
]


@pytest.mark.parametrize("command, arguments, named", BAD_INPUTS,
                         ids=[f"{c}-{' '.join(a)}" for c, a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_naming_it(capsys, files, command, arguments, named):
    arguments = [a.format(**files) for a in arguments]
    status, _, err = invoke(capsys, command, *arguments)
    lines = err.strip().splitlines()
    assert status == 1, err
    assert "Traceback" not in err
    assert lines[-1].startswith(f"{command}: error: "), err
    assert named in lines[-1], (named, lines[-1])


def test_export_into_the_current_folder_is_refused_and_keeps_every_file(capsys, files,
                                                                        tmp_path, monkeypatch):
    hashes = put_user_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    status, _, err = invoke(capsys, "byot-export", "--model_file", files["model"],
                            "--output_dir", ".")
    assert status == 1 and "did not write" in err and "--allow_other_files" in err
    assert_untouched(hashes)
    status, out, err = invoke(capsys, "byot-export", "--model_file", files["model"],
                              "--output_dir", ".", "--allow_other_files", "--nocascade",
                              "--nomulti_signature", "--exits", "1")
    assert status == 0, err
    assert_untouched(hashes)
    assert "exit_1.tflite" in out and (tmp_path / "exit_1.tflite").exists()
    assert np.isclose(len(list(tmp_path.iterdir())), 6)  # 3 user entries + 3 export files


def test_backend_torch_without_torch_says_what_to_install(capsys):
    """torch has no extra (the registry's Linux wheel is the multi-GB CUDA build): the
    message says to install PyTorch rather than naming an extra that does not exist."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here, so --backend torch would start training")
    status, _, err = invoke(capsys, "byot-train", "--backend", "torch", "--dataset", "digits")
    assert status == 1, err
    line = err.strip().splitlines()[-1]
    assert line == ("byot-train: error: --backend torch: the torch package is not installed; "
                    "install PyTorch (a CPU-only build will do) in this environment."), line
