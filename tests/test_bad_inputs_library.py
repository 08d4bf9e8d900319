"""Every bad input to the library gets a clear error before work starts (issue 14, the
library's part): labels, images, loop settings, method and builder options, empty data,
early exit, export arguments and damaged model files. One table of cases: each names the
bad call, the error type and the words the message must hold (the bad value and what is
valid). Then the positive side: the label forms (a Python list too) train one after
another on one model and give the same loss.

Almost every case fails before any graph is traced; the few that check label values
inside the step function (tf.data input) share two traced evaluate functions, and their
InvalidArgumentError comes back as a ValueError that starts with the library's wording."""

from __future__ import annotations

import types
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from byot_keras import losses, saving, zoo
from byot_keras.export import export_tflite
from byot_keras.inference import early_exit_predict
from byot_keras.training import CohortModel, TeacherDistillationModel
from byot_keras.training.checks import assert_label_values

CLASSES = 4
SIZE = 16
# A tiny two-exit model: cheap to build and to trace.
TINY = dict(num_classes=CLASSES, width_multiplier=0.125, input_shape=(SIZE, SIZE, 3))
TWO_EXITS = dict(TINY, exits=[2], head="conv")
COUNT = 8


def _images(count=COUNT, size=SIZE, channels=3, seed=0):
    return np.random.default_rng(seed).normal(size=(count, size, size, channels)).astype(
        "float32")


LABELS = np.arange(COUNT) % CLASSES


def _dataset(images, labels, batch=4):
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """The shared objects the cases call: a compiled zoo model, a cohort, a teacher ->
    student model, and model files (good, truncated, not a zip, a zip that is no model,
    one with a corrupted member)."""
    keras.utils.set_random_seed(0)
    model = zoo.resnet18_byot(**TWO_EXITS)
    model.compile(optimizer="sgd")
    members = [zoo.resnet18(name=f"member{k}", **TINY) for k in (1, 2)]
    cohort = CohortModel(members, method="dml")
    cohort.compile(optimizer="sgd")
    teacher = TeacherDistillationModel(members[0], model)
    teacher.compile(optimizer="sgd")
    folder = tmp_path_factory.mktemp("files")
    good = folder / "good.keras"
    saving.save_model_atomically(model, str(good))
    data = good.read_bytes()
    files = {"good": good, "missing": folder / "missing.keras", "folder": folder,
             "suffix": folder / "model.h5"}
    for name, content in (("truncated", data[: len(data) // 2]), ("text", b"not a model\n")):
        files[name] = folder / f"{name}.keras"
        files[name].write_bytes(content)
    files["suffix"].write_bytes(data)
    files["zip"] = folder / "zip.keras"
    with zipfile.ZipFile(files["zip"], "w") as archive:
        archive.writestr("notes.txt", "hello")
    damaged = bytearray(data)
    with zipfile.ZipFile(good) as archive:  # overwrite bytes inside the weights member
        info = archive.getinfo("model.weights.h5")
    middle = info.header_offset + 100 + info.compress_size // 2
    damaged[middle: middle + 64] = bytes(64)
    files["corrupt"] = folder / "corrupt.keras"
    files["corrupt"].write_bytes(bytes(damaged))
    return types.SimpleNamespace(model=model, cohort=cohort, teacher=teacher, files=files)


def _option(method, **options):
    return lambda c: losses.get_objective(method, **options)


def _builder(name="resnet18_byot", **kwargs):
    return lambda c: zoo.create_model(name, **{**TINY, **kwargs})


def _fit(labels=LABELS, images=None, **kwargs):
    return lambda c: c.model.fit(_images() if images is None else images, labels, verbose=0,
                                 **kwargs)


def _empty_dataset_after_filter():
    return _dataset(_images(), LABELS).unbatch().filter(lambda x, y: y > CLASSES).batch(4)


def _unknown_size_images():
    def batches():
        yield _images(size=20)[:2], LABELS[:2]

    return tf.data.Dataset.from_generator(batches, output_signature=(
        tf.TensorSpec((None, None, None, 3), tf.float32), tf.TensorSpec((None,), tf.int64)))


def _with_value(images, index, value):
    images = images.copy()
    images[index] = value
    return images


def _export(**kwargs):
    return lambda c: export_tflite(c.model, c.files["folder"] / "export", **kwargs)


GRAPH_ERROR = tf.errors.InvalidArgumentError
C = f"num_classes={CLASSES}"

CASES = [
    # --- labels: whole arrays, checked before fit/evaluate start
    ("label-out-of-range", _fit(np.array([0, 1, 2, 7, 0, 1, 2, 3])), ValueError,
     ["Label 7", "example 3", "out of range", "0..3", C]),
    ("label-negative", _fit(-np.ones(COUNT, int)), ValueError, ["Label -1", "negative", C]),
    ("label-float-not-whole", _fit(np.full(COUNT, 1.5)), ValueError,
     ["Label 1.5", "not a whole number", C]),
    ("label-nan", _fit(np.full(COUNT, np.nan, "float32")), ValueError, ["Label nan", C]),
    ("label-one-hot-too-narrow", _fit(np.eye(3)[LABELS % 3]), ValueError,
     ["(8, 3)", C, f"(batch, {CLASSES})"]),
    ("label-one-hot-row-sums-to-2", _fit(2 * np.eye(CLASSES)[LABELS]), ValueError,
     ["example 0", "[2.0, 0.0, 0.0, 0.0]", "sum to 1", C]),
    ("label-soft-negative", _fit(np.tile([1.5, -0.5, 0.0, 0.0], (COUNT, 1))), ValueError,
     ["[1.5, -0.5, 0.0, 0.0]", "non-negative", C]),
    ("label-rank-3", _fit(LABELS.reshape(COUNT, 1, 1)), ValueError, ["(8, 1, 1)", C]),
    ("label-strings", _fit(np.array(["cat"] * COUNT)), ValueError, ["dtype <U3", "class ids 0..3"]),
    ("label-count", _fit(LABELS[:6]), ValueError, ["8 images but 6 labels"]),
    ("label-missing", lambda c: c.model.fit(_images(), verbose=0), ValueError,
     ["labels", "(x, y)"]),
    ("evaluate-label-uint8-column", lambda c: c.model.evaluate(
        _images(), np.full((COUNT, 1), 9, "uint8"), verbose=0), ValueError,
     ["evaluate", "Label 9", C]),
    ("validation-label", _fit(validation_data=(_images(), LABELS + 10)), ValueError,
     ["validation_data", "Label 10", C]),
    ("dataset-one-hot-too-wide", lambda c: c.model.fit(
        _dataset(_images(), np.eye(5, dtype="float32")[LABELS]), verbose=0), ValueError,
     ["(None, 5)", C]),
    ("dataset-string-labels", lambda c: c.model.fit(
        _dataset(_images(), np.array(["a"] * COUNT)), verbose=0), ValueError,
     ["dtype string"]),
    ("dataset-without-labels", lambda c: c.model.fit(
        tf.data.Dataset.from_tensor_slices(_images()).batch(4), verbose=0), ValueError,
     ["no (images, labels) pairs"]),
    ("cohort-label-out-of-range", lambda c: c.cohort.fit(
        _images(), np.full(COUNT, 4), verbose=0), ValueError, ["Label 4", C]),
    ("teacher-label-not-whole", lambda c: c.teacher.fit(
        _images(), np.full(COUNT, 0.5), verbose=0), ValueError, ["Label 0.5", C]),
    ("label-scalar", _fit(np.int64(3)), ValueError,
     ["fit: labels need a batch axis", "single value 3"]),
    ("label-python-list-out-of-range", _fit([10] + LABELS[1:].tolist()), ValueError,
     ["fit: Label 10 (example 0)", "out of range", C]),
    ("evaluate-label-python-list", lambda c: c.model.evaluate(
        _images(), [0, 1, 2, 3, 4, 0, 1, 2], verbose=0), ValueError,
     ["evaluate: Label 4 (example 4)", C]),
    # --- labels of tf.data input: checked per batch inside the step function (two
    # traces); TensorFlow's InvalidArgumentError is re-raised as a ValueError
    ("dataset-label-out-of-range", lambda c: c.model.evaluate(
        _dataset(_images(), np.array([0, 1, 2, 7, 0, 1, 2, 3])), verbose=0), ValueError,
     ["evaluate: A label is out of range", "[7]", C]),
    ("dataset-label-negative", lambda c: c.model.evaluate(
        _dataset(_images(), np.array([0, 1, -2, 3, 0, 1, 2, 3])), verbose=0), ValueError,
     ["evaluate: A label is negative", "[-2]", C]),
    ("dataset-label-not-whole", lambda c: c.model.evaluate(
        _dataset(_images(), np.array([0, 1, 2.5, 3, 0, 1, 2, 3], "float32")), verbose=0),
     ValueError, ["evaluate: A label is not a whole number", "[2.5]", C]),
    # --- images
    ("fit-image-size", _fit(images=_images(size=20)), ValueError,
     ["(8, 20, 20, 3)", "(batch, 16, 16, 3)"]),
    ("evaluate-image-channels", lambda c: c.model.evaluate(
        _images(channels=1), LABELS, verbose=0), ValueError,
     ["evaluate", "(8, 16, 16, 1)", "(batch, 16, 16, 3)"]),
    ("predict-image-channels", lambda c: c.model.predict(_images(channels=1), verbose=0),
     ValueError, ["predict", "(8, 16, 16, 1)", "(batch, 16, 16, 3)"]),
    ("image-without-batch-axis", _fit(LABELS[:1], images=_images()[0]), ValueError,
     ["(16, 16, 3)", "no batch axis"]),
    ("dataset-image-size", lambda c: c.model.fit(
        _dataset(_images(size=20), LABELS), verbose=0), ValueError,
     ["(None, 20, 20, 3)", "(batch, 16, 16, 3)"]),
    ("dataset-unbatched", lambda c: c.model.fit(
        tf.data.Dataset.from_tensor_slices((_images(), LABELS)), verbose=0), ValueError,
     ["(16, 16, 3)", "no batch axis", "dataset.batch"]),
    ("cohort-image-size", lambda c: c.cohort.evaluate(_images(size=20), LABELS, verbose=0),
     ValueError, ["(8, 20, 20, 3)", "(batch, 16, 16, 3)"]),
    ("teacher-image-channels", lambda c: c.teacher.fit(
        _images(channels=4), LABELS, verbose=0), ValueError,
     ["(8, 16, 16, 4)", "(batch, 16, 16, 3)"]),
    ("dataset-image-size-unknown-up-front", lambda c: c.model.evaluate(
        _unknown_size_images(), verbose=0), ValueError,
     ["evaluate: Images do not fit", "(batch, 16, 16, 3)", "[20 20 3]"]),
    ("fit-images-nan", _fit(images=_with_value(_images(), (3, 2, 2, 1), np.nan)), ValueError,
     ["fit: images hold NaN", "example 3", "finite"]),
    ("fit-images-inf", _fit(images=_with_value(_images(), (0, 0, 0, 0), np.inf)), ValueError,
     ["fit: images hold inf", "example 0"]),
    ("predict-images-nan", lambda c: c.model.predict(
        _with_value(_images(), (5, 0, 0, 0), np.nan), verbose=0), ValueError,
     ["predict: images hold NaN", "example 5"]),
    ("fit-images-strings", _fit(images=np.full((COUNT, SIZE, SIZE, 3), "a")), ValueError,
     ["fit: images must be numbers", "dtype <U1"]),
    ("predict-python-list-of-images", lambda c: c.model.predict(
        list(_images()[:2]), verbose=0), ValueError,
     ["predict: images must be one array of shape (batch, 16, 16, 3)", "list of 2",
      "np.stack"]),
    # --- sample weights and the loop settings Keras would take quietly
    ("fit-sample-weight-nan", _fit(sample_weight=np.r_[np.nan, np.ones(COUNT - 1)]),
     ValueError, ["fit: sample_weight holds nan", "example 0", "finite numbers >= 0"]),
    ("fit-sample-weight-negative", _fit(sample_weight=np.r_[np.ones(COUNT - 1), -2.0]),
     ValueError, ["sample_weight holds -2.0", "example 7"]),
    ("fit-batch-size-0", _fit(batch_size=0), ValueError,
     ["fit: batch_size must be an integer >= 1, got 0"]),
    ("fit-epochs-0", _fit(epochs=0), ValueError, ["fit: epochs must be an integer >= 1"]),
    ("fit-epochs-not-above-initial-epoch", _fit(epochs=2, initial_epoch=2), ValueError,
     ["epochs=2 with initial_epoch=2 trains nothing"]),
    ("fit-validation-split-above-1", _fit(validation_split=1.5), ValueError,
     ["fit: validation_split must be in [0, 1), got 1.5"]),
    ("evaluate-batch-size-0", lambda c: c.model.evaluate(
        _images(), LABELS, batch_size=0, verbose=0), ValueError, ["evaluate: batch_size"]),
    # --- method options, every family
    ("byot-negative-weight", _option("byot", shallow_ce_weight=-3), ValueError,
     ["shallow_ce_weight", "-3", "a number >= 0"]),
    ("byot-nan-weight", _option("byot", kd_weight=float("nan")), ValueError,
     ["kd_weight", "nan", "finite number >= 0"]),
    ("byot-string-weight", _option("byot", kd_weight="a"), ValueError,
     ["kd_weight", "'a'", "a number >= 0"]),
    ("byot-string-flag", _option("byot", adaptation="no"), ValueError,
     ["adaptation", "'no'", "True or False"]),
    ("byot-string-exits", _option("byot", kd_exits="13"), ValueError,
     ["kd_exits", "'13'", "list of exit numbers"]),
    ("byot-infinite-temperature", _option("byot", temperature=float("inf")), ValueError,
     ["temperature", "inf", "finite number > 0"]),
    ("msd-alpha-above-1", _option("msd", alpha=5), ValueError, ["alpha", "5", "[0, 1]"]),
    ("msd-negative-beta", _option("msd", beta_begin=-0.1), ValueError,
     ["beta_begin", "-0.1", ">= 0"]),
    ("msd-zero-epochs", _option("msd", total_epochs=0), ValueError,
     ["total_epochs", "0", "None (fit's epochs) or a number > 0"]),
    ("eed-string-flag", _option("eed", feature_mask="yes"), ValueError,
     ["feature_mask", "'yes'", "True or False"]),
    ("eed-negative-weight", _option("eed", output_weight=-1.0), ValueError,
     ["output_weight", "-1.0", ">= 0"]),
    ("sdn-negative-final-weight", _option("sdn", final_weights=[0.1, -0.2, 0.3]), ValueError,
     ["final_weights", "[0.1, -0.2, 0.3]", "list of numbers >= 0"]),
    ("sdn-string-final-weights", _option("sdn", final_weights="0.3"), ValueError,
     ["final_weights", "'0.3'", "list of numbers"]),
    ("deep-supervision-infinite-weight", _option("deep_supervision",
                                                 shallow_ce_weight=float("inf")), ValueError,
     ["shallow_ce_weight", "inf", "finite"]),
    ("cskd-integer-flag", _option("cskd", kd_temperature_squared=1), ValueError,
     ["kd_temperature_squared", "1", "True or False"]),
    ("one-fractional-branches", _option("one", branches=2.5), ValueError,
     ["branches", "2.5", "an integer >= 2"]),
    ("one-negative-weight", _option("one", kd_weight=-1), ValueError, ["kd_weight", "-1"]),
    ("multistructure-zero-window", _option("multistructure", on_epochs=0), ValueError,
     ["on_epochs", "0", "an integer >= 1"]),
    ("multistructure-string-weight", _option("multistructure", max_weight="1"), ValueError,
     ["max_weight", "'1'", ">= 0"]),
    ("dml-zero-temperature", _option("dml", temperature=0), ValueError,
     ["temperature", "0", "> 0"]),
    ("preset-not-a-name", lambda c: losses.BYOTLoss(3), ValueError,
     ["preset", "3", "official, paper"]),
    ("teacher-alpha-above-1", lambda c: TeacherDistillationModel(
        c.cohort.member(1), c.model, alpha=1.5), ValueError, ["alpha", "1.5", "[0, 1]"]),
    ("teacher-negative-temperature", lambda c: TeacherDistillationModel(
        c.cohort.member(1), c.model, temperature=-1.0), ValueError,
     ["temperature", "-1.0", "> 0"]),
    ("zoo-method-option", _builder(method="msd", alpha=5), ValueError,
     ["msd option", "alpha", "[0, 1]"]),
    # --- builder options
    ("builder-string-exits", _builder(exits="13"), ValueError,
     ["resnet18_byot", "exits", "'13'", "list of section numbers (integers)"]),
    ("builder-float-exits", _builder(exits=[1.5]), ValueError, ["exits", "[1.5]"]),
    ("builder-exit-twice", _builder(exits=[1, 1]), ValueError,
     ["exits=[1, 1]", "section 1 more than once"]),
    ("create-model-name-none", lambda c: zoo.create_model(None), ValueError,
     ["model name must be a string", "zoo.list_models()", "got None"]),
    ("builder-string-attention", _builder(attention="no"), ValueError,
     ["attention", "'no'", "True, False or None"]),
    ("builder-zero-width", _builder(width_multiplier=0), ValueError,
     ["width_multiplier", "0", "> 0"]),
    ("builder-string-width", _builder(width_multiplier="x"), ValueError,
     ["width_multiplier", "'x'", "> 0"]),
    ("builder-string-sync-batchnorm", _builder(sync_batchnorm="true"), ValueError,
     ["sync_batchnorm", "'true'", "True or False"]),
    ("builder-2d-input-shape", _builder(input_shape=(16, 16)), ValueError,
     ["input_shape", "(16, 16)", "(height, width, channels)"]),
    ("builder-float-classes", _builder(num_classes=3.0), ValueError,
     ["num_classes", "3.0", "an integer >= 2"]),
    ("builder-dropout", _builder("wrn16_4_byot", dropout_rate=-0.1), ValueError,
     ["dropout_rate", "-0.1", "[0, 1)"]),
    ("builder-string-bottleneck", lambda c: zoo.densenet_byot(
        100, 12, bottleneck="yes", **TINY), ValueError, ["bottleneck", "'yes'", "True or False"]),
    # --- empty data
    ("fit-empty-arrays", _fit(LABELS[:0], images=_images()[:0]), ValueError,
     ["fit got no examples", "(0, 16, 16, 3)"]),
    ("fit-empty-dataset", lambda c: c.model.fit(
        _dataset(_images()[:0], LABELS[:0]), verbose=0), ValueError,
     ["fit got no examples", "empty dataset"]),
    ("fit-dataset-that-turns-out-empty", lambda c: c.model.fit(
        _empty_dataset_after_filter(), verbose=0), ValueError, ["no training step"]),
    ("evaluate-empty-arrays", lambda c: c.model.evaluate(
        _images()[:0], LABELS[:0], verbose=0), ValueError, ["evaluate got no examples"]),
    ("validation-empty", _fit(validation_data=(_images()[:0], LABELS[:0])), ValueError,
     ["validation_data got no examples"]),
    ("predict-empty", lambda c: c.model.predict(_images()[:0], verbose=0), ValueError,
     ["predict got no examples"]),
    # --- early exit
    ("early-exit-model-without-exits", lambda c: early_exit_predict(
        keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="plain"),
        np.zeros((2, 3))), ValueError, ["'plain'", "no exits", "exit_1..exit_N"]),
    ("early-exit-string-threshold", lambda c: early_exit_predict(
        c.model, _images(), threshold="0.9"), ValueError, ["threshold", "'0.9'", "[0, 1]"]),
    ("early-exit-threshold-above-1", lambda c: early_exit_predict(
        c.model, _images(), threshold=1.5), ValueError, ["1.5", "[0, 1]"]),
    ("early-exit-image-size", lambda c: early_exit_predict(c.model, _images(size=20)),
     ValueError, ["(8, 20, 20, 3)", "(batch, 16, 16, 3)"]),
    ("early-exit-no-images", lambda c: early_exit_predict(c.model, None), ValueError,
     ["early_exit_predict: x must be images of shape (batch, 16, 16, 3)", "got None"]),
    ("early-exit-batch-size-0", lambda c: early_exit_predict(
        c.model, _images(), batch_size=0), ValueError, ["batch_size", "got 0"]),
    # --- export arguments (checked before the folder is touched)
    ("export-labels-not-strings", _export(labels=list(range(CLASSES))), ValueError,
     ["labels must be class names (strings)", "got 0 (int) at index 0"]),
    ("export-label-with-newline", _export(labels=["a\nb", "c", "d", "e"]), ValueError,
     ["labels[0] is 'a\\nb'", "one non-empty label per line"]),
    ("export-eval-data-not-a-pair", _export(eval_data=_images()), ValueError,
     ["eval_data must be an (images, labels) pair", "one array of shape (8, 16, 16, 3)"]),
    ("export-normalization-not-numbers", _export(
        normalization={"scale": 1.0, "mean": "x", "std": 1.0}), ValueError,
     ["'mean' is 'x'", "not a finite number"]),
    # --- model files
    ("file-missing", lambda c: saving.load_model(c.files["missing"]), FileNotFoundError,
     ["missing.keras"]),
    ("file-truncated", lambda c: saving.load_model(c.files["truncated"]), ValueError,
     ["truncated.keras", "damaged", "truncated or not a .keras archive", "Save the model"]),
    ("file-not-a-zip", lambda c: saving.check_model_file(c.files["text"]), ValueError,
     ["text.keras", "damaged", "12 bytes"]),
    ("file-zip-but-no-model", lambda c: saving.load_model(c.files["zip"]), ValueError,
     ["zip.keras", "damaged", "missing config.json"]),
    ("file-corrupt-member", lambda c: saving.load_model(c.files["corrupt"]), ValueError,
     ["corrupt.keras", "damaged"]),
    ("file-is-a-folder", lambda c: saving.load_model(c.files["folder"]), ValueError,
     ["is a folder"]),
    ("file-not-keras-format", lambda c: saving.load_model(c.files["suffix"]), ValueError,
     ["model.h5", ".keras format"]),
]


@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # the empty dataset case
@pytest.mark.filterwarnings("ignore:`shuffle=True` was passed")  # Keras, on every dataset
@pytest.mark.parametrize("make_call, error, words", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_input_gets_a_clear_error(ctx, make_call, error, words):
    with pytest.raises(error) as info:
        make_call(ctx)
    message = str(info.value)
    missing = [word for word in words if word not in message]
    assert not missing, f"{missing} not in the message:\n{message}"


def test_the_table_covers_every_kind_of_bad_input():
    assert len(CASES) >= 40
    assert len({case[0] for case in CASES}) == len(CASES)
    methods = set(losses.list_methods()) | set(losses.list_methods("cohort"))
    with_options = {m.replace("_", "-") for m in methods if m != "ce"}  # ce has no options
    uncovered = [m for m in with_options if not any(c[0].startswith(m) for c in CASES)]
    assert not uncovered


def test_an_objective_option_without_a_kind_is_refused_when_the_class_is_defined():
    with pytest.raises(TypeError, match=r"no kind for option\(s\) \['weight'\]"):
        type("Unchecked", (losses.Objective,), {"method": "unchecked",
                                                "PRESETS": {"default": {"weight": 1.0}}})


def test_label_assertions_run_inside_tf_function_and_pass_an_empty_replica_batch():
    check = tf.function(lambda labels: assert_label_values(labels, CLASSES))
    assert check(tf.zeros([0], tf.int64)).shape == (0,)  # a replica may get no example
    np.testing.assert_array_equal(check(tf.constant([[3.0], [0.0]])), [[3.0], [0.0]])
    with pytest.raises(GRAPH_ERROR, match=r"out of range.*num_classes=4.*\[4\]"):
        check(tf.constant([1, 4], tf.int64))


def _ce(logits, labels):
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels].mean()


def test_sparse_column_and_one_hot_labels_train_one_after_another_with_one_loss():
    """(N,), (N, 1) uint8 (what keras.datasets.cifar10 returns), a Python list, one-hot
    and whole-number float labels, one after another on one model in graph mode: each
    trains (Keras itself refuses a list; the model reads it as an array), and with
    a zero learning rate (the weights stay put) each gives the same training loss; the
    evaluate loss equals 0.7 * CE(exit 1) + CE(exit 2) computed in NumPy."""
    keras.utils.set_random_seed(1)
    model = zoo.resnet18_byot(**TWO_EXITS)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))
    images = _images(seed=3)
    forms = {
        "sparse": LABELS,
        "python_list": LABELS.tolist(),
        "column": LABELS.astype("uint8")[:, None],
        "one_hot": np.eye(CLASSES, dtype="float32")[LABELS],
        "whole_floats": LABELS.astype("float32"),
    }
    train_losses = {
        name: model.fit(images, labels, batch_size=COUNT, shuffle=False,
                        verbose=0).history["loss"][0]
        for name, labels in forms.items()}
    train_losses["sparse_again"] = model.fit(images, LABELS, batch_size=COUNT, shuffle=False,
                                             verbose=0).history["loss"][0]
    for name, value in train_losses.items():
        assert value == pytest.approx(train_losses["sparse"], rel=1e-5), name

    logits = model.predict(images, verbose=0)
    expected = 0.7 * _ce(logits["exit_1"], LABELS) + _ce(logits["exit_2"], LABELS)
    for name, labels in forms.items():
        result = model.evaluate(images, labels, batch_size=COUNT, verbose=0, return_dict=True)
        assert result["loss"] == pytest.approx(expected, rel=1e-4), name
