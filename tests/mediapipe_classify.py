"""Runs in the MediaPipe environment (not byot-keras'; see .ci/run), for
tests/test_mediapipe.py: classifies uint8 RGB images with MediaPipe Tasks'
`ImageClassifier`, default options, one .tflite file after the other, and reads each
file's metadata back with tflite-support's `MetadataDisplayer` when it is installed.

    python mediapipe_classify.py IMAGES.npy RESULT.json MODEL.tflite [MODEL.tflite ...]

IMAGES.npy: uint8, shape (n, height, width, 3). RESULT.json: per model file either
{"categories": [[index, name, score] of the top category, per image], "num_categories"}
or {"error": "..."}; and "metadata" (the displayer's JSON, packed file names and
labels.txt) or null without tflite-support.
"""

import json
import sys

import numpy as np


def classify(path: str, images: np.ndarray) -> dict:
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=path))
    try:
        classifier = vision.ImageClassifier.create_from_options(options)
    except Exception as error:  # reported to the test, which fails with it
        return {"error": f"{type(error).__name__}: {error}"}
    top, counts = [], set()
    with classifier:
        for image in images:
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB,
                                                  data=np.ascontiguousarray(image)))
            categories = result.classifications[0].categories
            counts.add(len(categories))
            best = max(categories, key=lambda c: c.score)
            top.append([best.index, best.category_name, float(best.score)])
    return {"categories": top, "num_categories": sorted(counts)}


def metadata(path: str) -> dict | None:
    try:
        from tensorflow_lite_support.metadata.python import metadata as tflite_metadata
    except ImportError:
        return None
    displayer = tflite_metadata.MetadataDisplayer.with_model_file(path)
    files = displayer.get_packed_associated_file_list()
    return {"json": json.loads(displayer.get_metadata_json()), "packed_files": files,
            "labels": (displayer.get_associated_file_buffer("labels.txt").decode()
                       if "labels.txt" in files else None)}


def main() -> None:
    images_path, result_path, *models = sys.argv[1:]
    images = np.load(images_path)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise SystemExit(f"{images_path}: expected uint8 (n, h, w, 3), got {images.dtype} "
                         f"{images.shape}")
    results = {path: {**classify(path, images), "metadata": metadata(path)}
               for path in models}
    with open(result_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
