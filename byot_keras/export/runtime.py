"""A reference early-exit runtime over LiteRT: what an app does with an export.

`CascadeRuntime` reads an export's `manifest.json`, loads its cascade segments
(`cascade/segment_<k>[_<q>].tflite`) and, per image, runs segment 1, 2, ... until an
exit's max softmax probability reaches the threshold (the deepest exit answers the rest).
`sweep_thresholds` measures the accuracy / latency trade-off by running the cascade on a
labelled split, and `write_sweep` writes it as CSV, Markdown and a PNG plot.

The decision rule is `byot_keras.inference.early_exit_from_logits`'s, applied one exit at
a time: the runtime's answers equal that function's on the same logits.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from byot_keras.export.cascade import IMAGE, LOGITS, TRUNK_IN, TRUNK_OUT
from byot_keras.export.litert import LiteRTModel
from byot_keras.inference import EarlyExitResult, check_threshold, softmax

MANIFEST_FILE = "manifest.json"
SUPPORTED_MANIFEST_VERSION = 2
DEFAULT_THRESHOLDS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)


def read_manifest(export_dir: str) -> dict:
    """The export's `manifest.json`, with clear errors for a wrong or incomplete folder."""
    export_dir = os.fspath(export_dir)
    if not os.path.isdir(export_dir):
        raise FileNotFoundError(
            f"Export folder '{export_dir}' does not exist (or is not a folder). Write one "
            "with byot_keras.export.export_tflite(model, folder)."
        )
    path = os.path.join(export_dir, MANIFEST_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No {MANIFEST_FILE} in '{export_dir}': not a byot_keras TFLite export (or an "
            "interrupted copy). Write one with byot_keras.export.export_tflite."
        )
    try:
        with open(path) as f:
            manifest = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version is None or "exits" not in manifest:
        raise ValueError(f"{path} is not a byot_keras export manifest (no 'format_version' "
                         "or 'exits').")
    if version > SUPPORTED_MANIFEST_VERSION:
        raise ValueError(f"{path} has format_version {version}; this runtime reads up to "
                         f"{SUPPORTED_MANIFEST_VERSION}. Update byot_keras.")
    if version < SUPPORTED_MANIFEST_VERSION:
        raise ValueError(f"{path} has format_version {version}: written by an earlier "
                         "byot-keras, whose files took normalised images and returned "
                         "logits. Export the model again.")
    return manifest


@dataclass(frozen=True)
class CascadeAnswer:
    """One image's answer: the class, the exit that gave it (1-based), its confidence (max
    softmax probability) and the wall time the cascade spent on the image."""

    prediction: int
    exit: int
    confidence: float
    latency_ms: float


@dataclass(frozen=True)
class CascadeResult(EarlyExitResult):
    """`EarlyExitResult` for a batch run image by image, plus each image's wall time."""

    latency_ms: np.ndarray


class CascadeRuntime:
    """Runs an export's early-exit cascade with the LiteRT interpreter, one image at a time.

    Args:
        export_dir: a folder written by `byot_keras.export.export_tflite` (with the
            cascade).
        quantization: which files to run; one of the manifest's `quantizations`.
        num_threads: interpreter threads per segment (None: LiteRT's default).

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> from byot_keras.export import export_tflite
        >>> model = zoo.alexnet_byot(num_classes=10, width_multiplier=0.125, exits=[1])
        >>> _ = export_tflite(model, "export", exits=[], multi_signature=False)  # cascade only
        >>> runtime = CascadeRuntime("export")
        >>> pixels = np.zeros((32, 32, 3))  # one RGB image, 0..255
        >>> runtime.classify(pixels, threshold=0.0).exit  # any confidence will do
        1
        >>> answer = runtime.classify(pixels, threshold=1.0)  # none will: the last exit
        >>> answer.exit, 0.0 <= answer.confidence <= 1.0, answer.latency_ms > 0
        (2, True, True)
    """

    def __init__(self, export_dir: str, quantization: str = "float32",
                 num_threads: int | None = None):
        self.export_dir = os.path.abspath(os.fspath(export_dir))
        self.manifest = read_manifest(self.export_dir)
        if not self.manifest.get("cascade"):
            raise ValueError(f"The export in '{self.export_dir}' has no cascade (exported "
                             "with cascade=False); export again with cascade=True.")
        available = list(self.manifest.get("quantizations", []))
        if quantization not in available:
            raise ValueError(f"No '{quantization}' files in '{self.export_dir}'; the export "
                             f"has {available}.")
        self.quantization = quantization
        self.num_threads = num_threads
        self.num_exits = int(self.manifest["num_exits"])
        self.num_classes = int(self.manifest["num_classes"])
        self.input_shape = tuple(int(d) for d in self.manifest["input"]["shape"][1:])
        # True: segment 1 takes 0..255 RGB pixels and normalises them itself.
        self.takes_pixels = bool(self.manifest["input"].get("pixels"))
        self.segment_files = []
        for k, entry in enumerate(self.manifest["exits"], start=1):
            info = entry.get("segment", {}).get(quantization)
            if info is None:
                raise ValueError(f"manifest.json lists no '{quantization}' segment for exit "
                                 f"{k}.")
            path = os.path.join(self.export_dir, info["file"])
            if not os.path.isfile(path):
                raise FileNotFoundError(f"Segment file '{path}' named in manifest.json is "
                                        "missing; copy the whole export folder.")
            self.segment_files.append(path)
        if len(self.segment_files) != self.num_exits:
            raise ValueError(f"manifest.json lists {len(self.segment_files)} exits but "
                             f"num_exits is {self.num_exits}.")
        self.segments = [LiteRTModel(path, num_threads=num_threads)
                         for path in self.segment_files]
        self.labels = self._read_labels()
        macs = [entry.get("cascade_macs") for entry in self.manifest["exits"]]
        self.cascade_macs = None if None in macs else [int(m) for m in macs]

    def _read_labels(self) -> list[str]:
        path = os.path.join(self.export_dir, self.manifest.get("labels_file") or "labels.txt")
        if os.path.isfile(path):
            with open(path) as f:
                labels = [line.rstrip("\n") for line in f]
            if len(labels) >= self.num_classes:
                return labels[:self.num_classes]
        return [str(i) for i in range(self.num_classes)]

    def _as_batch(self, images) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.shape == self.input_shape:
            images = images[None]
        if images.ndim != len(self.input_shape) + 1 or images.shape[1:] != self.input_shape:
            raise ValueError(f"Expected images of shape {self.input_shape} (or a batch of "
                             f"them), got {images.shape}.")
        return images

    def warm_up(self, runs: int = 3) -> None:
        """Runs every segment `runs` times on a blank image (first calls allocate)."""
        image = np.zeros((1, *self.input_shape), np.float32)
        for _ in range(runs):
            self._run(image, threshold=None)

    def _run(self, image: np.ndarray, threshold: float | None) -> CascadeAnswer:
        """The cascade on one (1, H, W, C) image; threshold None runs every segment."""
        start = time.perf_counter()
        feed = {IMAGE: image}
        for k, segment in enumerate(self.segments, start=1):
            # raw: an int8 trunk_out goes to the next segment as it is (no float trip).
            outputs = segment.raw(**feed)
            logits = segment.to_float(LOGITS, outputs[LOGITS])
            probabilities = softmax(np.asarray(logits, np.float64))[0]
            confidence = probabilities.max()
            if k == self.num_exits or (threshold is not None and confidence >= threshold):
                break
            feed = {TRUNK_IN: outputs[TRUNK_OUT]}
        elapsed = time.perf_counter() - start
        return CascadeAnswer(prediction=int(probabilities.argmax()), exit=k,
                             confidence=float(confidence), latency_ms=elapsed * 1e3)

    def classify(self, image, threshold: float = 0.9) -> CascadeAnswer:
        """Runs segments 1, 2, ... on one image (H, W, C) until an exit's max softmax
        reaches `threshold`; the deepest exit answers otherwise. The image is what the
        export's "image" tensor takes: RGB pixel values 0..255 (`takes_pixels`), or the
        network's own input for an export that records no normalisation."""
        check_threshold(threshold)
        images = self._as_batch(image)
        if len(images) != 1:
            raise ValueError(f"classify takes one image; got {len(images)}. Use "
                             "classify_batch.")
        return self._run(images, threshold)

    def classify_batch(self, images, threshold: float = 0.9) -> CascadeResult:
        """`classify` for each image in turn (as a device would), gathered into arrays."""
        check_threshold(threshold)
        answers = [self._run(image[None], threshold) for image in self._as_batch(images)]
        return CascadeResult(
            predictions=np.array([a.prediction for a in answers], np.int64),
            exits=np.array([a.exit for a in answers], np.int64),
            confidences=np.array([a.confidence for a in answers], np.float64),
            latency_ms=np.array([a.latency_ms for a in answers], np.float64),
        )

    def exit_logits(self, images, batch_size: int = 64) -> dict[str, np.ndarray]:
        """Every exit's logits for a batch (all segments run): `{"exit_1": ..., ...}`, the
        input `early_exit_from_logits` / `early_exit_curve` take."""
        feed = {IMAGE: self._as_batch(images)}
        logits = {}
        for k, segment in enumerate(self.segments, start=1):
            outputs = segment.predict(batch_size=batch_size, **feed)
            logits[f"exit_{k}"] = outputs[LOGITS]
            if k < self.num_exits:
                feed = {TRUNK_IN: outputs[TRUNK_OUT]}
        return logits


def sweep_thresholds(runtime: CascadeRuntime, images, labels,
                     thresholds: Sequence[float] = DEFAULT_THRESHOLDS, repeats: int = 3,
                     warmup: int = 5) -> list[dict]:
    """Accuracy against measured latency, by running the cascade image by image.

    For each threshold, every image goes through `runtime` `repeats` times; its latency
    is the median of those runs (its answer is the same every time). Returns one row per
    threshold: `threshold`, `accuracy`, `mean_exit`, `mean_latency_ms` (mean over images
    of the per-image median), `p90_latency_ms`, `exit_fractions` (share of images
    answered by each exit) and, when the manifest has the costs, `mean_mflops` (the
    cascade's FLOPs per image, 2 x `cascade_macs` of the answering exit).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    thresholds = [float(t) for t in thresholds]
    if not thresholds:
        raise ValueError("Give at least one threshold.")
    for threshold in thresholds:
        check_threshold(threshold)
    images = runtime._as_batch(images)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(images) or not len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images (need the same, "
                         "non-zero count).")
    runtime.warm_up(warmup)
    rows = []
    for threshold in thresholds:
        predictions = np.empty(len(images), np.int64)
        exits = np.empty(len(images), np.int64)
        latency = np.empty(len(images), np.float64)
        for i, image in enumerate(images):
            runs = [runtime._run(image[None], threshold) for _ in range(repeats)]
            predictions[i], exits[i] = runs[0].prediction, runs[0].exit
            latency[i] = np.median([run.latency_ms for run in runs])
        fractions = np.bincount(exits - 1, minlength=runtime.num_exits) / len(images)
        row = {
            "threshold": threshold,
            "accuracy": float(np.mean(predictions == labels)),
            "mean_exit": float(exits.mean()),
            "mean_latency_ms": float(latency.mean()),
            "p90_latency_ms": float(np.percentile(latency, 90)),
            "exit_fractions": [float(f) for f in fractions],
        }
        if runtime.cascade_macs is not None:
            row["mean_mflops"] = float(2 * np.dot(fractions, runtime.cascade_macs) / 1e6)
        rows.append(row)
    return rows


def _table(rows: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    num_exits = len(rows[0]["exit_fractions"])
    with_flops = all("mean_mflops" in row for row in rows)
    header = ["threshold", "accuracy", "mean_exit", "mean_latency_ms", "p90_latency_ms"]
    header += ["mean_mflops"] if with_flops else []
    header += [f"exit_{k}_fraction" for k in range(1, num_exits + 1)]
    body = []
    for row in rows:
        cells = [f"{row['threshold']:g}", f"{row['accuracy']:.4f}", f"{row['mean_exit']:.3f}",
                 f"{row['mean_latency_ms']:.3f}", f"{row['p90_latency_ms']:.3f}"]
        cells += [f"{row['mean_mflops']:.2f}"] if with_flops else []
        cells += [f"{f:.3f}" for f in row["exit_fractions"]]
        body.append(cells)
    return header, body


def format_sweep_markdown(rows: Sequence[dict]) -> str:
    """The sweep as a Markdown table."""
    header, body = _table(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def plot_sweep(rows: Sequence[dict], path: str, title: str | None = None) -> str:
    """Left: accuracy against mean latency per image, each point labelled with its
    threshold. Right: the share of images each exit answered, per threshold. Drawn on
    matplotlib's Agg canvas (no display, no change to the global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10.5, 4.4), dpi=110)
    FigureCanvasAgg(figure)
    curve, shares = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    latency = [row["mean_latency_ms"] for row in rows]
    accuracy = [row["accuracy"] for row in rows]
    curve.plot(latency, accuracy, marker="o")
    for i, (row, x, y) in enumerate(zip(rows, latency, accuracy)):
        curve.annotate(f"{row['threshold']:g}", (x, y), textcoords="offset points",
                       xytext=(0, 7 if i % 2 == 0 else -13), ha="center", fontsize=7)
    curve.set_xlabel("latency per image (ms): mean over images of the median of repeats")
    curve.set_ylabel("top-1 accuracy")
    curve.set_title("accuracy vs latency (labels: threshold)", fontsize=9)
    curve.grid(True, alpha=0.3)
    positions = range(len(rows))
    bottom = [0.0] * len(rows)
    for k in range(len(rows[0]["exit_fractions"])):
        heights = [row["exit_fractions"][k] for row in rows]
        shares.bar(positions, heights, bottom=bottom, label=f"exit {k + 1}")
        bottom = [b + h for b, h in zip(bottom, heights)]
    shares.set_xticks(list(positions), [f"{row['threshold']:g}" for row in rows], fontsize=7)
    shares.set_xlabel("threshold")
    shares.set_ylabel("share of images answered")
    shares.set_title("which exit answers", fontsize=9)
    shares.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.suptitle(title or "Early-exit cascade", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    return path


def write_sweep(rows: Sequence[dict], output_dir: str, stem: str = "early_exit_sweep",
                title: str | None = None) -> dict[str, str]:
    """Writes `<stem>.csv`, `<stem>.md` and `<stem>.png` into `output_dir`; returns their
    paths by kind."""
    from byot_keras.folders import OutputFolderError, require_folder_path
    from byot_keras.saving import replace_atomically, write_text_atomically

    if not rows:
        raise ValueError("No sweep rows to write.")
    require_folder_path(output_dir)
    paths = {kind: os.path.join(output_dir, f"{stem}.{kind}") for kind in ("csv", "md", "png")}
    present = [path for path in paths.values() if os.path.lexists(path)]
    if present and not _written_by_sweep(paths["csv"]):
        raise OutputFolderError(f"{', '.join(present)} exist and are not an earlier sweep's "
                                "files: move them away or choose another output folder.")
    header, body = _table(rows)
    table = io.StringIO()
    csv.writer(table, lineterminator="\n").writerows([header, *body])
    write_text_atomically(paths["csv"], table.getvalue())
    write_text_atomically(paths["md"], (f"{title}\n\n" if title else "")
                          + format_sweep_markdown(rows))
    replace_atomically(paths["png"], lambda path: plot_sweep(rows, path, title), suffix=".png")
    return paths


def _written_by_sweep(csv_path: str) -> bool:
    """Whether `csv_path` is a sweep table (its header starts like `_table`'s)."""
    try:
        with open(csv_path, newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return False
    return header[:3] == ["threshold", "accuracy", "mean_exit"]


def export_inputs(manifest: dict, images, normalization: dict) -> tuple[np.ndarray, str | None]:
    """Images normalised with `normalization` (as `load_labelled_split` returns them) as
    the export's "image" tensor takes them: 0..255 RGB pixels when its manifest says
    `input.pixels` (its files normalise them as the model was trained), else unchanged,
    with a warning (the export does not record the model's normalisation, so these
    images are right only if the model was trained on data prepared like them).

    Example:
        >>> import numpy as np
        >>> manifest = {"input": {"pixels": True}}
        >>> export_inputs(manifest, np.ones((1, 1, 1, 3)), {"scale": 1 / 16, "mean": 0.0,
        ...                                                 "std": 1.0})[0].ravel()
        array([255., 255., 255.], dtype=float32)
    """
    from byot_keras.normalization import to_pixels

    if manifest["input"].get("pixels"):
        return to_pixels(images, normalization), None
    return np.asarray(images, np.float32), (
        "the export does not record the model's input normalisation (the model did not "
        f"and none was given); feeding the data normalised with {normalization}: the "
        "accuracies are only meaningful if the model was trained on data prepared like "
        "this.")


def load_labelled_split(dataset: str = "digits", split: str = "test",
                        data_dir: str | None = None, max_examples: int | None = None
                        ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Images (normalised as for training), labels, and the normalisation that maps raw
    pixels to those images (to compare with the export's manifest).

    `dataset`: "digits" (embedded, offline; split "train" or "test") or "cifar10"
    (tensorflow-datasets from `data_dir`, never downloaded; any tfds split such as
    "test" or "test[:1000]"; pixels / 255, then the CIFAR-10 mean and std per channel).
    """
    from byot_keras import data

    if dataset == "digits":
        if split not in ("train", "test"):
            raise ValueError(f"digits has the splits 'train' and 'test', not '{split}'.")
        (x_train, y_train), (x_test, y_test) = data.load_digits()
        images, labels = (x_train, y_train) if split == "train" else (x_test, y_test)
        normalization = data.DIGITS_NORMALIZATION
    elif dataset == "cifar10":
        images, labels = data.load_cifar("cifar10", split, data_dir, download=False)
        normalization = data.CIFAR_NORMALIZATION
    else:
        raise ValueError(f"Unknown dataset '{dataset}'; choose 'digits' or 'cifar10'.")
    if max_examples:
        images, labels = images[:max_examples], labels[:max_examples]
    return images, labels, dict(normalization)


def run_sweep(export_dir: str, images, labels, output_dir: str, *,
              thresholds: Sequence[float] = DEFAULT_THRESHOLDS, quantization: str = "float32",
              num_threads: int | None = None, repeats: int = 3, warmup: int = 5,
              title: str | None = None) -> tuple[list[dict], dict[str, str]]:
    """Loads the cascade, sweeps the thresholds and writes the table and the plot."""
    runtime = CascadeRuntime(export_dir, quantization=quantization, num_threads=num_threads)
    rows = sweep_thresholds(runtime, images, labels, thresholds, repeats=repeats,
                            warmup=warmup)
    if title is None:
        title = (f"{runtime.manifest.get('model', 'model')} cascade, {quantization}, "
                 f"{num_threads or 'default'} thread(s), {len(labels)} images")
    return rows, write_sweep(rows, output_dir, title=title)
