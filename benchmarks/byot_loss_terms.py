"""How much each BYOT loss term pulls on the shared trunk (issue 15's diagnosis).

Loads a `byot-train` run of `resnet18_byot` (its config.json and a checkpoint or
model.keras), takes training images without augmentation, and per batch of 128 computes
the official loss's four parts on their own (deepest exit's CE; the shallow exits' CE
x 0.7; their soft CE to the deepest exit x 0.3; the Frobenius feature term x 0.03 on
exits 1-2) and their gradient on the trunk (every trainable weight the deepest exit
uses, minus its classifier): its norm, its norm on section 1 (stem and stage 1, which
every exit shares), and its cosine with
the deepest CE's gradient. Weight decay's gradient on the trunk is given for scale.

With `--torch_python` (a Python with PyTorch), the same logits, adapted features and
labels also go through the official code's loss written in PyTorch (F.cross_entropy,
soft CE with log_softmax, torch.dist): the loss and its gradients with respect to every
logit and feature must equal ours; with the network's chain rule unchanged, equal
gradients there mean equal gradients on the trunk.

    python -m benchmarks.byot_loss_terms --run RUN [--checkpoint FILE] \
        [--data_dir ../shared/data/tfds] [--images 1024] [--torch_python PY] \
        [--output benchmarks/results/byot_loss_terms]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

import numpy as np

PARTS = {  # byot_loss keyword overrides that keep one part of the official loss
    "deepest exit's CE": dict(shallow_ce_weight=0.0, kd_weight=0.0, feature_weight=0.0),
    "shallow exits' CE (x0.7)": dict(deepest_ce_weight=0.0, kd_weight=0.0,
                                     feature_weight=0.0),
    "soft CE to the deepest exit (x0.3)": dict(deepest_ce_weight=0.0, shallow_ce_weight=0.0,
                                               feature_weight=0.0),
    "feature term (x0.03)": dict(deepest_ce_weight=0.0, shallow_ce_weight=0.0,
                                 kd_weight=0.0),
    "total": {},
}

# The official code's loss (../shared/docs/methods.md, section 1), written with PyTorch.
TORCH_SIDE = r"""
import sys, numpy as np, torch, torch.nn.functional as F
d = np.load(sys.argv[1])
n = int(d["num_exits"]); y = torch.from_numpy(d["labels"]).long()
z = [torch.tensor(d[f"logits_{k}"], requires_grad=True) for k in range(n)]
f = [torch.tensor(d[f"features_{k}"], requires_grad=True) for k in range(n)]
T = 3.0
loss = F.cross_entropy(z[-1], y)
soft = F.softmax(z[-1].detach() / T, dim=1)
for k in range(n - 1):
    loss = loss + 0.7 * F.cross_entropy(z[k], y)
    loss = loss - 0.3 * (soft * F.log_softmax(z[k] / T, dim=1)).sum(dim=1).mean()
for k in (0, 1):
    loss = loss + 0.03 * torch.dist(f[k], f[-1].detach())
loss.backward()
out = {"loss": loss.detach().numpy()}
out.update({f"grad_logits_{k}": z[k].grad.numpy() for k in range(n)})
out.update({f"grad_features_{k}": f[k].grad.numpy() for k in (0, 1)})
np.savez(sys.argv[2], **out)
"""


def official_options(num_exits: int) -> dict:
    return dict(shallow_ce_weight=0.7, deepest_ce_weight=1.0, kd_weight=0.3,
                temperature=3.0, kd_form="soft_ce", kd_temperature_squared=False,
                kd_exits=list(range(1, num_exits)), feature_weight=0.03,
                feature_reduction="frobenius", feature_exits=[1, 2])


def load_run(run: str, checkpoint: str | None):
    import keras

    from byot_keras.train import trainer
    from byot_keras.train.config import TrainConfig

    with open(os.path.join(run, "config.json")) as handle:
        config = TrainConfig.from_dict(json.load(handle))
    if checkpoint is None:
        from byot_keras import saving

        return saving.load_model(os.path.join(run, "model.keras")), config
    model = trainer.build_model(config, 10, (32, 32, 3))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model(np.zeros((1, 32, 32, 3), "float32"))
    model.load_weights(checkpoint)
    return model, config


def outputs(model, images):
    """Logits and compared features (after the adaptation layers), shallow to deep."""
    out = dict(model(images, training=True))  # features are outputs in training only
    for k, adapter in zip(model._feature_exits, model.adapters):
        out[f"feature_{k}"] = adapter(out[f"feature_{k}"])
    n = model.num_exits
    return ([out[f"exit_{k}"] for k in range(1, n + 1)],
            [out[f"feature_{k}"] for k in range(1, n + 1)])


def term_gradients(model, images, labels) -> dict:
    import tensorflow as tf

    from byot_keras.losses.byot import byot_loss

    n = model.num_exits
    deepest = model.exit_model(n)
    classifier = {id(v) for v in deepest.get_layer(f"exit_{n}").trainable_variables}
    trunk = [v for v in deepest.trainable_variables if id(v) not in classifier]
    # Section 1 (stem and stage 1): what the shallowest exit shares with the deepest.
    shallowest = {id(v) for v in model.exit_model(1).trainable_variables}
    section_1 = [i for i, v in enumerate(trunk) if id(v) in shallowest]
    grads, rows = {}, {}
    for part, override in PARTS.items():
        options = {**official_options(n), **override}
        if not options["feature_weight"]:
            options["feature_exits"] = []
        # Training mode as in a step (batch statistics); the moving averages this updates
        # are never saved.
        with tf.GradientTape() as tape:
            logits, features = outputs(model, images)
            loss = byot_loss(labels, logits, features, **options)["loss"]
        gradient = [tf.zeros_like(v) if g is None else g
                    for v, g in zip(trunk, tape.gradient(loss, trunk))]
        flat = tf.concat([tf.reshape(g, [-1]) for g in gradient], 0)
        head = tf.concat([tf.reshape(gradient[i], [-1]) for i in section_1], 0)
        grads[part] = flat
        rows[part] = {"value": float(loss), "trunk_gradient_norm": float(tf.norm(flat)),
                      "section_1_gradient_norm": float(tf.norm(head))}
    reference = grads["deepest exit's CE"]
    for part, flat in grads.items():
        rows[part]["cosine_with_deepest_ce"] = float(
            tf.reduce_sum(flat * reference) / (tf.norm(flat) * tf.norm(reference) + 1e-12))
    weights = tf.concat([tf.reshape(v, [-1]) for v in trunk], 0)
    return {"rows": rows, "gradients": {part: g.numpy() for part, g in grads.items()},
            "trunk_params": int(weights.shape[0]),
            "weight_decay_gradient_norm": float(5e-4 * tf.norm(weights))}


def compare_with_torch(model, images, labels, torch_python: str) -> dict:
    """Our loss and gradients w.r.t. logits / features against the PyTorch formula."""
    import tensorflow as tf

    from byot_keras.losses.byot import byot_loss

    n = model.num_exits
    logits, features = outputs(model, images)
    logits = [tf.Variable(z) for z in logits]
    features = [tf.Variable(f) for f in features]
    with tf.GradientTape() as tape:
        loss = byot_loss(labels, logits, features, **official_options(n))["loss"]
    grads = tape.gradient(loss, logits + features[:2])
    with tempfile.TemporaryDirectory(prefix="byot-loss-terms-") as folder:
        given, taken = os.path.join(folder, "in.npz"), os.path.join(folder, "out.npz")
        np.savez(given, num_exits=n, labels=np.asarray(labels),
                 **{f"logits_{k}": z.numpy() for k, z in enumerate(logits)},
                 **{f"features_{k}": f.numpy() for k, f in enumerate(features)})
        script = os.path.join(folder, "official.py")
        with open(script, "w") as handle:
            handle.write(TORCH_SIDE)
        subprocess.run([torch_python, script, given, taken], check=True)
        theirs = dict(np.load(taken))
    ours = [g.numpy() for g in grads]
    names = [f"grad_logits_{k}" for k in range(n)] + ["grad_features_0", "grad_features_1"]
    relative = max(float(np.max(np.abs(o - theirs[k])) / (np.max(np.abs(theirs[k])) + 1e-30))
                   for o, k in zip(ours, names))
    return {"loss_ours": float(loss), "loss_official": float(theirs["loss"]),
            "max_relative_gradient_difference": relative}


def render(result: dict) -> str:
    lines = [
        "# BYOT: each loss term's pull on the shared trunk",
        "",
        f"Run `{result['run']}`, weights `{result['weights']}`; {result['images']} training "
        f"images (no augmentation) in batches of 128, training-mode batch norm; means over "
        f"the batches. Trunk: {result['trunk_params']:,} weights (everything the deepest "
        "exit uses but its classifier); section 1: the stem and stage 1, which every exit "
        "shares. " + (result.get("note") + " " if result.get("note") else "")
        + "Command: `" + result["command"] + "`.",
        "",
        "| part of the official loss | value | trunk gradient norm | on section 1 | cosine "
        "with the deepest CE's gradient |",
        "|---|---:|---:|---:|---:|",
    ]
    for part, row in result["rows"].items():
        lines.append(f"| {part} | {row['value']:.4f} | {row['trunk_gradient_norm']:.4f} | "
                     f"{row['section_1_gradient_norm']:.4f} | "
                     f"{row['cosine_with_deepest_ce']:.3f} |")
    lines += ["", f"Weight decay (5e-4) gradient norm on the trunk: "
              f"{result['weight_decay_gradient_norm']:.4f}."]
    torch = result.get("official_code")
    if torch:
        lines += ["", f"Against the official loss written in PyTorch on the same logits and "
                  f"features (first batch): loss "
                  f"{torch['loss_ours']:.6f} (ours) vs {torch['loss_official']:.6f}; largest "
                  f"gradient difference (w.r.t. every logit and compared feature, relative "
                  f"to the largest gradient) {torch['max_relative_gradient_difference']:.1e}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a byot-train run folder")
    parser.add_argument("--checkpoint", help="a .weights.h5 checkpoint (default: "
                        "the run's model.keras)")
    parser.add_argument("--data_dir", default="../shared/data/tfds")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--torch_python")
    parser.add_argument("--output")
    parser.add_argument("--note", default="", help="a sentence for the report, e.g. which "
                        "epoch the checkpoint is from")
    args = parser.parse_args(argv)
    if args.images < 128 or args.images % 128:
        parser.error(f"--images must be a positive multiple of 128, got {args.images}.")

    from byot_keras.data.cifar import load_cifar

    model, _ = load_run(args.run, args.checkpoint)
    images, labels = load_cifar("cifar10", f"train[:{args.images}]", data_dir=args.data_dir)
    batches = [term_gradients(model, images[i:i + 128], labels[i:i + 128])
               for i in range(0, args.images, 128)]
    rows = {part: {key: float(np.mean([b["rows"][part][key] for b in batches]))
                   for key in batches[0]["rows"][part]} for part in PARTS}
    result = {"run": args.run, "weights": args.checkpoint or "model.keras",
              "images": args.images, "rows": rows, "trunk_params": batches[0]["trunk_params"],
              "weight_decay_gradient_norm": batches[0]["weight_decay_gradient_norm"],
              "note": args.note,
              "command": "python -m benchmarks.byot_loss_terms "
                         + shlex.join(argv or sys.argv[1:])}
    if args.torch_python:
        result["official_code"] = compare_with_torch(model, images[:128], labels[:128],
                                                     args.torch_python)
    text = render(result)
    print(text)
    if args.output:
        from byot_keras.saving import write_text_atomically

        write_text_atomically(args.output + ".json", json.dumps(result, indent=2))
        write_text_atomically(args.output + ".md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
