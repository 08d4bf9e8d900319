"""Input pipelines (byot_keras.data.pipeline) against NumPy references.

tensorflow-datasets' mock_data stands in for CIFAR-100 and ImageNet (random examples of
the real feature specs, no files); image folders are written here with known colours.
"""

import numpy as np
import pytest
import tensorflow as tf

from byot_keras.data import normalize_cifar
from byot_keras.data import pipeline as P

tfds = pytest.importorskip("tensorflow_datasets")


def _batches(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


@pytest.fixture(scope="module")
def cifar100():
    with tfds.testing.mock_data(num_examples=96):
        source = P.load_source("cifar100")
        raw_test = [(x.numpy(), y.numpy()) for x, y in source.test]
        raw_train = [(x.numpy(), y.numpy()) for x, y in source.train]
    # The mock's examples are generated once per load: keep them as tensors.
    source.test = tf.data.Dataset.from_tensor_slices(
        (np.stack([x for x, _ in raw_test]), np.array([y for _, y in raw_test])))
    source.train = tf.data.Dataset.from_tensor_slices(
        (np.stack([x for x, _ in raw_train]), np.array([y for _, y in raw_train])))
    return source, raw_train, raw_test


def test_cifar100_source_and_evaluation_batches_match_the_numpy_normalisation(cifar100):
    source, _, raw_test = cifar100
    assert (source.num_classes, source.image_shape, source.num_train) == (100, (32, 32, 3), 96)
    images, labels = map(np.concatenate, zip(*_batches(P.evaluation_dataset(source, 40))))
    expected = normalize_cifar(np.stack([x for x, _ in raw_test]))
    np.testing.assert_allclose(images, expected, atol=1e-5)
    np.testing.assert_array_equal(labels, [y for _, y in raw_test])
    assert labels.dtype == np.int32


def test_each_epoch_is_a_seeded_permutation_and_resuming_repeats_it(cifar100):
    source, raw_train, _ = cifar100
    batches = _batches(P.training_dataset(source, 32, seed=3, augment=[], epochs=3))
    assert len(batches) == 3 * 3 and batches[0][0].shape == (32, 32, 32, 3)
    reference = normalize_cifar(np.stack([x for x, _ in raw_train])).reshape(96, -1)
    orders = []
    for epoch in range(3):
        images = np.concatenate([b[0] for b in batches[3 * epoch:3 * epoch + 3]])
        labels = np.concatenate([b[1] for b in batches[3 * epoch:3 * epoch + 3]])
        distance = np.abs(images.reshape(96, 1, -1) - reference[None]).max(-1)
        order = list(distance.argmin(1))
        assert distance.min(1).max() < 1e-5  # every image is a source image
        assert sorted(order) == list(range(96))  # ... each exactly once
        np.testing.assert_array_equal(labels, [raw_train[i][1] for i in order])
        orders.append(order)
    assert orders[0] != orders[1] != orders[2]  # reshuffled every epoch
    again = _batches(P.training_dataset(source, 32, seed=3, augment=[], epochs=3))
    resumed = _batches(P.training_dataset(source, 32, seed=3, augment=[], epochs=3,
                                          initial_epoch=1))
    for (x, _), (x2, _) in zip(batches, again, strict=True):
        np.testing.assert_array_equal(x, x2)
    for (x, y), (x2, y2) in zip(batches[3:], resumed, strict=True):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    other_seed = _batches(P.training_dataset(source, 32, seed=4, augment=[], epochs=1))
    assert not np.array_equal(other_seed[0][1], batches[0][1])


def test_augmented_epochs_are_reproducible_from_the_seed(cifar100):
    source, _, _ = cifar100
    augment = ["pad_crop", "flip", "cutout"]
    first = _batches(P.training_dataset(source, 32, seed=5, augment=augment, epochs=2))
    second = _batches(P.training_dataset(source, 32, seed=5, augment=augment, epochs=2,
                                         initial_epoch=1))
    for (x, _), (x2, _) in zip(first[3:], second, strict=True):
        np.testing.assert_array_equal(x, x2)


def test_pad_crop_and_flip_take_a_window_of_the_zero_padded_image():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 255, size=(64, 8, 8, 3)).astype("float32")
    cropped = P.flip(P.pad_crop(tf.constant(images), tf.constant([7, 1]), 2),
                     tf.constant([7, 2])).numpy()
    seen = set()
    for image, out in zip(images, cropped):
        padded = np.pad(image, [(2, 2), (2, 2), (0, 0)])
        matches = [(dy, dx, flipped) for dy in range(5) for dx in range(5)
                   for flipped in (False, True)
                   if np.array_equal(out, (padded[dy:dy + 8, dx:dx + 8][:, ::-1] if flipped
                                           else padded[dy:dy + 8, dx:dx + 8]))]
        assert matches, "output is not a (flipped) window of the padded image"
        seen.update(matches)
    assert {m[2] for m in seen} == {False, True}
    assert len({m[:2] for m in seen}) > 10  # offsets vary over the 25 possible


def test_cutout_zeroes_one_clipped_square_per_image():
    images = tf.ones((200, 32, 32, 3))
    out = P.cutout(images, tf.constant([3, 4]), size=16).numpy()
    for image in out:
        rows, cols = np.nonzero(image[..., 0] == 0)
        assert np.all(image[..., 0] == image[..., 2])
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert len(rows) == height * width  # one axis-aligned rectangle
        assert 8 <= height <= 16 and 8 <= width <= 16  # the centre is inside the image
        # Unclipped sides are exactly 16.
        assert height == 16 or rows.min() == 0 or rows.max() == 31
        assert width == 16 or cols.min() == 0 or cols.max() == 31


def test_random_resized_crop_boxes_respect_area_and_aspect_ranges():
    boxes = P._crop_boxes(2000, tf.constant([1, 9])).numpy()
    height, width = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert np.all(boxes >= 0) and np.all(boxes <= 1 + 1e-6)
    unclipped = (height < 1) & (width < 1)
    ratio = width[unclipped] / height[unclipped]
    assert np.all((ratio > 0.75 - 1e-4) & (ratio < 4 / 3 + 1e-4))
    area = height[unclipped] * width[unclipped]
    assert np.all((area > 0.08 - 1e-4) & (area <= 1))
    assert area.min() < 0.15 and area.max() > 0.8  # the whole range is used


def test_imagenet_mock_decodes_crops_and_normalises():
    with tfds.testing.mock_data(num_examples=8):
        source = P.load_source("imagenet2012", image_size=64)
        assert (source.num_classes, source.encoded, source.test_split) == (
            1000, True, "validation")
        train = _batches(P.training_dataset(source, 4, seed=0, epochs=1,
                                            augment=["random_resized_crop", "flip"]))
        test = _batches(P.evaluation_dataset(source, 4))
    low = (0 - np.array(P.IMAGENET_NORMALIZATION["mean"])) / P.IMAGENET_NORMALIZATION["std"]
    high = (1 - np.array(P.IMAGENET_NORMALIZATION["mean"])) / P.IMAGENET_NORMALIZATION["std"]
    for images, labels in train + test:
        assert images.shape == (4, 64, 64, 3) and images.dtype == np.float32
        assert np.all(images >= low - 1e-3) and np.all(images <= high + 1e-3)
        assert np.all((labels >= 0) & (labels < 1000))


def _write_png(path, colour):
    image = np.full((12, 10, 3), colour, dtype="uint8")
    path.write_bytes(tf.io.encode_png(image).numpy())


@pytest.fixture
def folder(tmp_path):
    colours = {"cat": (200, 0, 0), "dog": (0, 200, 0), "fox": (0, 0, 200)}
    for split, count in (("train", 4), ("val", 2)):
        for name, colour in colours.items():
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                _write_png(tmp_path / split / name / f"{i}.png", colour)
    return tmp_path, colours


def test_image_folder_labels_follow_the_class_folders(folder):
    root, colours = folder
    source = P.load_source("image_folder", str(root), image_size=16)
    assert source.class_names == ["cat", "dog", "fox"]
    assert (source.num_train, source.num_test, source.image_shape) == (12, 6, (16, 16, 3))
    for dataset in (source.train, source.test):
        for image, label in dataset.as_numpy_iterator():
            expected = colours[source.class_names[label]]
            np.testing.assert_array_equal(image[8, 8], expected)
    # A single folder is split by validation_split, stratification aside.
    single = P.load_source("image_folder", str(root / "train"), image_size=16,
                           validation_split=0.25)
    assert (single.num_train, single.num_test) == (9, 3)


def test_image_folder_with_one_class_or_an_unreadable_image_fails_clearly(folder, tmp_path):
    root, _ = folder
    one = tmp_path / "one" / "only"
    one.mkdir(parents=True)
    _write_png(one / "a.png", (1, 2, 3))
    with pytest.raises(ValueError, match="at least two"):
        P.load_source("image_folder", str(tmp_path / "one"))
    (root / "val" / "dog" / "broken.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="broken.jpg"):
        P.load_source("image_folder", str(root), image_size=16)


def test_unknown_dataset_and_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'.*cifar100"):
        P.load_source("mnist")
    with pytest.raises(ValueError, match="Unknown augmentation.*rotate"):
        P.check_augmentations(["flip", "rotate"])
    with pytest.raises(ValueError, match="fewer than one batch"):
        P.steps_per_epoch(10, 32)
