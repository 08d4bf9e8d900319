"""Run a .tflite file with the LiteRT interpreter (`ai_edge_litert`), by signature and
tensor name, never by position (TFLite reorders and renames outputs)."""

from __future__ import annotations

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


class LiteRTModel:
    """One .tflite file's serving signature, called with named float inputs.

    Quantized (int8) inputs and outputs are converted with the file's own scale and
    zero point, so callers always pass and get float32.

    Example:
        >>> runner = LiteRTModel("tflite/resnet18_byot/exit_1.tflite")  # doctest: +SKIP
        >>> runner(image=images)["logits"].shape                        # doctest: +SKIP
        (8, 10)
    """

    def __init__(self, path_or_bytes, num_threads: int | None = None):
        Interpreter = _interpreter_class()
        if isinstance(path_or_bytes, (bytes, bytearray)):
            self.interpreter = Interpreter(model_content=bytes(path_or_bytes),
                                           num_threads=num_threads)
        else:
            self.interpreter = Interpreter(model_path=str(path_or_bytes),
                                           num_threads=num_threads)
        signatures = self.interpreter.get_signature_list()
        if SIGNATURE not in signatures:
            raise ValueError(f"No '{SIGNATURE}' signature in the file; it has {signatures}.")
        self.input_names = list(signatures[SIGNATURE]["inputs"])
        self.output_names = list(signatures[SIGNATURE]["outputs"])
        self._runner = self.interpreter.get_signature_runner(SIGNATURE)
        self.input_details = self._runner.get_input_details()
        self.output_details = self._runner.get_output_details()

    def op_names(self) -> list[str]:
        """Names of the operators in the graph (e.g. CONV_2D, FlexXXX for Flex ops)."""
        return sorted({op["op_name"] for op in self.interpreter._get_ops_details()})

    def __call__(self, **inputs) -> dict[str, np.ndarray]:
        feed = {}
        for name, value in inputs.items():
            if name not in self.input_details:
                raise ValueError(f"Unknown input '{name}'; inputs are {self.input_names}.")
            detail = self.input_details[name]
            value = np.asarray(value, dtype=np.float32)
            if detail["dtype"] != np.float32:
                scale, zero_point = detail["quantization"]
                info = np.iinfo(detail["dtype"])
                value = np.clip(np.round(value / scale + zero_point), info.min, info.max)
            feed[name] = value.astype(detail["dtype"])
        raw = self._runner(**feed)
        outputs = {}
        for name, value in raw.items():
            detail = self.output_details[name]
            if detail["dtype"] != np.float32:
                scale, zero_point = detail["quantization"]
                value = (value.astype(np.float32) - zero_point) * scale
            outputs[name] = value
        return outputs

    def predict(self, batch_size: int = 64, **inputs) -> dict[str, np.ndarray]:
        """`__call__` over batches of the named inputs (all of the same length)."""
        length = len(next(iter(inputs.values())))
        parts: dict[str, list] = {}
        for start in range(0, length, batch_size):
            out = self(**{k: v[start:start + batch_size] for k, v in inputs.items()})
            for name, value in out.items():
                parts.setdefault(name, []).append(value)
        return {name: np.concatenate(values) for name, values in parts.items()}
