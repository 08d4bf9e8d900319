"""Training and evaluation input pipelines (tf.data), in the order of tensorflow-datasets'
performance guide: decode -> cache -> shuffle -> augment -> batch -> prefetch.

A data set is first loaded as a :class:`DataSource` (unbatched, un-augmented examples plus
what the model needs to know: classes, input shape, normalisation); then
:func:`training_dataset` and :func:`evaluation_dataset` turn it into batches.

Augmentation runs on the fly inside the pipeline with *stateless* random ops whose seeds
are derived from `(seed, epoch, position in the epoch)`, and each epoch is shuffled with a
seed derived from `(seed, epoch)`. So the batches of epoch `e` are a function of the seed
and `e` only: a run resumed at epoch `e` in a new process sees exactly the batches the
interrupted run would have seen.

Sources: "cifar10", "cifar100", "imagenet2012" (tensorflow-datasets, `data_dir`),
"image_folder" (`keras.utils.image_dataset_from_directory` on `data_dir`) and "digits"
(scikit-learn's digits, embedded, offline).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from byot_keras.data.cifar import CIFAR_NORMALIZATION

TFDS_DATASETS = ("cifar10", "cifar100", "imagenet2012")
DATASETS = (*TFDS_DATASETS, "image_folder", "digits")
AUGMENTATIONS = ("pad_crop", "flip", "random_resized_crop", "cutout")
# Per-channel mean and std of ImageNet training images (torchvision's values).
IMAGENET_NORMALIZATION = {
    "scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
}
# The digits loader already divides the 0..16 pixels by 16.
_UNIT_NORMALIZATION = {"scale": 1.0, "mean": 0.0, "std": 1.0}
_EVAL_CROP_FRACTION = 0.875  # ImageNet evaluation: resize to size / 0.875, centre crop
_CUTOUT_SIZE = 16
_IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".gif")
_FOLDER_TEST_NAMES = ("val", "validation", "test")


@dataclasses.dataclass
class DataSource:
    """A data set before batching: `train`/`test` yield unbatched `(image, label)`.

    Images are raw (not normalised): uint8 or float arrays of `image_shape`, or, when
    `encoded`, JPEG bytes that the pipelines decode (and crop) on the fly.
    `normalization` (`scale`, per-channel `mean`, `std`) is applied after augmentation:
    `(image * scale - mean) / std`.
    """

    name: str
    train: tf.data.Dataset
    test: tf.data.Dataset
    num_train: int
    num_test: int
    num_classes: int
    image_shape: tuple
    normalization: dict
    class_names: list | None = None
    encoded: bool = False
    test_split: str = "test"

    def describe(self) -> dict:
        """JSON-ready facts about the data (for reports)."""
        return {
            "name": self.name, "num_train": self.num_train, "num_test": self.num_test,
            "test_split": self.test_split, "num_classes": self.num_classes,
            "image_shape": list(self.image_shape), "normalization": self.normalization,
        }


def load_source(name: str, data_dir: str | None = None, *, download: bool = False,
                image_size: int | None = None, train_examples: int | None = None,
                test_examples: int | None = None, validation_split: float = 0.1,
                seed: int = 0, verify_images: bool = True) -> DataSource:
    """Loads data set `name` (one of `DATASETS`) as a :class:`DataSource`.

    Args:
        name: "cifar10", "cifar100", "imagenet2012", "image_folder" or "digits".
        data_dir: the tensorflow-datasets data_dir, or the image folder. An image folder
            holds one sub-folder per class, or `train/` and `val/` (or `validation/`,
            `test/`) each holding the class sub-folders.
        download: let tensorflow-datasets download and prepare a missing data set.
        image_size: side of the (square) model input; only for "image_folder" (default
            224) and "imagenet2012" (default 224).
        train_examples, test_examples: use only the first N examples (quick runs).
        validation_split: share of a single image folder held out for testing.
        seed: fixes the split of a single image folder.
        verify_images: decode every file of an image folder once, so that an unreadable
            image stops the run before training rather than in the middle of an epoch.

    Example:
        >>> source = load_source("digits", train_examples=256)
        >>> source.num_train, source.num_classes, source.image_shape
        (256, 10, (32, 32, 3))
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset '{name}'. Valid: {', '.join(DATASETS)}.")
    for option, value in (("train_examples", train_examples), ("test_examples", test_examples)):
        if value is not None and value < 1:
            raise ValueError(f"{option} must be >= 1 (or None for all), got {value}.")
    if image_size is not None and image_size < 8:
        raise ValueError(f"image_size must be >= 8 pixels, got {image_size}.")
    if name == "digits":
        source = _digits_source(seed)
    elif name == "image_folder":
        source = _folder_source(data_dir, image_size or 224, validation_split, seed,
                                verify_images)
    else:
        source = _tfds_source(name, data_dir, download, image_size or 224)
    return _limit(source, train_examples, test_examples)


def _limit(source: DataSource, train_examples, test_examples) -> DataSource:
    if train_examples is not None and train_examples < source.num_train:
        source.train = source.train.take(train_examples)
        source.num_train = train_examples
    if test_examples is not None and test_examples < source.num_test:
        source.test = source.test.take(test_examples)
        source.num_test = test_examples
    return source


def _digits_source(seed: int) -> DataSource:
    from byot_keras.data.digits import DIGITS_CLASSES, load_digits

    (x_train, y_train), (x_test, y_test) = load_digits(seed=seed)
    return DataSource(
        name="digits",
        train=tf.data.Dataset.from_tensor_slices((x_train, y_train)),
        test=tf.data.Dataset.from_tensor_slices((x_test, y_test)),
        num_train=len(x_train), num_test=len(x_test), num_classes=len(DIGITS_CLASSES),
        image_shape=tuple(x_train.shape[1:]), normalization=dict(_UNIT_NORMALIZATION),
        class_names=list(DIGITS_CLASSES),
    )


def _tfds_source(name: str, data_dir: str | None, download: bool,
                 image_size: int) -> DataSource:
    import tensorflow_datasets as tfds

    test_split = "validation" if name == "imagenet2012" else "test"
    encoded = name == "imagenet2012"  # variable-size JPEGs: decode (and crop) on the fly
    decoders = {"image": tfds.decode.SkipDecoding()} if encoded else None
    if data_dir is not None and not os.path.isdir(data_dir):
        raise ValueError(f"--data_dir '{data_dir}' does not exist (it should be a "
                         f"tensorflow-datasets data_dir holding '{name}/').")
    splits = {}
    for split in ("train", test_split):
        try:
            splits[split] = tfds.load(
                name, split=split, data_dir=data_dir, as_supervised=True,
                download=download, decoders=decoders,
                read_config=tfds.ReadConfig(try_autocache=False),
            )
        except Exception as error:  # tfds raises AssertionError, FileNotFoundError, ...
            where = data_dir or "tensorflow-datasets' default data_dir (~/tensorflow_datasets)"
            hint = ("" if download else
                    " Pass --download to let tensorflow-datasets fetch and prepare it, or"
                    " point --data_dir at a folder that holds it.")
            raise ValueError(f"Dataset '{name}' (split '{split}') is not available in "
                             f"{where}.{hint} ({type(error).__name__}: {error})") from error
    builder = tfds.builder(name, data_dir=data_dir)
    label = builder.info.features["label"]
    shape = (image_size, image_size, 3) if encoded else tuple(builder.info.features["image"].shape)
    return DataSource(
        name=name, train=splits["train"], test=splits[test_split],
        num_train=_count(splits["train"], builder, "train"),
        num_test=_count(splits[test_split], builder, test_split),
        num_classes=int(label.num_classes), image_shape=shape,
        normalization=dict(CIFAR_NORMALIZATION if name.startswith("cifar")
                           else IMAGENET_NORMALIZATION),
        class_names=list(label.names), encoded=encoded, test_split=test_split,
    )


def _count(dataset: tf.data.Dataset, builder, split: str) -> int:
    if split in builder.info.splits:
        return int(builder.info.splits[split].num_examples)
    cardinality = int(dataset.cardinality())
    if cardinality >= 0:
        return cardinality
    return int(dataset.reduce(0, lambda count, _: count + 1))


def _folder_layout(data_dir: str | None) -> tuple[str, str | None]:
    """(train folder, test folder or None for a split of the train folder)."""
    if not data_dir:
        raise ValueError("--dataset image_folder needs --data_dir: a folder with one "
                         "sub-folder of images per class (or train/ and val/ sub-folders).")
    if not os.path.isdir(data_dir):
        raise ValueError(f"Image folder '{data_dir}' does not exist.")
    train_dir = os.path.join(data_dir, "train")
    for test_name in _FOLDER_TEST_NAMES:
        test_dir = os.path.join(data_dir, test_name)
        if os.path.isdir(train_dir) and os.path.isdir(test_dir):
            return train_dir, test_dir
    return data_dir, None


def _class_folders(folder: str) -> list[str]:
    return sorted(e for e in os.listdir(folder) if os.path.isdir(os.path.join(folder, e)))


def _folder_source(data_dir, image_size: int, validation_split: float, seed: int,
                   verify_images: bool) -> DataSource:
    import keras

    train_dir, test_dir = _folder_layout(data_dir)
    classes = _class_folders(train_dir)
    if len(classes) < 2:
        raise ValueError(
            f"Image folder '{train_dir}' has {len(classes)} class sub-folder(s) "
            f"({', '.join(classes) or 'none'}); a classifier needs at least two: put each "
            "class's images in its own sub-folder.")
    if test_dir is not None and _class_folders(test_dir) != classes:
        raise ValueError(f"The class sub-folders of '{test_dir}' ({_class_folders(test_dir)}) "
                         f"differ from those of '{train_dir}' ({classes}).")
    if test_dir is None and not 0.0 < validation_split < 1.0:
        raise ValueError(f"validation_split must be in (0, 1) for a single image folder, got "
                         f"{validation_split}.")
    options = dict(labels="inferred", label_mode="int", batch_size=None,
                   image_size=(image_size, image_size), interpolation="bilinear",
                   class_names=classes, verbose=False)
    try:
        if test_dir is None:
            # shuffle=True: the split takes the *last* files, which unshuffled would be
            # whole classes. The file order is fixed by `seed`.
            train, test = keras.utils.image_dataset_from_directory(
                train_dir, validation_split=validation_split, subset="both", shuffle=True,
                seed=seed, **options)
        else:
            train = keras.utils.image_dataset_from_directory(train_dir, shuffle=False,
                                                             **options)
            test = keras.utils.image_dataset_from_directory(test_dir, shuffle=False,
                                                            **options)
    except ValueError as error:
        raise ValueError(f"Cannot read image folder '{data_dir}': {error}") from error
    for split, dataset in (("training", train), ("test", test)):
        if not dataset.file_paths:
            raise ValueError(f"Image folder '{data_dir}' has no {split} images (looked for "
                             f"{', '.join(_IMAGE_EXTENSIONS)} files in the class folders).")
    if verify_images:
        check_images(list(train.file_paths) + list(test.file_paths))

    def to_uint8(image, label):  # resized floats 0..255 -> uint8: 4x less cache memory
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label

    return DataSource(
        name="image_folder", train=train.map(to_uint8), test=test.map(to_uint8),
        num_train=len(train.file_paths), num_test=len(test.file_paths),
        num_classes=len(classes), image_shape=(image_size, image_size, 3),
        normalization=dict(IMAGENET_NORMALIZATION), class_names=classes,
        test_split="val folder" if test_dir else f"{validation_split:g} of the folder",
    )


def check_images(paths: list[str]) -> None:
    """Decodes every image file once (in parallel); raises a ValueError naming the files
    that cannot be read as images."""
    def decodes(index):
        image = tf.io.decode_image(tf.io.read_file(tf.gather(paths, index)), channels=3,
                                   expand_animations=False)
        return index, tf.shape(image)[0]

    readable = (tf.data.Dataset.range(len(paths))
                .map(decodes, num_parallel_calls=tf.data.AUTOTUNE)
                .ignore_errors())
    good = {int(index) for index, _ in readable.as_numpy_iterator()}
    bad = [path for i, path in enumerate(paths) if i not in good]
    if bad:
        listed = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(f"{len(bad)} image file(s) cannot be decoded: {listed}. Remove or "
                         "replace them (or pass verify_images=False to skip this check).")


# ---------------------------------------------------------------------------------------
# Augmentation on whole batches (vectorised, as the tf.data guide advises) with stateless
# random ops: the result depends only on the batch and its seed.


def _uniform(shape, seed, minval=0.0, maxval=1.0):
    return tf.random.stateless_uniform(shape, seed=seed, minval=minval, maxval=maxval)


def _random_ints(shape, seed, maxval):
    """Uniform integers in [0, maxval) (maxval a scalar or per-row tensor)."""
    return tf.cast(tf.floor(_uniform(shape, seed) * tf.cast(maxval, tf.float32)), tf.int32)


def pad_crop(images, seed, padding: int):
    """Zero-pads `padding` pixels on each side of every image of a batch, then crops a
    random window of the original size from each (the CIFAR recipe's
    RandomCrop(32, padding=4)).

    Example:
        >>> pad_crop(tf.ones((2, 32, 32, 3)), tf.constant([1, 2]), 4).shape
        TensorShape([2, 32, 32, 3])
    """
    height, width = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    offsets = _random_ints([tf.shape(images)[0], 2], seed, 2 * padding + 1)
    rows = offsets[:, :1] + tf.range(height)[None, :]
    cols = offsets[:, 1:] + tf.range(width)[None, :]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, cols, axis=2, batch_dims=1)


def flip(images, seed):
    """Flips each image of a batch left-right with probability 1/2."""
    flipped = _uniform([tf.shape(images)[0]], seed) < 0.5
    return tf.where(flipped[:, None, None, None], tf.reverse(images, axis=[2]), images)


def cutout(images, seed, size: int = _CUTOUT_SIZE):
    """Zeroes a `size` x `size` square centred on a uniformly random pixel of each image
    (clipped at the border), as in Cutout (DeVries & Taylor, 2017, arXiv 1708.04552).
    Applied to normalised images, so zero is the mean colour."""
    height, width = images.shape[1], images.shape[2]
    centres = _random_ints([tf.shape(images)[0], 2], seed, tf.constant([height, width]))
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    centre_y, centre_x = centres[:, 0, None, None], centres[:, 1, None, None]
    inside = ((rows >= centre_y - size // 2) & (rows < centre_y + size - size // 2)
              & (cols >= centre_x - size // 2) & (cols < centre_x + size - size // 2))
    return images * tf.cast(~inside, images.dtype)[..., None]


def _crop_boxes(count, seed):
    """Random crop boxes (normalised [y0, x0, y1, x1]): area 8-100 % of the image, aspect
    ratio 3/4-4/3 (log-uniform); a side longer than the image is clipped to it."""
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    area = _uniform([count], seeds[0], 0.08, 1.0)
    log_ratio = _uniform([count], seeds[1], np.log(3 / 4), np.log(4 / 3))
    ratio = tf.exp(log_ratio)
    height = tf.minimum(tf.sqrt(area / ratio), 1.0)
    width = tf.minimum(tf.sqrt(area * ratio), 1.0)
    corner = _uniform([count, 2], seeds[2]) * tf.stack([1.0 - height, 1.0 - width], axis=1)
    return tf.stack([corner[:, 0], corner[:, 1], corner[:, 0] + height,
                     corner[:, 1] + width], axis=1)


def random_resized_crop(images, seed, image_size: int):
    """A random crop of each image of a batch (area 8-100 %, aspect ratio 3/4-4/3),
    resized (bilinear) to `image_size`."""
    count = tf.shape(images)[0]
    return tf.image.crop_and_resize(tf.cast(images, tf.float32), _crop_boxes(count, seed),
                                    tf.range(count), (image_size, image_size))


def _decode_random_resized_crop(encoded, seed, image_size: int):
    """One JPEG: decodes only a random crop window (ImageNet training), resized."""
    box = _crop_boxes(1, seed)[0]
    shape = tf.cast(tf.image.extract_jpeg_shape(encoded)[:2], tf.float32)
    top_left = tf.cast(tf.floor(box[:2] * shape), tf.int32)
    size = tf.maximum(tf.cast(tf.round((box[2:] - box[:2]) * shape), tf.int32), 1)
    size = tf.minimum(size, tf.cast(shape, tf.int32) - top_left)
    crop = tf.image.decode_and_crop_jpeg(encoded, tf.concat([top_left, size], 0), channels=3)
    return tf.image.resize(crop, (image_size, image_size))


def _resize_centre_crop(image, image_size: int):
    """Resizes the shorter side to image_size / 0.875, then crops the centre square."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = image_size / _EVAL_CROP_FRACTION / tf.reduce_min(shape)
    resized = tf.image.resize(image, tf.cast(tf.round(shape * scale), tf.int32))
    return tf.image.resize_with_crop_or_pad(resized, image_size, image_size)


def normalize(images, normalization: dict, dtype="float32"):
    """`(images * scale - mean) / std`, per channel, as `dtype`."""
    images = tf.cast(images, "float32") * normalization["scale"]
    mean = tf.constant(normalization["mean"], "float32")
    std = tf.constant(normalization["std"], "float32")
    return tf.cast((images - mean) / std, dtype)


def check_augmentations(augment) -> list[str]:
    """The augmentation names as a list; unknown names, and "none" beside others (which
    contradict it), raise a ValueError."""
    augment = [a for a in (augment or []) if a]
    if "none" in augment and len(augment) > 1:
        raise ValueError(f"--augment: 'none' cannot be combined with other augmentations "
                         f"(got {','.join(augment)}): give none alone, or the ones to "
                         f"apply from {', '.join(AUGMENTATIONS)}.")
    augment = [a for a in augment if a != "none"]
    unknown = [a for a in augment if a not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"Unknown augmentation(s) {', '.join(unknown)}. Valid: "
                         f"{', '.join(AUGMENTATIONS)} (or none).")
    return augment


def _batch_transform(source: DataSource, augment: list[str], dtype):
    """(batch of images, seed) -> augmented, normalised batch."""
    size = source.image_shape[0]
    padding = max(1, size // 8)  # 4 px on CIFAR's 32

    def transform(images, seed):
        seeds = tf.random.experimental.stateless_split(seed, num=4)
        if "random_resized_crop" in augment and not source.encoded:  # encoded: at decoding
            images = random_resized_crop(images, seeds[0], size)
        if "pad_crop" in augment:
            images = pad_crop(images, seeds[1], padding)
        if "flip" in augment:
            images = flip(images, seeds[2])
        images = normalize(images, source.normalization, dtype)
        if "cutout" in augment:
            images = cutout(images, seeds[3])
        return images

    return transform


def _eval_transform(source: DataSource, dtype):
    size = source.image_shape[0]

    def transform(image):
        if source.encoded:
            image = _resize_centre_crop(tf.io.decode_jpeg(image, channels=3), size)
        return normalize(image, source.normalization, dtype)

    return transform


def _as_int32(label):
    return tf.cast(label, tf.int32)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped); raises if none."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if num_examples < batch_size:
        raise ValueError(f"The training set has {num_examples} examples, fewer than one "
                         f"batch of {batch_size}: lower the batch size.")
    return num_examples // batch_size


def epoch_seed(seed: int, epoch):
    """The stateless key ([2] int32) from which an epoch's shuffle and augmentation
    seeds derive."""
    return tf.random.experimental.stateless_fold_in(
        tf.constant([seed % 2**31, 0x5EED], tf.int32), tf.cast(epoch, tf.int32))


def shuffle_in_blocks(examples: tf.data.Dataset, block: int, seed) -> tf.data.Dataset:
    """Shuffles each run of `block` consecutive examples by a stateless permutation drawn
    from `seed` (a [2] tensor). With `block` >= the data set's size this is a uniform
    shuffle of the whole set. (`Dataset.shuffle` cannot take a seed computed in the
    pipeline, which the per-epoch order needs.)"""
    def permute(index, block_examples):
        count = tf.shape(block_examples[1])[0]
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count), seed=tf.random.experimental.stateless_fold_in(seed, index))
        return tuple(tf.gather(part, order) for part in block_examples)

    return examples.batch(block).enumerate().map(permute).unbatch()


def pair_by_class(examples: tf.data.Dataset, num_classes: int) -> tf.data.Dataset:
    """Class pairs for CS-KD: every example of `examples` (unbatched `(image, label)`, in
    the order to train on: shuffle *before* pairing), followed by a partner of its class.

    The partner is the previous example of the same class in the stream, which for a
    shuffled stream is a uniformly random other example of that class; the first example
    of each class is its own partner (augmentation still makes the two differ). The
    output is the interleaved stream `(x_1, y_1), (x'_1, y_1), (x_2, y_2), ...`, twice as
    long: batch it with an even batch size, and the anchors are the even positions.
    Images must have one fixed shape (or be encoded bytes); the state is one image per
    class.

    Example:
        >>> labels = [0, 1, 0, 1, 0]
        >>> pairs = pair_by_class(tf.data.Dataset.from_tensor_slices(
        ...     (tf.constant([10, 20, 30, 40, 50]), labels)), num_classes=2)
        >>> [int(x) for x, _ in pairs]
        [10, 10, 20, 20, 30, 10, 40, 20, 50, 30]
    """
    image_spec, label_spec = examples.element_spec
    if not image_spec.shape.is_fully_defined():
        raise ValueError(f"pair_by_class needs images of one fixed shape, got "
                         f"{image_spec.shape}; resize them first (or pair encoded bytes).")
    if not label_spec.dtype.is_integer or label_spec.shape.rank != 0:
        raise ValueError(f"pair_by_class needs integer class ids as labels, got "
                         f"{label_spec.dtype.name} of shape {label_spec.shape}.")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    state_shape = [num_classes, *image_spec.shape]
    if image_spec.dtype == tf.string:
        last_of_class = tf.fill(state_shape, "")
    else:
        last_of_class = tf.zeros(state_shape, image_spec.dtype)

    def pair(state, example):
        last, seen = state
        image, label = example
        label = tf.cast(label, tf.int32)
        partner = tf.cond(seen[label], lambda: last[label], lambda: image)
        last = tf.tensor_scatter_nd_update(last, [[label]], image[None])
        seen = tf.tensor_scatter_nd_update(seen, [[label]], [True])
        return (last, seen), (tf.stack([image, partner]), tf.stack([example[1]] * 2))

    initial = (last_of_class, tf.zeros([num_classes], tf.bool))
    return examples.scan(initial, pair).unbatch()


def training_dataset(source: DataSource, batch_size: int, *, seed: int = 0,
                     augment=("pad_crop", "flip"), epochs: int = 1, initial_epoch: int = 0,
                     cache: bool | str = True, shuffle_buffer: int | None = None,
                     class_pairs: bool = False, dtype="float32") -> tf.data.Dataset:
    """Batches for epochs `initial_epoch .. epochs - 1`, one after the other.

    Each epoch holds `steps_per_epoch(source.num_train, batch_size)` full batches (pass
    that to `fit` as `steps_per_epoch`); its order and augmentation depend on
    `(seed, epoch)` only. `cache`: True (memory), False, or a file path prefix.
    `shuffle_buffer`: examples are shuffled in blocks of this many (default: the whole
    training set, a uniform shuffle); give a smaller block for data sets that do not fit
    in memory (tfds writes its records pre-shuffled).
    `class_pairs` (CS-KD, `method="cskd"`): every shuffled example is followed by a
    partner of its class (:func:`pair_by_class`), so a batch holds `batch_size` pairs,
    `2 * batch_size` images, each augmented on its own.

    Example:
        >>> source = load_source("digits", train_examples=256)
        >>> batches = training_dataset(source, 64, seed=1, augment=["pad_crop"], epochs=2)
        >>> [tuple(x.shape) for x, _ in batches.take(1)]
        [(64, 32, 32, 3)]
    """
    augment = check_augmentations(augment)
    steps_per_epoch(source.num_train, batch_size)
    if not 0 <= initial_epoch <= epochs:
        raise ValueError(f"initial_epoch must be in [0, epochs={epochs}], got {initial_epoch}.")
    examples = source.train.map(lambda image, label: (image, _as_int32(label)))
    if cache:
        examples = examples.cache("" if cache is True else str(cache))
    buffer = shuffle_buffer or source.num_train
    transform = _batch_transform(source, augment, dtype)
    size = source.image_shape[0]
    crop_at_decoding = source.encoded and "random_resized_crop" in augment

    def one_epoch(epoch):
        key = epoch_seed(seed, epoch)
        keys = tf.random.experimental.stateless_split(key, num=3)
        epoch_examples = shuffle_in_blocks(examples, buffer, keys[0])
        if class_pairs:  # a fresh pairing per epoch: an epoch depends on (seed, epoch) only
            epoch_examples = pair_by_class(epoch_examples, source.num_classes)
        if source.encoded:  # JPEG bytes: decode one by one, before batching
            def decode(index, example):
                image, label = example
                if crop_at_decoding:
                    seed_i = tf.random.experimental.stateless_fold_in(keys[1], index)
                    return _decode_random_resized_crop(image, seed_i, size), label
                return _resize_centre_crop(tf.io.decode_jpeg(image, channels=3), size), label

            epoch_examples = epoch_examples.enumerate().map(
                decode, num_parallel_calls=tf.data.AUTOTUNE)

        def augment_batch(index, batch):
            images, labels = batch
            seed_b = tf.random.experimental.stateless_fold_in(keys[2], index)
            return transform(images, seed_b), labels

        images_per_batch = 2 * batch_size if class_pairs else batch_size
        return (epoch_examples.batch(images_per_batch, drop_remainder=True).enumerate()
                .map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE))

    batches = tf.data.Dataset.range(initial_epoch, epochs).flat_map(one_epoch)
    return _with_options(batches).prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(source: DataSource, batch_size: int, *, cache: bool = True,
                       dtype="float32") -> tf.data.Dataset:
    """The test split, normalised (ImageNet: resized and centre-cropped), in order,
    batched (the last batch may be partial).

    Example:
        >>> source = load_source("digits", test_examples=100)
        >>> sum(int(y.shape[0]) for _, y in evaluation_dataset(source, 64))
        100
    """
    transform = _eval_transform(source, dtype)
    examples = source.test.map(lambda image, label: (transform(image), _as_int32(label)),
                               num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        examples = examples.cache()
    return _with_options(examples.batch(batch_size)).prefetch(tf.data.AUTOTUNE)


def _with_options(dataset: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True
    # Shard by batch: every worker builds the same (seeded) stream and keeps its own share.
    # File-based sharding would give workers different shuffles.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options)
