"""Ships a trained run's weights with the package: `zoo.<builder>(weights=<name>)`.

    python zoo/ship_weights.py --run /work/runs/study/r18w025_byot_s1 \\
        --builder resnet18_byot --name cifar10 --data_dir ../shared/data/tfds
    python zoo/ship_weights.py --run /work/runs/study/r18w025_msd_s1 \\
        --builder resnet18_byot --name cifar10_msd --stored_dtype float16 ...

Reads the run folder's `model.keras` and `config.json` (a `byot-train` run), saves its
network's weights by layer name into `byot_keras/zoo/weights/<builder>_<name>.npz`, then
builds `zoo.<builder>(..., weights=that file)` exactly as a user would and measures every
exit's and the ensemble's top-1 on the whole test split. It registers the checkpoint in
`byot_keras/zoo/weights/checkpoints.json` with those accuracies, the file's SHA-256 and
size, and the command that trained it. Repository tooling: not installed with the package.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
SHIPPED_LIMIT_BYTES = 10_000_000  # all shipped checkpoints together (issue 15)


def evaluate(model, dataset: str, data_dir: str | None, normalization: dict) -> dict:
    """Top-1 (%) of every exit and the ensemble on the whole test split."""
    import numpy as np

    from byot_keras.data import pipeline

    source = pipeline.load_source(dataset, data_dir, train_examples=1)
    data = pipeline.evaluation_dataset(source, 500)
    if source.normalization != normalization:
        raise ValueError(f"The run normalised with {normalization}; {dataset} gives "
                         f"{source.normalization}.")
    logits = model.predict(data, verbose=0)
    labels = np.concatenate([y for _, y in data.as_numpy_iterator()])
    accuracy = {name: round(100 * float(np.mean(logits[name].argmax(-1) == labels)), 2)
                for name in model.exit_names}
    if model.num_exits > 1:
        ensemble = np.mean([logits[name] for name in model.exit_names], axis=0)
        accuracy["ensemble"] = round(100 * float(np.mean(ensemble.argmax(-1) == labels)), 2)
    return accuracy, int(len(labels))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="A finished byot-train run folder.")
    parser.add_argument("--builder", required=True, help="The zoo builder the weights are "
                        "for (resnet18_byot; resnet18 for a run of method ce).")
    parser.add_argument("--name", required=True, help="The checkpoint name (cifar10).")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--stored_dtype", choices=("float32", "float16"), default="float32",
                        help="float16 halves the file; the accuracy listed is then that of "
                        "the float16 weights, measured after loading.")
    args = parser.parse_args(argv)

    from benchmarks.study_cifar10 import run_command
    from byot_keras import zoo
    from byot_keras.saving import load_model, replace_atomically, write_text_atomically
    from byot_keras.zoo import pretrained

    with open(os.path.join(args.run, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(args.run, "report.json")) as f:
        report = json.load(f)
    trained = load_model(os.path.join(args.run, "model.keras"))
    # The keywords byot-train built the network with (a method other than byot, e.g. msd,
    # changes the heads): what a user must pass to get the same network.
    keywords = {"num_classes": int(trained.num_classes),
                "width_multiplier": config["width_multiplier"]}
    if config["method"] != "byot" and args.builder.endswith("_byot"):
        keywords["method"] = config["method"]
    keywords.update(config.get("method_options") or {})
    file_name = f"{args.builder}_{args.name}.npz"
    path = pretrained.WEIGHTS_DIR / file_name
    with tempfile.TemporaryDirectory() as scratch:
        # Written and checked aside; the package's folder only gets a file that loads
        # through the builder and fits the size limit.
        candidate = os.path.join(scratch, file_name)
        pretrained.save_weights_by_name(trained.network, candidate,
                                        dtype=args.stored_dtype)
        others = sum(pretrained.WEIGHTS_DIR.joinpath(e["file"]).stat().st_size
                     for e in pretrained.shipped_entries() if e["file"] != file_name)
        size = os.path.getsize(candidate)
        if others + size >= SHIPPED_LIMIT_BYTES:
            raise SystemExit(f"{file_name} ({size / 1e6:.2f} MB) would bring the shipped "
                             f"weights to {(others + size) / 1e6:.2f} MB, over the "
                             f"{SHIPPED_LIMIT_BYTES / 1e6:.0f} MB limit: register it by URL "
                             "instead (README, 'Register your own checkpoints').")
        # Loaded as a user loads it: the builder, the file, nothing of the run.
        model = zoo.create_model(args.builder, weights=candidate, **keywords)
        normalization = report["dataset"]["normalization"]
        accuracy, examples = evaluate(model, config["dataset"], args.data_dir, normalization)
        # Renamed into place from the package's own folder: never half a file there.
        replace_atomically(str(path), lambda temporary: shutil.copyfile(candidate, temporary),
                           suffix=".npz")
    stored = ("" if args.stored_dtype == "float32" else
              f"; stored as {args.stored_dtype}, loaded as float32")
    entry = {
        "builder": args.builder, "name": args.name, "file": file_name,
        "sha256": pretrained.sha256_of(path), "size_bytes": path.stat().st_size,
        "builder_kwargs": keywords, "dataset": config["dataset"], "accuracy": accuracy,
        "test_examples": examples, "method": config["method"],
        "normalization": normalization,
        "command": run_command(config, "../shared/data/tfds"),
        "notes": (f"{report['training']['epochs_completed']} epochs, seed {config['seed']}; "
                  f"top-1 (%) of these weights on the whole test split{stored}"),
    }
    entries = [e for e in pretrained.shipped_entries()
               if (e["builder"], e["name"]) != (args.builder, args.name)]
    write_text_atomically(str(pretrained.SHIPPED_INDEX), json.dumps(sorted(
        [*entries, entry], key=lambda e: (e["builder"], e["name"])), indent=2) + "\n")
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
