"""What the training models check before any work starts, so that bad data gets an error
that names the problem and what is valid instead of one from deep inside a layer or the
graph (or, for float labels, a silent truncation).

- In-memory arrays and tensors given to `fit` / `evaluate` / `predict` are checked whole
  with NumPy (one pass over the labels): the images' shape, the label form ((batch,),
  (batch, 1) or one-hot (batch, num_classes)), every label value (whole numbers in
  0..num_classes-1; one-hot / soft rows non-negative and summing to 1) and emptiness.
  In-memory images must be numbers and finite (a NaN or inf pixel turns every logit
  into NaN), sample weights finite and >= 0; Python lists of labels are read as arrays.
- The loop settings: `batch_size` >= 1, `epochs` above `initial_epoch`,
  `validation_split` in [0, 1) (Keras would quietly use a default or train nothing).
- tf.data datasets are checked by their `element_spec` (shapes, dtypes, an empty
  cardinality); the label values of each batch are checked inside the step function by
  :func:`assert_label_values` (a few reductions, run under tf.function and
  tf.distribute; XLA compiles the assertions away). On other backends (JAX) the
  dataset's element_spec is checked the same way, but not the label values of each
  batch: a compiled JAX step cannot raise on a value.

All problems raise ValueError; the in-graph checks fail as tf.errors.InvalidArgumentError
with the same wording, which `fit` / `evaluate` / `predict` re-raise as a ValueError
starting with it (:func:`graph_check_failure`).
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Mapping

import keras
import numpy as np

# Rows of one-hot / soft labels must sum to 1 up to float16 rounding.
ROW_SUM_TOLERANCE = 1e-3


def label_forms(num_classes: int) -> str:
    return (f"integer class ids 0..{num_classes - 1} of shape (batch,) or (batch, 1), or "
            f"one-hot / soft labels of shape (batch, {num_classes})")


def _tensorflow():
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    return tf


def _is_dataset(data) -> bool:
    """Whether `data` is a tf.data.Dataset, on any backend (tf.data feeds JAX too).
    TensorFlow is only looked up, not imported: whoever made a dataset imported it."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(data, tf.data.Dataset)


def in_memory(data):
    """`data` if it is an in-memory NumPy array or eager tensor (a one-entry dict of one
    is unwrapped; a NumPy scalar becomes a 0-d array); None for what is not inspected
    here (datasets, generators, PyDatasets, several inputs)."""
    if isinstance(data, Mapping) and len(data) == 1:
        data = next(iter(data.values()))
    if isinstance(data, np.generic):
        return np.asarray(data)
    if isinstance(data, np.ndarray):
        return data
    tf = _tensorflow()
    if tf is not None and isinstance(data, tf.Tensor) and tf.executing_eagerly():
        return data
    return None


# ----------------------------------------------------------------------------- images

# Examples per block of the finiteness check: bounds its temporary memory.
FINITE_CHECK_BLOCK = 4096


def first_non_finite(values) -> tuple[int, str] | None:
    """(example index, "NaN" or "inf") of the first non-finite value of the in-memory
    array or eager tensor `values` (examples along the first axis); None if all are
    finite or the values are integers. One pass, in blocks of examples."""
    tf = _tensorflow()
    if tf is not None and isinstance(values, tf.Tensor):
        if not values.dtype.is_floating or bool(tf.reduce_all(tf.math.is_finite(values))):
            return None
        values = values.numpy()
    if values.dtype.kind not in "fc" and "float" not in values.dtype.name:
        return None
    for start in range(0, max(len(values), 1), FINITE_CHECK_BLOCK):
        block = values[start:start + FINITE_CHECK_BLOCK]
        finite = np.isfinite(block)
        if not finite.all():
            flat = finite.reshape(len(block), -1).all(axis=1)
            index = int(np.argmin(flat))
            bad = block[index][~finite[index]].flat[0]
            return start + index, "NaN" if np.isnan(bad) else "inf"
    return None


def _is_numeric(values) -> tuple[bool, str]:
    """(whether the in-memory array or eager tensor holds numbers, its dtype's name)."""
    tf = _tensorflow()
    if tf is not None and isinstance(values, tf.Tensor):
        dtype = values.dtype
        return dtype.is_floating or dtype.is_integer, dtype.name
    # bfloat16 (ml_dtypes) has kind "V" but is a float.
    return values.dtype.kind in "iuf" or "float" in values.dtype.name, str(values.dtype)




def image_shape_problem(shape: tuple, expected: tuple, model_name: str,
                        source: str = "Images") -> str | None:
    """Why a batch of images of `shape` does not fit a model taking `expected`
    ((height, width, channels), None where any size goes); None if it fits. `source`
    starts the message ("Images", "The dataset's images")."""
    wanted = f"(batch, {', '.join('any' if d is None else str(d) for d in expected)})"
    if len(shape) == len(expected):
        return (f"{source} of shape {shape} have no batch axis: {model_name} takes batches of "
                f"shape {wanted}. Add one (images[None]) or batch the dataset "
                "(dataset.batch(batch_size)).")
    fits = len(shape) == len(expected) + 1 and all(
        got is None or want is None or got == want for got, want in zip(shape[1:], expected))
    if fits:
        return None
    return (f"{source} of shape {shape} do not fit {model_name}: it takes images of shape "
            f"{wanted}, i.e. height, width and channels {tuple(expected)}. Resize the images, "
            "or build the model with the input_shape of your images.")


def pin_image_shape(images, expected: tuple, model_name: str):
    """`images`, given the static shape `(batch, *expected)` behind a run-time check when
    the graph does not know it (a dataset of unknown image size): without a static size
    the exit heads fail inside UpSampling2D. Free when the size is known."""
    tf = _tensorflow()
    if tf is None or not isinstance(images, tf.Tensor) or images.shape.rank is None:
        return images
    known = tuple(images.shape[1:])
    if len(known) != len(expected) or all(k is not None for k in known):
        return images
    check = tf.debugging.assert_equal(
        tf.shape(images)[1:], tf.constant(expected, dtype=tf.int32),
        message=f"Images do not fit {model_name}: it takes images of shape (batch, "
                f"{', '.join(map(str, expected))}), i.e. height, width and channels. Resize "
                "the images, or build the model with the input_shape of your images.")
    with tf.control_dependencies([check]):
        return tf.ensure_shape(images, (None, *expected))


# ----------------------------------------------------------------------------- labels


def label_shape_problem(shape: tuple, num_classes: int) -> str | None:
    """Why labels of `shape` (batch axis first, None where unknown) do not fit; None if
    they do."""
    if len(shape) == 1:
        return None
    if len(shape) == 2 and shape[-1] in (None, 1, num_classes):
        return None
    return (f"Labels of shape {shape} do not fit num_classes={num_classes}: give "
            f"{label_forms(num_classes)}.")


def check_label_array(labels: np.ndarray, num_classes: int) -> None:
    """Raises a ValueError naming the first bad label and what is valid: labels of a form
    the loss cannot read, class ids that are negative, not whole numbers or not below
    `num_classes`, or one-hot / soft rows that are negative or do not sum to 1."""
    valid = label_forms(num_classes)
    if labels.dtype.kind not in "iuf":
        raise ValueError(f"Labels must be numbers, got dtype {labels.dtype}: give {valid}.")
    problem = label_shape_problem(labels.shape, num_classes)
    if problem:
        raise ValueError(problem)
    if labels.size == 0:
        return
    if labels.ndim == 2 and labels.shape[-1] == num_classes and num_classes > 1:
        rows = labels.astype(np.float64)
        finite_and_positive = np.isfinite(rows).all(axis=-1) & (rows >= 0).all(axis=-1)
        bad = ~finite_and_positive | (np.abs(rows.sum(axis=-1) - 1.0) > ROW_SUM_TOLERANCE)
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"The one-hot / soft label of example {index} is "
                f"{np.round(rows[index], 4).tolist()}: each row of labels of shape (batch, "
                f"{num_classes}) must be non-negative and sum to 1 (num_classes="
                f"{num_classes}). For class ids give labels of shape (batch,) instead.")
        return
    ids = labels.reshape(-1)
    if ids.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~(ids == np.floor(ids))  # NaN fails too
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"Label {ids[index].item()!r} (example {index}) is not a whole number: "
                f"class ids are whole numbers in 0..{num_classes - 1} (num_classes="
                f"{num_classes}); float labels are accepted when whole (3.0). Or give "
                f"one-hot / soft labels of shape (batch, {num_classes}).")
    for bad, what in ((ids < 0, "negative"), (ids >= num_classes, "out of range")):
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"Label {ids[index].item()!r} (example {index}) is {what}: labels are class "
                f"ids in 0..{num_classes - 1} (num_classes={num_classes}), or one-hot / "
                f"soft labels of shape (batch, {num_classes}).")


def assert_label_values(labels, num_classes: int):
    """`labels`, behind run-time assertions that sparse labels are whole numbers in
    0..num_classes-1 (one-hot labels pass as they are; their width is checked on the
    static shape). The checks are a few reductions over the batch and name the
    offending value; an empty per-replica batch passes."""
    tf = _tensorflow()
    if tf is None or isinstance(labels, Mapping):
        return labels
    labels = tf.convert_to_tensor(labels)
    rank = labels.shape.rank
    if rank is None or not (rank == 1 or (rank == 2 and labels.shape[-1] == 1)):
        return labels
    ids = tf.cast(tf.reshape(labels, [-1]), tf.float64)  # exact for ids below 2**53
    valid = (f"labels are class ids in 0..{num_classes - 1} (num_classes={num_classes}), or "
             f"one-hot / soft labels of shape (batch, {num_classes}); got")
    checks = []
    if labels.dtype.is_floating:
        whole = tf.equal(ids, tf.floor(ids))
        example = tf.reduce_max(tf.where(whole, tf.constant(-np.inf, tf.float64), ids))
        checks.append(tf.debugging.Assert(
            tf.reduce_all(whole), [f"A label is not a whole number: {valid}", example]))
    lowest, highest = tf.reduce_min(ids), tf.reduce_max(ids)
    checks.append(tf.debugging.Assert(lowest >= 0, [f"A label is negative: {valid}", lowest]))
    checks.append(tf.debugging.Assert(highest < num_classes,
                                      [f"A label is out of range: {valid}", highest]))
    with tf.control_dependencies(checks):  # nothing reads the labels before the checks
        return tf.identity(labels)


def graph_check_failure(error) -> str | None:
    """The wording of one of this module's in-graph checks (a label value, an image
    size) from the InvalidArgumentError it raised, with the offending value; None for
    any other error. TensorFlow puts the wording after a stack of graph frames:
    "... assertion failed: [<wording>] [<value>]"."""
    text = str(getattr(error, "message", error))
    start = text.rfind("assertion failed: ")
    if start < 0:
        return None
    parts = re.findall(r"\[([^\[\]]*)\]", text[start:].split("\n")[0])
    if not parts or not parts[0].startswith(("A label is", "Images do not fit")):
        return None
    if parts[0].startswith("Images") and len(parts) >= 4:
        return f"{parts[0]} Got images of height, width and channels [{parts[3]}]."
    return f"{parts[0]} [{parts[1]}]." if len(parts) > 1 else parts[0]


def check_loop_settings(what: str, values: Mapping) -> None:
    """Raises a ValueError for `fit` / `evaluate` / `predict` settings Keras would take
    quietly: a `batch_size` below 1 (Keras uses 32), `epochs` not above `initial_epoch`
    (no training, no error) and a `validation_split` outside [0, 1)."""
    from byot_keras.options import integer_at_least, number_in

    batch_size = values.get("batch_size")
    if batch_size is not None:
        integer_at_least(1).check(f"{what}: batch_size", batch_size)
    if "epochs" in values:
        epochs, initial = values["epochs"], values.get("initial_epoch") or 0
        integer_at_least(1).check(f"{what}: epochs", epochs)
        if epochs <= initial:
            raise ValueError(f"{what}: epochs={epochs} with initial_epoch={initial} trains "
                             "nothing: epochs is the epoch to stop after, give one above "
                             "initial_epoch.")
    if values.get("validation_split"):
        number_in(0, 1, open_high=True).check(f"{what}: validation_split",
                                              values["validation_split"])


def _as_label_array(labels):
    """Labels given as a Python list or tuple (or a plain number), as a NumPy array:
    checked like one, and what Keras then gets (it refuses lists)."""
    if isinstance(labels, list | tuple | int | float) and not isinstance(labels, bool):
        try:
            return np.asarray(labels)
        except ValueError:  # ragged: left to the checks' error
            return labels
    return labels


# ---------------------------------------------------------------------- the data


def _spec_shape(spec) -> tuple | None:
    shape = getattr(spec, "shape", None)
    if shape is None or shape.rank is None:
        return None
    return tuple(shape)


def _empty(what: str, detail: str) -> ValueError:
    return ValueError(f"{what} got no examples ({detail}): give at least one batch.")


class CheckedInputs:
    """Mixin for the training models (a `keras.Model` subclass lists it first): `fit`,
    `evaluate` and `predict` check their data before any work starts (see the module
    docstring). The model provides `_expected_image_shape()` ((height, width, channels)
    or None to skip) and `_label_classes()`.

    It also keeps the step functions right when the label form changes between calls
    (e.g. (N,) labels, then (N, 1)): Keras traces them with `reduce_retracing`, which
    would merge the two label shapes into one of unknown rank that the loss cannot read;
    a new label form gets a freshly traced function instead.
    """

    def _expected_image_shape(self) -> tuple | None:
        raise NotImplementedError

    def _label_classes(self) -> int:
        raise NotImplementedError

    # The checks ------------------------------------------------------------------
    def _check_images(self, x, what: str) -> None:
        expected = self._expected_image_shape()
        if isinstance(x, list | tuple):  # Keras would read it as several inputs
            wanted = ("(batch, " + ", ".join(map(str, expected)) + ")" if expected
                      else "(batch, height, width, channels)")
            raise ValueError(f"{what}: images must be one array of shape {wanted}; got a "
                             f"{type(x).__name__} of {len(x)} items (np.stack them into one "
                             "array).")
        images = in_memory(x)
        if images is not None:  # the shape and dtype, then one pass for finiteness
            shape = tuple(images.shape)
            numeric, dtype = _is_numeric(images)
            if not numeric:
                raise ValueError(f"{what}: images must be numbers (float pixels, or uint8 "
                                 f"0..255), got dtype {dtype}.")
            if shape[0:1] == (0,):
                raise _empty(what, f"images of shape {shape}")
            if expected is not None:
                problem = image_shape_problem(shape, expected, self.name)
                if problem:
                    raise ValueError(f"{what}: {problem}")
            bad = first_non_finite(images)
            if bad:
                raise ValueError(f"{what}: images hold {bad[1]} (first in example {bad[0]}): "
                                 "give finite pixel values.")
        elif _is_dataset(x):
            if int(x.cardinality()) == 0:
                raise _empty(what, "an empty dataset")
            spec = x.element_spec
            image_spec = spec[0] if isinstance(spec, tuple) else spec
            shape = _spec_shape(image_spec)
            if shape is not None and expected is not None:
                problem = image_shape_problem(shape, expected, self.name,
                                              source="The dataset's images")
                if problem:
                    raise ValueError(f"{what}: {problem}")

    def _check_data(self, what: str, x, y) -> tuple | None:
        """Checks images and labels; returns the labels' form (shape without the batch
        axis, dtype), or None when it is not known up front."""
        self._check_images(x, what)
        num_classes = self._label_classes()
        if _is_dataset(x):
            spec = x.element_spec
            if not isinstance(spec, tuple) or len(spec) < 2:
                raise ValueError(
                    f"{what}: {self.name} trains on labels, but the dataset yields no "
                    f"(images, labels) pairs (its element_spec is {spec}).")
            label_spec = spec[1]
            shape = _spec_shape(label_spec)
            if shape is None:
                return None
            if not (label_spec.dtype.is_integer or label_spec.dtype.is_floating):
                raise ValueError(f"{what}: Labels must be numbers, got dtype "
                                 f"{label_spec.dtype.name}: give {label_forms(num_classes)}.")
            problem = label_shape_problem(shape, num_classes)
            if problem:
                raise ValueError(f"{what}: {problem}")
            return shape[1:], label_spec.dtype.name
        labels = in_memory(_as_label_array(y))
        images = in_memory(x)
        if labels is None:
            if y is None and images is not None:
                raise ValueError(f"{what}: {self.name} trains on labels: call it with (x, y).")
            return None
        labels = np.asarray(labels)
        if labels.ndim == 0:
            raise ValueError(f"{what}: labels need a batch axis, one label per image; got the "
                             f"single value {labels.item()!r}.")
        if images is not None and images.shape[0] != labels.shape[0]:
            raise ValueError(f"{what}: {images.shape[0]} images but {labels.shape[0]} labels; "
                             "give one label per image.")
        if labels.shape[0:1] == (0,):
            raise _empty(what, f"labels of shape {labels.shape}")
        try:
            check_label_array(labels, num_classes)
        except ValueError as error:
            raise ValueError(f"{what}: {error}") from None
        return labels.shape[1:], labels.dtype.name

    def _use_step_function_for(self, kind: str, label_form: tuple | None) -> None:
        """Drops the cached train/test function when the label form differs from the one
        it was traced with (see the class docstring)."""
        if label_form is None:
            return
        # Stored past Keras' attribute tracking: it is bookkeeping, not model state.
        seen = self.__dict__.get("_traced_label_forms")
        if seen is None:
            seen = {}
            object.__setattr__(self, "_traced_label_forms", seen)
        if seen.get(kind, label_form) != label_form:
            setattr(self, f"{kind}_function", None)
        seen[kind] = label_form

    def _check_sample_weight(self, sample_weight, what: str) -> None:
        weights = in_memory(_as_label_array(sample_weight))
        if weights is None:
            return
        weights = np.asarray(weights)
        if weights.dtype.kind not in "iuf":
            raise ValueError(f"{what}: sample_weight must be numbers, got dtype "
                             f"{weights.dtype}.")
        flat = weights.reshape(-1)
        with np.errstate(invalid="ignore"):  # NaN compares False: caught by isfinite
            bad = np.flatnonzero(~np.isfinite(flat) | (flat < 0))
        if bad.size:
            raise ValueError(f"{what}: sample_weight holds {flat[bad[0]].item()!r} (example "
                             f"{int(bad[0])}): weights must be finite numbers >= 0.")

    def _in_graph_checks_as_value_errors(self, what: str, run):
        """`run()`; an in-graph check's InvalidArgumentError (a label out of range in a
        tf.data batch) becomes a ValueError starting with its wording, not after a
        stack of graph frames."""
        tf = _tensorflow()
        if tf is None:
            return run()
        try:
            return run()
        except tf.errors.InvalidArgumentError as error:
            message = graph_check_failure(error)
            if message is None:
                raise
            raise ValueError(f"{what}: {message}") from None

    # The hooks ---------------------------------------------------------------------
    def fit(self, *args, **kwargs):
        arguments = inspect.signature(keras.Model.fit).bind(self, *args, **kwargs)
        arguments.apply_defaults()
        values = arguments.arguments
        check_loop_settings("fit", values)
        values["y"] = _as_label_array(values["y"])
        self._use_step_function_for("train", self._check_data("fit", values["x"], values["y"]))
        self._check_sample_weight(values["sample_weight"], "fit")
        validation = values["validation_data"]
        if validation is not None:
            if isinstance(validation, tuple | list):
                val_x, val_y, val_weight = keras.utils.unpack_x_y_sample_weight(
                    tuple(validation))
                val_y = _as_label_array(val_y)
                values["validation_data"] = tuple(
                    v for v in (val_x, val_y, val_weight) if v is not None)
                self._check_sample_weight(val_weight, "validation_data")
            else:
                val_x, val_y = validation, None
            self._use_step_function_for("test",
                                        self._check_data("validation_data", val_x, val_y))
        history = self._in_graph_checks_as_value_errors(
            "fit", lambda: super(CheckedInputs, self).fit(*arguments.args[1:],
                                                          **arguments.kwargs))
        if getattr(history, "epoch", None) and not history.history:
            # An epoch ended without one step (a dataset of unknown length that turned
            # out empty): Keras returns quietly.
            raise ValueError("fit ran no training step: the data yielded no batch (an empty "
                             "dataset?). Give at least one batch.")
        return history

    def evaluate(self, x=None, y=None, *args, **kwargs):
        if kwargs.get("_use_cached_eval_dataset"):  # fit's validation, checked by fit
            return super().evaluate(x, y, *args, **kwargs)
        arguments = inspect.signature(keras.Model.evaluate).bind(self, x, y, *args, **kwargs)
        check_loop_settings("evaluate", arguments.arguments)
        y = arguments.arguments["y"] = _as_label_array(y)
        self._use_step_function_for("test", self._check_data("evaluate", x, y))
        self._check_sample_weight(arguments.arguments.get("sample_weight"), "evaluate")
        result = self._in_graph_checks_as_value_errors(
            "evaluate", lambda: super(CheckedInputs, self).evaluate(*arguments.args[1:],
                                                                    **arguments.kwargs))
        if isinstance(result, list | dict) and not result:
            raise ValueError("evaluate ran no step: the data yielded no batch (an empty "
                             "dataset?). Give at least one batch.")
        return result

    def predict(self, x, *args, **kwargs):
        arguments = inspect.signature(keras.Model.predict).bind(self, x, *args, **kwargs)
        check_loop_settings("predict", arguments.arguments)
        self._check_images(x, "predict")
        return self._in_graph_checks_as_value_errors(
            "predict", lambda: super(CheckedInputs, self).predict(x, *args, **kwargs))
