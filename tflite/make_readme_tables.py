"""Regenerates the tensor and manifest tables of tflite/README.md from a real export.

    python tflite/make_readme_tables.py                      # exports the reference model
    python tflite/make_readme_tables.py --export_dir DIR     # or reads an existing export

Without --export_dir it exports `tflite/readme_tables.py`'s `reference_model()`
(float32 and int8, calibrated on random images) to a temporary folder. The tables are
only ever written from files the exporter produced; tests/test_tflite_readme.py checks
the README against a fresh export.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run as a file, the script's folder (tflite/) is on sys.path, not the repository.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("readme", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           "README.md"), "The README to update.")
flags.DEFINE_string("export_dir", "", "An existing export of the reference model to read "
                    "(default: export one to a temporary folder).")


def main(argv):
    del argv
    import numpy as np

    from byot_keras.export import export_tflite
    from tflite.readme_tables import reference_description, reference_model, update_readme

    export_dir, temporary = FLAGS.export_dir, None
    if not export_dir:
        temporary = tempfile.mkdtemp(prefix="byot-readme-export-")
        export_dir = os.path.join(temporary, "export")
        model = reference_model()
        calibration = np.random.default_rng(0).normal(
            size=(32, *model.network.inputs[0].shape[1:])).astype("float32")
        export_tflite(model, export_dir, quantizations=["float32", "int8"],
                      representative_data=calibration)
    try:
        update_readme(FLAGS.readme, export_dir, reference_description())
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
    print(f"updated {FLAGS.readme} from {export_dir}")


if __name__ == "__main__":
    app.run(main)
