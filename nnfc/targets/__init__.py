"""Deployment targets behind one interface (``nnfc.targets.base.Target``).

``get_target("desktop")`` -> ONNX Runtime CPU; ``android`` (TFLite/LiteRT) and ``jetson``
(TensorRT) register here as they are added.
"""

from __future__ import annotations

import importlib

from nnfc.errors import NnfcError
from nnfc.targets.base import BenchResult, Target

# target name -> "module:Class"; classes are imported lazily (tensorflow, tensorrt are heavy).
TARGETS: dict[str, str] = {
    "desktop": "nnfc.targets.onnxruntime:OnnxRuntimeTarget",
}


def get_target(name: str, **options) -> Target:
    """Instantiate the target called ``name`` (desktop, android, jetson)."""
    if name not in TARGETS:
        raise NnfcError(f"unknown target {name!r}; known: {', '.join(sorted(TARGETS))}")
    module, cls = TARGETS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**options)


__all__ = ["BenchResult", "Target", "TARGETS", "get_target"]
