"""TFLite Model Metadata: what standard tools (MediaPipe Tasks' `ImageClassifier`, Android
Studio's ML Model Binding, the TFLite Support library) read from a .tflite file to prepare
its input and name its output: model name, description, version and author; per input
and output tensor a description, the image's colour space and normalisation, the value
range, and associated files (the class labels of the output).

The metadata is a flatbuffer of the published schema `metadata_schema.fbs` (file
identifier "M001"; github.com/google/mediapipe, mediapipe/tasks/metadata/, the same file
as tensorflow/tflite-support's), stored in one of the model's buffers and named
"TFLITE_METADATA" in `Model.metadata`; the associated files are packed into the model as
a zip archive appended after the flatbuffer (the model stays a valid flatbuffer). This
module encodes and decodes that schema itself, on the `flatbuffers` package (a
TensorFlow dependency); the model flatbuffer is rewritten with TensorFlow's own
`flatbuffer_utils`.

Why not a metadata library: tflite-support's writers (0.4.4, the last release, 2023)
require protobuf < 4 while TensorFlow 2.21 requires protobuf >= 6.31, so pip cannot
install both; mediapipe's writer (1.2.3) fails to import its compiled module, and
mediapipe requires absl-py ~= 2.3 where tensorflow-model-optimization (the [compress]
extra) requires absl-py ~= 1.2. The tests read the files back with this module's reader
and, in a separate environment, with tflite-support's `MetadataDisplayer` and
MediaPipe's `ImageClassifier` (tests/test_mediapipe.py).

Only schema features of version 1.0.0 are used (image properties, normalisation options,
stats, tensor-axis label files), so `min_parser_version` is "1.0.0".
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import flatbuffers
import numpy as np
from flatbuffers import number_types
from flatbuffers.table import Table

METADATA_BUFFER_NAME = "TFLITE_METADATA"
FILE_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"

# Enum values and union indices of metadata_schema.fbs.
_TENSOR_AXIS_LABELS = 2  # AssociatedFileType
_COLOR_SPACES = {"RGB": 1, "GRAYSCALE": 2}  # ColorSpaceType
_FEATURE_PROPERTIES, _IMAGE_PROPERTIES = 1, 2  # ContentProperties union
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions union
_CONTENT_NAMES = {_FEATURE_PROPERTIES: "FeatureProperties",
                  _IMAGE_PROPERTIES: "ImageProperties"}
_FILE_TYPES = {0: "UNKNOWN", 1: "DESCRIPTIONS", 2: "TENSOR_AXIS_LABELS",
               3: "TENSOR_VALUE_LABELS", 4: "TENSOR_AXIS_SCORE_CALIBRATION", 5: "VOCABULARY"}

# Field slots (declaration order in metadata_schema.fbs; a union takes two: type, value).
_MODEL = {"name": 0, "description": 1, "version": 2, "subgraph_metadata": 3, "author": 4,
          "license": 5, "associated_files": 6, "min_parser_version": 7}
_SUBGRAPH = {"name": 0, "description": 1, "input_tensor_metadata": 2,
             "output_tensor_metadata": 3}
_TENSOR = {"name": 0, "description": 1, "dimension_names": 2, "content": 3,
           "process_units": 4, "stats": 5, "associated_files": 6}
_CONTENT = {"content_properties_type": 0, "content_properties": 1, "range": 2}
_IMAGE = {"color_space": 0, "default_size": 1}
_PROCESS_UNIT = {"options_type": 0, "options": 1}
_NORMALIZATION = {"mean": 0, "std": 1}
_STATS = {"max": 0, "min": 1}
_FILE = {"name": 0, "description": 1, "type": 2}


@dataclass(frozen=True)
class TensorInfo:
    """What the metadata says about one input or output tensor.

    Args:
        name: the tensor's name in the metadata (e.g. "image", "probabilities").
        description: what it holds, for people.
        image: True for an image input (colour space RGB).
        normalization: `(mean, std)` lists for an image input: tools feed
            `(pixel - mean) / std` (in 0..255 pixel units) to a float tensor.
        value_range: `(min, max)` of the values the tensor holds (schema `Stats`).
        labels_file: name of the associated file with one label per class along the
            tensor's last axis (`TENSOR_AXIS_LABELS`).
    """

    name: str
    description: str
    image: bool = False
    normalization: tuple[Sequence[float], Sequence[float]] | None = None
    value_range: tuple[float, float] | None = None
    labels_file: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    """Model-level metadata; `inputs` / `outputs` in the order of the subgraph's tensors."""

    name: str
    description: str
    version: str
    author: str
    license: str | None = None
    inputs: Sequence[TensorInfo] = field(default_factory=list)
    outputs: Sequence[TensorInfo] = field(default_factory=list)


def _strings(builder: flatbuffers.Builder, values: Mapping[str, str | None]) -> dict:
    return {key: builder.CreateString(value) for key, value in values.items() if value}


def _offset_vector(builder: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _float_vector(builder: flatbuffers.Builder, values: Sequence[float]) -> int:
    return builder.CreateNumpyVector(np.asarray(values, np.float32))


def _table(builder: flatbuffers.Builder, slots: Mapping[str, int], offsets: Mapping[str, int],
           int8s: Mapping[str, int] | None = None, uint8s: Mapping[str, int] | None = None
           ) -> int:
    """A table from child offsets and small scalars (all created beforehand)."""
    builder.StartObject(max(slots.values()) + 1)
    for key, offset in offsets.items():
        builder.PrependUOffsetTRelativeSlot(slots[key], offset, 0)
    for key, value in (int8s or {}).items():
        builder.PrependInt8Slot(slots[key], value, 0)
    for key, value in (uint8s or {}).items():
        builder.PrependUint8Slot(slots[key], value, 0)
    return builder.EndObject()


def _labels_file(builder: flatbuffers.Builder, name: str) -> int:
    strings = _strings(builder, {"name": name, "description": "Class names, one per line, "
                                 "in the order of the tensor's last axis."})
    return _table(builder, _FILE, strings, int8s={"type": _TENSOR_AXIS_LABELS})


def _tensor(builder: flatbuffers.Builder, info: TensorInfo) -> int:
    offsets = _strings(builder, {"name": info.name, "description": info.description})
    if info.image:
        properties = _table(builder, _IMAGE, {}, int8s={"color_space": _COLOR_SPACES["RGB"]})
        kind = _IMAGE_PROPERTIES
    else:
        builder.StartObject(0)
        properties, kind = builder.EndObject(), _FEATURE_PROPERTIES
    offsets["content"] = _table(builder, _CONTENT, {"content_properties": properties},
                                uint8s={"content_properties_type": kind})
    if info.normalization is not None:
        mean, std = info.normalization
        options = _table(builder, _NORMALIZATION, {"mean": _float_vector(builder, mean),
                                                   "std": _float_vector(builder, std)})
        unit = _table(builder, _PROCESS_UNIT, {"options": options},
                      uint8s={"options_type": _NORMALIZATION_OPTIONS})
        offsets["process_units"] = _offset_vector(builder, [unit])
    if info.value_range is not None:
        low, high = info.value_range
        offsets["stats"] = _table(builder, _STATS, {"max": _float_vector(builder, [high]),
                                                    "min": _float_vector(builder, [low])})
    if info.labels_file:
        offsets["associated_files"] = _offset_vector(
            builder, [_labels_file(builder, info.labels_file)])
    return _table(builder, _TENSOR, offsets)


def encode_metadata(info: ModelInfo) -> bytes:
    """The "M001" metadata flatbuffer for one model (one subgraph).

    Example:
        >>> data = encode_metadata(ModelInfo("demo", "a demo", "1", "byot-keras",
        ...     inputs=[TensorInfo("image", "RGB", image=True, normalization=([0], [1]))]))
        >>> decode_metadata(data)["subgraph_metadata"][0]["input_tensor_metadata"][0][
        ...     "process_units"][0]["options"]
        {'mean': [0.0], 'std': [1.0]}
    """
    builder = flatbuffers.Builder(1024)
    inputs = [_tensor(builder, tensor) for tensor in info.inputs]
    outputs = [_tensor(builder, tensor) for tensor in info.outputs]
    subgraph = _table(builder, _SUBGRAPH, {
        "input_tensor_metadata": _offset_vector(builder, inputs),
        "output_tensor_metadata": _offset_vector(builder, outputs)})
    offsets = _strings(builder, {"name": info.name, "description": info.description,
                                 "version": info.version, "author": info.author,
                                 "license": info.license,
                                 "min_parser_version": MIN_PARSER_VERSION})
    offsets["subgraph_metadata"] = _offset_vector(builder, [subgraph])
    builder.Finish(_table(builder, _MODEL, offsets), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


class _Reader:
    """Field access on one table of a flatbuffer, by slot number."""

    def __init__(self, data: bytes, position: int):
        self.table = Table(data, position)
        self.data = data

    def _offset(self, slot: int) -> int:
        return self.table.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str | None:
        offset = self._offset(slot)
        return self.table.String(offset + self.table.Pos).decode() if offset else None

    def scalar(self, slot: int, flags, default: int = 0) -> int:
        offset = self._offset(slot)
        return self.table.Get(flags, offset + self.table.Pos) if offset else default

    def child(self, slot: int) -> _Reader | None:
        offset = self._offset(slot)
        return _Reader(self.data, self.table.Indirect(offset + self.table.Pos)) if (
            offset) else None

    def children(self, slot: int) -> list[_Reader]:
        offset = self._offset(slot)
        if not offset:
            return []
        start = self.table.Vector(offset)
        return [_Reader(self.data, self.table.Indirect(start + 4 * i))
                for i in range(self.table.VectorLen(offset))]

    def floats(self, slot: int) -> list[float] | None:
        offset = self._offset(slot)
        if not offset:
            return None
        return self.table.GetVectorAsNumpy(number_types.Float32Flags, offset).tolist()


def _decode_tensor(tensor: _Reader) -> dict:
    decoded = {key: tensor.string(_TENSOR[key]) for key in ("name", "description")}
    content = tensor.child(_TENSOR["content"])
    if content is not None:
        kind = content.scalar(_CONTENT["content_properties_type"], number_types.Uint8Flags)
        properties = {}
        if kind == _IMAGE_PROPERTIES:
            image = content.child(_CONTENT["content_properties"])
            space = image.scalar(_IMAGE["color_space"], number_types.Int8Flags)
            names = {v: k for k, v in _COLOR_SPACES.items()}
            properties = {"color_space": names.get(space, "UNKNOWN")}
        decoded["content"] = {"content_properties_type": _CONTENT_NAMES.get(kind, str(kind)),
                              "content_properties": properties}
    units = []
    for unit in tensor.children(_TENSOR["process_units"]):
        kind = unit.scalar(_PROCESS_UNIT["options_type"], number_types.Uint8Flags)
        if kind == _NORMALIZATION_OPTIONS:
            options = unit.child(_PROCESS_UNIT["options"])
            units.append({"options_type": "NormalizationOptions",
                          "options": {key: options.floats(slot)
                                      for key, slot in _NORMALIZATION.items()}})
        else:
            units.append({"options_type": str(kind)})
    if units:
        decoded["process_units"] = units
    stats = tensor.child(_TENSOR["stats"])
    if stats is not None:
        decoded["stats"] = {key: stats.floats(slot) for key, slot in _STATS.items()}
    files = [{"name": f.string(_FILE["name"]), "description": f.string(_FILE["description"]),
              "type": _FILE_TYPES.get(f.scalar(_FILE["type"], number_types.Int8Flags),
                                      "UNKNOWN")}
             for f in tensor.children(_TENSOR["associated_files"])]
    if files:
        decoded["associated_files"] = files
    return {key: value for key, value in decoded.items() if value is not None}


def decode_metadata(data: bytes) -> dict:
    """An "M001" metadata flatbuffer as a dict with the schema's field names (the layout
    of tflite-support's `MetadataDisplayer.get_metadata_json()`), for the fields this
    module writes.

    Example:
        >>> decode_metadata(encode_metadata(ModelInfo("demo", "a demo", "1", "me")))["name"]
        'demo'
    """
    data = bytes(data)
    if data[4:8] != FILE_IDENTIFIER:
        raise ValueError(f"Not a TFLite metadata flatbuffer (identifier {data[4:8]!r}, "
                         f"expected {FILE_IDENTIFIER!r}).")
    root = _Reader(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))
    decoded = {key: root.string(_MODEL[key]) for key in
               ("name", "description", "version", "author", "license", "min_parser_version")}
    decoded["subgraph_metadata"] = [
        {key: [_decode_tensor(t) for t in subgraph.children(_SUBGRAPH[key])]
         for key in ("input_tensor_metadata", "output_tensor_metadata")}
        for subgraph in root.children(_MODEL["subgraph_metadata"])]
    return {key: value for key, value in decoded.items() if value is not None}


def _schema():
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def subgraph_tensors(flatbuffer: bytes, subgraph: int = 0
                     ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """`(name, dtype)` of a subgraph's inputs and of its outputs, in the subgraph's order
    (the order metadata lists them in). The name is the signature's name for the tensor
    (the graph's own name where no signature names it); dtype e.g. "float32", "uint8".

    Example:
        >>> import keras
        >>> from byot_keras.export import convert
        >>> tiny = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
        ...                          keras.layers.Dense(2)])  # any one-input Keras model
        >>> subgraph_tensors(convert(tiny, "image", probabilities=True))
        ([('image', 'float32')], [('probabilities', 'float32')])
    """
    schema = _schema()
    model = schema.Model.GetRootAs(flatbuffer, 0)
    graph = model.Subgraphs(subgraph)
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    names = {}
    for s in range(model.SignatureDefsLength()):
        signature = model.SignatureDefs(s)
        if signature.SubgraphIndex() != subgraph:
            continue
        for getter, count in ((signature.Inputs, signature.InputsLength()),
                              (signature.Outputs, signature.OutputsLength())):
            for i in range(count):
                names[getter(i).TensorIndex()] = getter(i).Name().decode()

    def describe(index: int) -> tuple[str, str]:
        tensor = graph.Tensors(index)
        return (names.get(index) or tensor.Name().decode(),
                types.get(tensor.Type(), str(tensor.Type())))

    return ([describe(i) for i in graph.InputsAsNumpy().tolist()],
            [describe(i) for i in graph.OutputsAsNumpy().tolist()])


def subgraph_signature(flatbuffer: bytes, subgraph: int = 0) -> str | None:
    """The signature key of a subgraph (the one metadata describes: subgraph 0).

    Example:
        >>> import keras
        >>> from byot_keras.export import convert
        >>> tiny = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
        ...                          keras.layers.Dense(2)])  # any one-input Keras model
        >>> subgraph_signature(convert(tiny, "image"))
        'serving_default'
    """
    model = _schema().Model.GetRootAs(flatbuffer, 0)
    for s in range(model.SignatureDefsLength()):
        if model.SignatureDefs(s).SubgraphIndex() == subgraph:
            return model.SignatureDefs(s).SignatureKey().decode()
    return None


def add_metadata(flatbuffer: bytes, info: ModelInfo,
                 associated_files: Mapping[str, bytes] | None = None) -> bytes:
    """`flatbuffer` with `info` as its TFLite metadata (replacing any) and the associated
    files packed in. `info.inputs` / `outputs` must name subgraph 0's tensors in their
    order (`subgraph_tensors`); every labels file they name must be given.

    Example:
        >>> import keras
        >>> from byot_keras.export import convert
        >>> tiny = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
        ...                          keras.layers.Dense(2)])  # any one-input Keras model
        >>> plain = convert(tiny, "image")
        >>> info = ModelInfo("demo", "exit 1", "1", "byot-keras",
        ...     inputs=[TensorInfo("image", "RGB pixels", image=True, normalization=([0], [1]))],
        ...     outputs=[TensorInfo("logits", "scores", labels_file="labels.txt")])
        >>> packed = add_metadata(plain, info, {"labels.txt": b"cat\\ndog\\n"})
        >>> read_metadata(packed)["associated_files"]
        {'labels.txt': b'cat\\ndog\\n'}
    """
    from tensorflow.lite.tools import flatbuffer_utils

    files = dict(associated_files or {})
    inputs, outputs = subgraph_tensors(flatbuffer)
    for side, tensors, described in (("inputs", inputs, info.inputs),
                                     ("outputs", outputs, info.outputs)):
        # Metadata pairs with tensors by position: the names must line up.
        if [name for name, _ in tensors] != [t.name for t in described]:
            raise ValueError(f"The model's subgraph 0 has the {side} "
                             f"{[name for name, _ in tensors]}; the metadata describes "
                             f"{[t.name for t in described]} (same names, same order).")
    wanted = {t.labels_file for t in [*info.inputs, *info.outputs] if t.labels_file}
    if wanted - set(files):
        raise ValueError(f"Associated files {sorted(wanted - set(files))} are named in the "
                         "metadata but not given.")
    schema = _schema()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(encode_metadata(info), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_BUFFER_NAME, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or [])
                      if _text(m.name) != METADATA_BUFFER_NAME] + [entry]
    packed = io.BytesIO()
    packed.write(flatbuffer_utils.convert_object_to_bytearray(model))
    if files:
        # Appended after the flatbuffer, as TFLite metadata tools pack associated files.
        with zipfile.ZipFile(packed, "a", compression=zipfile.ZIP_STORED) as archive:
            for name, content in files.items():
                archive.writestr(name, content)
    return packed.getvalue()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_metadata(path_or_bytes) -> dict | None:
    """The TFLite metadata of a .tflite file (`decode_metadata`'s dict) plus
    "associated_files": {name: content} of the packed files; None without metadata.

    Example:
        >>> import keras
        >>> from byot_keras.export import convert
        >>> tiny = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
        ...                          keras.layers.Dense(2)])  # any one-input Keras model
        >>> info = ModelInfo("demo", "a demo", "1", "me", inputs=[TensorInfo("image", "RGB")],
        ...                  outputs=[TensorInfo("logits", "scores")])
        >>> with open("demo.tflite", "wb") as file:
        ...     _ = file.write(add_metadata(convert(tiny, "image"), info))
        >>> read_metadata("demo.tflite")["name"]
        'demo'
    """
    if isinstance(path_or_bytes, (bytes, bytearray)):
        content = bytes(path_or_bytes)
    else:
        with open(path_or_bytes, "rb") as f:
            content = f.read()
    model = _schema().Model.GetRootAs(content, 0)
    metadata = None
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() == METADATA_BUFFER_NAME:
            metadata = decode_metadata(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    if metadata is None:
        return None
    files = {}
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            files = {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        pass  # no packed files
    metadata["associated_files"] = files
    return metadata
