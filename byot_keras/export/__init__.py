"""Deployment: per-exit TFLite files, the early-exit cascade and their manifest."""

from byot_keras.export.cascade import cascade_models, exit_models, exit_sections
from byot_keras.export.equalize import equalize_for_quantization
from byot_keras.export.litert import LiteRTModel, operator_names
from byot_keras.export.metadata import read_metadata
from byot_keras.export.runtime import (
    CascadeAnswer,
    CascadeResult,
    CascadeRuntime,
    read_manifest,
    run_sweep,
    sweep_thresholds,
    write_sweep,
)
from byot_keras.export.tflite import (
    EXPERIMENTAL_QUANTIZATIONS,
    QUANTIZATIONS,
    convert,
    convert_signatures,
    export_tflite,
    file_name,
)

__all__ = [
    "EXPERIMENTAL_QUANTIZATIONS",
    "QUANTIZATIONS",
    "CascadeAnswer",
    "CascadeResult",
    "CascadeRuntime",
    "LiteRTModel",
    "cascade_models",
    "convert",
    "convert_signatures",
    "equalize_for_quantization",
    "exit_models",
    "exit_sections",
    "export_tflite",
    "file_name",
    "operator_names",
    "read_manifest",
    "read_metadata",
    "run_sweep",
    "sweep_thresholds",
    "write_sweep",
]
