"""Deployment: per-exit TFLite files, the early-exit cascade and their manifest."""

from byot_keras.export.cascade import cascade_models, exit_sections
from byot_keras.export.litert import LiteRTModel
from byot_keras.export.runtime import (
    CascadeAnswer,
    CascadeResult,
    CascadeRuntime,
    read_manifest,
    run_sweep,
    sweep_thresholds,
    write_sweep,
)
from byot_keras.export.tflite import QUANTIZATIONS, convert, export_tflite, file_name

__all__ = [
    "QUANTIZATIONS",
    "CascadeAnswer",
    "CascadeResult",
    "CascadeRuntime",
    "LiteRTModel",
    "cascade_models",
    "convert",
    "exit_sections",
    "export_tflite",
    "file_name",
    "read_manifest",
    "run_sweep",
    "sweep_thresholds",
    "write_sweep",
]
