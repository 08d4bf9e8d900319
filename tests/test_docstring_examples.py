"""The package's docstring examples run with the tests: every module below, through the
standard library's doctest (as `pytest --doctest-modules` would), must have examples and
pass them. Left to the opt-in run (`python -m pytest -q --doctest-modules byot_keras`)
are the modules whose examples train, convert to TFLite or build many networks (the zoo
families, training's model classes, export, compress, train, quickstart): all 137
examples took 1,254 s in one process on this 2-core machine at load ~10, beyond the
suite's budget."""

import doctest
import importlib
import io

import pytest

FAST_MODULES = (
    "byot_keras.backend.compile_settings",
    "byot_keras.data.digits",
    "byot_keras.data.pipeline",
    "byot_keras.inference",
    "byot_keras.losses.baselines",
    "byot_keras.losses.byot",
    "byot_keras.losses.cskd",
    "byot_keras.losses.eed",
    "byot_keras.losses.msd",
    "byot_keras.losses.one",
    "byot_keras.networks",
    "byot_keras.networks.batch_norm",
    "byot_keras.networks.registry",
    "byot_keras.networks.structure",
    "byot_keras.normalization",
    "byot_keras.options",
    "byot_keras.published",
    "byot_keras.saving",
)


@pytest.mark.parametrize("name", FAST_MODULES)
def test_the_docstring_examples_of_the_module_pass(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    output = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS, verbose=False)
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    for test in tests:
        runner.run(test, out=output.write)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0, output.getvalue()[-4000:]
