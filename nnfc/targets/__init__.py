"""Deployment targets behind one interface (``nnfc.targets.base.Target``).

``get_target("desktop")`` -> ONNX Runtime CPU; ``android`` -> TFLite via onnx2tf, run with LiteRT
(nnfc/targets/tflite.py); ``jetson`` -> TensorRT engine, or a TensorRT-ready ONNX plus its trtexec
recipe where TensorRT is absent (nnfc/targets/tensorrt.py). The modules import without their
runtimes installed and raise one NnfcError saying how to install them when one is needed.
"""

from __future__ import annotations

import importlib

from nnfc.errors import NnfcError
from nnfc.targets.base import BenchResult, Target

# target name -> "module:Class"; classes are imported lazily (tensorflow, tensorrt are heavy).
TARGETS: dict[str, str] = {
    "desktop": "nnfc.targets.onnxruntime:OnnxRuntimeTarget",
    "android": "nnfc.targets.tflite:TFLiteTarget",
    "jetson": "nnfc.targets.tensorrt:TensorRTTarget",
}


def get_target(name: str, **options) -> Target:
    """Instantiate the target called ``name`` (desktop, android, jetson)."""
    if name not in TARGETS:
        raise NnfcError(f"unknown target {name!r}; known: {', '.join(sorted(TARGETS))}")
    module, cls = TARGETS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**options)


__all__ = ["BenchResult", "Target", "TARGETS", "get_target"]
