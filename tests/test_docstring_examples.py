"""The package's docstring examples run with the tests: every module of byot_keras, found
by walking the package (a new module's examples run without being listed here), through
the standard library's doctest with ELLIPSIS, one test per module (`--durations` shows
each module's time). A module without examples passes; `test_the_package_has_examples`
makes sure the walk finds them at all. A docstring that two modules carry (the zoo's
builders reuse the network functions' docstrings) runs once per process.

The examples are written to be cheap (narrow networks, one forward pass or one training
step, small TFLite conversions): all 406 took 170 s in one process on this 2-core
machine while other jobs kept its load average near 5 (86 s of CPU time). They run from
a fresh temporary folder (examples that write files write them there), and Keras'
global settings, the random generators and the checkpoint registry are restored after
each module, so the tests that follow in the same process see what they would have
seen without the examples.

The examples of byot_keras.compress import tensorflow-model-optimization, which switches
`tf.keras` to tf_keras for the rest of the process (later TFLite conversions there would
fail), so they run in one subprocess of their own, started by the first of their tests
(whose time includes the whole subprocess). Modules whose examples need an optional
extra skip, naming it, when it is not installed (`pip install -e ".[test]"` installs
them all).
"""

import doctest
import importlib
import importlib.util
import io
import json
import os
import pkgutil
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = doctest.ELLIPSIS
# Modules run in a subprocess (see above), all in the same one.
SUBPROCESS_PACKAGE = "byot_keras.compress"
# What the examples of a module need beyond the base install: module -> (extra,
# importable names). The LiteRT interpreter runs the TFLite files; tf_keras and tfmot
# make the compressed twins.
TFLITE = ("tflite", ("ai_edge_litert",))
COMPRESS = ("compress", ("tf_keras", "tensorflow_model_optimization"))
NEEDS = {
    "byot_keras.export.files": TFLITE,
    "byot_keras.export.litert": TFLITE,
    "byot_keras.export.metadata": TFLITE,
    "byot_keras.export.runtime": TFLITE,
    "byot_keras.export.tflite": TFLITE,
    "byot_keras.compress.finetune": COMPRESS,
    "byot_keras.compress.prune": COMPRESS,
    "byot_keras.compress.qat": COMPRESS,
    "byot_keras.compress.twin": COMPRESS,
}


def package_modules() -> list[str]:
    import byot_keras

    return ["byot_keras"] + sorted(
        info.name for info in pkgutil.walk_packages(byot_keras.__path__, "byot_keras."))


MODULES = package_modules()


# Docstrings whose examples already ran in this process. byot_keras.zoo's builders carry
# the docstrings of the network functions they wrap (e.g. networks.wide_resnet's
# `wrn44_8_byot`), so the same examples would build the same networks twice.
_RUN_DOCSTRINGS: set[str] = set()


def run_examples(name: str) -> dict:
    """Runs module `name`'s docstring examples in the current folder, but for docstrings
    run already by an earlier module in this process: counts, and the report of the
    failures."""
    module = importlib.import_module(name)
    output = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=OPTIONS, verbose=False)
    for test in doctest.DocTestFinder().find(module):
        if test.examples and test.docstring not in _RUN_DOCSTRINGS:
            _RUN_DOCSTRINGS.add(test.docstring)
            runner.run(test, out=output.write)
    result = runner.summarize(verbose=False)
    return {"attempted": result.attempted, "failed": result.failed,
            "report": output.getvalue()[-4000:]}


def missing_extra(name: str) -> str | None:
    extra, modules = NEEDS.get(name, (None, ()))
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        return (f"{name}'s examples need the {extra!r} extra ({', '.join(missing)} is not "
                f'installed): pip install -e ".[{extra}]"')
    return None


@pytest.fixture
def restored_global_state():
    """Keras' settings, Python's, NumPy's and TensorFlow's random state and the checkpoint
    registry as they were before the examples (`train()` seeds every generator,
    `register_pretrained` adds a checkpoint)."""
    import keras
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.eager import context

    from byot_keras.zoo import pretrained

    settings = (keras.config.floatx(), keras.config.dtype_policy().name,
                keras.config.image_data_format(), keras.config.epsilon())
    python_random, numpy_random = random.getstate(), np.random.get_state()
    tf_seed = context.global_seed()
    checkpoints, indexes = dict(pretrained._CHECKPOINTS), set(pretrained._loaded_indexes)
    yield
    # Fresh layer names and seed generator for what runs next; gc is left to Python
    # (free_memory=True costs ~0.5 s per module for nothing the next test needs).
    keras.backend.clear_session(free_memory=False)
    keras.config.set_floatx(settings[0])
    keras.config.set_dtype_policy(settings[1])
    keras.config.set_image_data_format(settings[2])
    keras.config.set_epsilon(settings[3])
    random.setstate(python_random)
    np.random.set_state(numpy_random)
    tf.random.set_seed(tf_seed)
    # With the record of which checkpoint indexes were read: an index first read by the
    # examples is read again by whoever lists the checkpoints next.
    pretrained._CHECKPOINTS.clear()
    pretrained._CHECKPOINTS.update(checkpoints)
    pretrained._loaded_indexes.clear()
    pretrained._loaded_indexes.update(indexes)


@pytest.fixture(scope="module")
def subprocess_results(tmp_path_factory):
    """Runs the examples of every module of SUBPROCESS_PACKAGE in one fresh process, from
    an empty folder; returns {module: run_examples' result}."""
    names = [n for n in MODULES if n == SUBPROCESS_PACKAGE
             or n.startswith(SUBPROCESS_PACKAGE + ".") and not missing_extra(n)]
    folder = tmp_path_factory.mktemp("compress_examples")
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.pathsep.join(paths)}
    done = subprocess.run([sys.executable, __file__, *names], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_of_the_module_pass(name, tmp_path, monkeypatch, request):
    reason = missing_extra(name)
    if reason:
        pytest.skip(reason)
    if name == SUBPROCESS_PACKAGE or name.startswith(SUBPROCESS_PACKAGE + "."):
        result = request.getfixturevalue("subprocess_results")[name]
    else:
        request.getfixturevalue("restored_global_state")
        monkeypatch.chdir(tmp_path)  # examples that write files write them here
        result = run_examples(name)
    assert result["failed"] == 0, result["report"]


def test_the_package_has_examples():
    """The walk finds the package's examples (a broken walk would pass every test above
    with nothing run)."""
    found = sum(len(test.examples) for name in MODULES
                for test in doctest.DocTestFinder().find(importlib.import_module(name)))
    assert found >= 300, f"only {found} docstring examples found in byot_keras"
    # Importing every module (the walk) must not load tfmot into this process.
    assert "tensorflow_model_optimization" not in sys.modules


if __name__ == "__main__":  # the subprocess: python test_docstring_examples.py MODULE...
    results = {name: run_examples(name) for name in sys.argv[1:]}
    print(json.dumps(results))
