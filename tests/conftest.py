import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The offline CIFAR-10 prepared for tfds (read-only), beside the project checkout.
SHARED_TFDS = Path(
    os.environ.get("BYOT_TFDS_DIR", PROJECT_ROOT.parent / "shared" / "data" / "tfds")
)


@pytest.fixture(scope="session")
def cifar10_dir() -> str:
    if not (SHARED_TFDS / "cifar10").is_dir():
        pytest.skip(f"offline CIFAR-10 not found at {SHARED_TFDS} (set BYOT_TFDS_DIR)")
    return str(SHARED_TFDS)


@pytest.fixture(scope="session")
def reference_export(tmp_path_factory):
    """A float32 export of tflite/README.md's reference model (every exit file, the
    cascade and the multi-signature model.tflite), shared by the README and
    multi-signature tests: `(model, export folder)`."""
    import keras

    from byot_keras.export import export_tflite
    from tflite.readme_tables import reference_model

    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("reference") / "export"
    model = reference_model()
    export_tflite(model, folder)
    return model, folder
