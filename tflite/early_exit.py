"""Runs an export's early-exit cascade on a labelled split and writes the accuracy /
latency trade-off per threshold (CSV, Markdown and a PNG plot).

    python tflite/early_exit.py --export_dir /tmp/kit_export                # digits
    python tflite/early_exit.py --export_dir export/resnet18_byot --dataset cifar10 \
        --data_dir ../shared/data/tfds --split "test[:1000]"

The work is done by `byot_keras.export.runtime`; this file only reads the flags.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("export_dir", None, "Folder written by byot_keras.export.export_tflite.")
flags.DEFINE_enum("dataset", "digits", ["digits", "cifar10"],
                  "digits: embedded, offline; cifar10: tensorflow-datasets from --data_dir.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets folder for --dataset cifar10 "
                    "(nothing is downloaded).")
flags.DEFINE_string("split", "test", "Split: train | test for digits; any tfds split "
                    "(e.g. test[:1000]) for cifar10.")
flags.DEFINE_integer("max_examples", 0, "Use only the first N images (0: all).", lower_bound=0)
flags.DEFINE_string("quantization", "float32", "Which files of the export to run.")
flags.DEFINE_integer("num_threads", 0, "Interpreter threads (0: LiteRT's default).",
                     lower_bound=0)
flags.DEFINE_list("thresholds", ["0", "0.5", "0.7", "0.8", "0.9", "0.95", "0.99", "0.999"],
                  "Confidence thresholds to sweep.")
flags.DEFINE_integer("repeats", 3, "Runs per image and threshold (the median is kept).",
                     lower_bound=1)
flags.DEFINE_integer("warmup", 5, "Untimed full-cascade runs before measuring.",
                     lower_bound=0)
flags.DEFINE_string("output_dir", "", "Where the sweep files go (default: "
                    "runs/early_exit/<export folder name>).")
flags.mark_flag_as_required("export_dir")


def main(argv):
    del argv
    from absl import logging

    from byot_keras.export.runtime import (
        export_inputs,
        format_sweep_markdown,
        load_labelled_split,
        read_manifest,
        run_sweep,
    )

    logging.set_verbosity(logging.WARNING)  # tfds' INFO lines
    manifest = read_manifest(FLAGS.export_dir)
    images, labels, applied = load_labelled_split(FLAGS.dataset, FLAGS.split, FLAGS.data_dir,
                                                  FLAGS.max_examples or None)
    # The segments take 0..255 pixels and normalise them as the model was trained.
    images, warning = export_inputs(manifest, images, applied)
    if warning:
        print(f"WARNING: {warning}")
    output_dir = FLAGS.output_dir or os.path.join(
        "runs", "early_exit", os.path.basename(os.path.normpath(FLAGS.export_dir)))
    rows, paths = run_sweep(
        FLAGS.export_dir, images, labels, output_dir,
        thresholds=[float(t) for t in FLAGS.thresholds], quantization=FLAGS.quantization,
        num_threads=FLAGS.num_threads or None, repeats=FLAGS.repeats, warmup=FLAGS.warmup,
    )
    print(f"{manifest['model']} cascade ({FLAGS.quantization}) on {len(labels)} "
          f"{FLAGS.dataset} '{FLAGS.split}' images:")
    print(format_sweep_markdown(rows))
    print("wrote " + ", ".join(paths.values()))


if __name__ == "__main__":
    app.run(main)
