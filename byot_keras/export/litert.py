"""Run a .tflite file with the LiteRT interpreter (`ai_edge_litert`), by signature and
tensor name, never by position (TFLite reorders and renames outputs)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

SIGNATURE = "serving_default"


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Running TFLite files needs the LiteRT interpreter: pip install "
            "'byot-keras[tflite]' (or pip install ai-edge-litert)."
        ) from error
    return Interpreter


def _flatbuffer_model(path_or_bytes):
    from ai_edge_litert import schema_py_generated as schema

    if isinstance(path_or_bytes, (bytes, bytearray)):
        content = bytes(path_or_bytes)
    else:
        with open(path_or_bytes, "rb") as f:
            content = f.read()
    return schema, schema.Model.GetRootAsModel(content, 0)


def _operator_name(schema, model, opcode_index: int) -> str:
    code = model.OperatorCodes(opcode_index)
    # Codes above 127 live in BuiltinCode; older files use DeprecatedBuiltinCode.
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == schema.BuiltinOperator.CUSTOM:
        return (code.CustomCode() or b"").decode()
    names = {value: name for name, value in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
    return names.get(builtin, str(builtin))


def operator_names(path_or_bytes) -> list[str]:
    """Every operator a .tflite file uses, in all its subgraphs (one per signature):
    builtin names such as "CONV_2D"; custom operators by their code (Flex ops, which
    need TensorFlow's runtime, start with "Flex")."""
    schema, model = _flatbuffer_model(path_or_bytes)
    return sorted({_operator_name(schema, model, i) for i in range(model.OperatorCodesLength())})


class OutputTensor(NamedTuple):
    """A signature output: the tensor's name in the graph, the operator that computes it
    (None for a graph input or constant), and that operator's inputs as
    (tensor name, operator computing it) pairs."""

    tensor: str
    producer: str | None
    producer_inputs: tuple[tuple[str, str | None], ...]


def _name_and_producer(schema, model, subgraph, producers, index: int
                       ) -> tuple[str, str | None]:
    operator = producers.get(index)
    return (subgraph.Tensors(index).Name().decode(),
            None if operator is None else _operator_name(schema, model, operator.OpcodeIndex()))


def signature_outputs(path_or_bytes, output_name: str) -> dict[str, OutputTensor]:
    """For each signature of a .tflite file that has an output `output_name`: that
    output's tensor, the operator computing it and the operator's inputs."""
    schema, model = _flatbuffer_model(path_or_bytes)
    found = {}
    for s in range(model.SignatureDefsLength()):
        signature = model.SignatureDefs(s)
        subgraph = model.Subgraphs(signature.SubgraphIndex())
        producers = {}
        for i in range(subgraph.OperatorsLength()):
            operator = subgraph.Operators(i)
            for index in operator.OutputsAsNumpy().tolist():
                producers[index] = operator
        for o in range(signature.OutputsLength()):
            output = signature.Outputs(o)
            if output.Name().decode() != output_name:
                continue
            index = output.TensorIndex()
            operator = producers.get(index)
            inputs = () if operator is None else tuple(
                _name_and_producer(schema, model, subgraph, producers, i)
                for i in operator.InputsAsNumpy().tolist() if i >= 0)
            found[signature.SignatureKey().decode()] = OutputTensor(
                *_name_and_producer(schema, model, subgraph, producers, index), inputs)
    return found


class LiteRTModel:
    """One signature of a .tflite file, called with named float inputs.

    Quantized (int8, int16) inputs and outputs are converted with the file's own scale
    and zero point, so callers always pass and get float32.

    Args:
        path_or_bytes: a .tflite file or its contents.
        num_threads: interpreter threads (None: LiteRT's default).
        signature: which signature to run: "serving_default" for the per-exit files and
            the cascade segments, "exit_1" ... "exit_N" for the multi-signature
            `model.tflite` (`signature_names` lists a file's signatures).

    Example:
        >>> import numpy as np
        >>> from byot_keras import zoo
        >>> from byot_keras.export import convert
        >>> model = zoo.alexnet_byot(num_classes=10, width_multiplier=0.125)
        >>> with open("exit_1.tflite", "wb") as file:  # exit 1 as a classifier file
        ...     _ = file.write(convert(model.exit_model(1), "image", probabilities=True))
        >>> runner = LiteRTModel("exit_1.tflite")
        >>> runner(image=np.zeros((8, 32, 32, 3)))["probabilities"].shape
        (8, 10)
    """

    def __init__(self, path_or_bytes, num_threads: int | None = None,
                 signature: str = SIGNATURE):
        Interpreter = _interpreter_class()
        if isinstance(path_or_bytes, (bytes, bytearray)):
            self.interpreter = Interpreter(model_content=bytes(path_or_bytes),
                                           num_threads=num_threads)
        else:
            self.interpreter = Interpreter(model_path=str(path_or_bytes),
                                           num_threads=num_threads)
        signatures = self.interpreter.get_signature_list()
        self.signature_names = list(signatures)
        if signature not in signatures:
            raise ValueError(f"No '{signature}' signature in the file; it has "
                             f"{self.signature_names}.")
        self.signature = signature
        self.input_names = list(signatures[signature]["inputs"])
        self.output_names = list(signatures[signature]["outputs"])
        self._runner = self.interpreter.get_signature_runner(signature)
        self.input_details = self._runner.get_input_details()
        self.output_details = self._runner.get_output_details()

    def tensor_shapes(self) -> dict[str, dict[str, list[int]]]:
        """`{"inputs": {name: shape}, "outputs": {name: shape}}` without the batch
        dimension: what the manifest records for each cascade segment."""
        return {
            "inputs": {n: [int(d) for d in self.input_details[n]["shape"][1:]]
                       for n in self.input_names},
            "outputs": {n: [int(d) for d in self.output_details[n]["shape"][1:]]
                        for n in self.output_names},
        }

    def tensor_facts(self) -> dict:
        """`tensor_shapes()` plus `dtypes` (tensor name -> "float32", "uint8", "int8", ...)
        and, for integer tensors, `quantization` (name -> [scale, zero point]: real value
        = scale * (stored - zero point)): what the manifest records for each file.

        Example:
            >>> import keras
            >>> from byot_keras.export import convert
            >>> tiny = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
            ...                          keras.layers.Dense(2)])  # any one-input Keras model
            >>> LiteRTModel(convert(tiny, "image")).tensor_facts()["dtypes"]
            {'image': 'float32', 'logits': 'float32'}
        """
        facts = self.tensor_shapes()
        details = {**self.input_details, **self.output_details}
        facts["dtypes"] = {name: np.dtype(d["dtype"]).name for name, d in details.items()}
        quantized = {name: [float(d["quantization"][0]), int(d["quantization"][1])]
                     for name, d in details.items() if np.dtype(d["dtype"]).kind in "iu"}
        if quantized:
            facts["quantization"] = quantized
        return facts

    def op_names(self) -> list[str]:
        """Names of the operators in the file (e.g. CONV_2D, FlexXXX for Flex ops)."""
        return sorted({op["op_name"] for op in self.interpreter._get_ops_details()})

    def __call__(self, **inputs) -> dict[str, np.ndarray]:
        """Runs the signature on named inputs; returns every output as float32."""
        return {name: self.to_float(name, value) for name, value in self.raw(**inputs).items()}

    def raw(self, **inputs) -> dict[str, np.ndarray]:
        """Runs the signature; returns the outputs as the file stores them (int8 outputs
        stay int8). Float inputs of a quantized tensor are quantized with its scale and
        zero point; an array already of the tensor's integer type is passed as it is, so
        one segment's int8 "trunk_out" feeds the next segment's "trunk_in" unchanged."""
        feed = {}
        for name, value in inputs.items():
            if name not in self.input_details:
                raise ValueError(f"Unknown input '{name}'; inputs are {self.input_names}.")
            detail = self.input_details[name]
            if detail["dtype"] != np.float32 and np.asarray(value).dtype == detail["dtype"]:
                feed[name] = np.asarray(value)
                continue
            value = np.asarray(value, dtype=np.float32)
            if detail["dtype"] != np.float32:
                scale, zero_point = detail["quantization"]
                info = np.iinfo(detail["dtype"])
                value = np.clip(np.round(value / scale + zero_point), info.min, info.max)
            feed[name] = value.astype(detail["dtype"])
        return self._runner(**feed)

    def to_float(self, output_name: str, value: np.ndarray) -> np.ndarray:
        """An output of `raw` as float32 (dequantized with the tensor's scale and zero
        point when it is quantized)."""
        detail = self.output_details[output_name]
        if detail["dtype"] == np.float32:
            return value
        scale, zero_point = detail["quantization"]
        return (value.astype(np.float32) - zero_point) * scale

    def predict(self, batch_size: int = 64, **inputs) -> dict[str, np.ndarray]:
        """`__call__` over batches of the named inputs (all of the same length)."""
        length = len(next(iter(inputs.values())))
        parts: dict[str, list] = {}
        for start in range(0, length, batch_size):
            out = self(**{k: v[start:start + batch_size] for k, v in inputs.items()})
            for name, value in out.items():
                parts.setdefault(name, []).append(value)
        return {name: np.concatenate(values) for name, values in parts.items()}
