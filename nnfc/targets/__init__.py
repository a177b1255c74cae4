"""Deployment targets behind one interface (``nnfc.targets.base.Target``).

``get_target("desktop")`` -> ONNX Runtime CPU; ``android`` -> TFLite via onnx2tf, run with LiteRT
(nnfc/targets/tflite.py); ``jetson`` -> TensorRT engine, or a TensorRT-ready ONNX plus its trtexec
recipe where TensorRT is absent (nnfc/targets/tensorrt/). The modules import without their
runtimes installed and raise one NnfcError saying how to install them when one is needed.

A new target is one module with a class following :class:`~nnfc.targets.base.Target` plus one
line in :data:`TARGETS` (or :func:`register_target` from outside nnfc). The CLI reads everything
else (artifact suffixes, options, device-profiling hooks) from the class.
"""

from __future__ import annotations

import importlib

from nnfc.errors import NnfcError
from nnfc.targets.base import BenchResult, DeviceProfiling, Target

# target name -> "module:Class"; classes are imported on first use. Order matters where two
# targets run the same suffix: the first one listed is the default for a bare file (.onnx).
TARGETS: dict[str, str] = {
    "desktop": "nnfc.targets.onnxruntime:OnnxRuntimeTarget",
    "android": "nnfc.targets.tflite:TFLiteTarget",
    "jetson": "nnfc.targets.tensorrt:TensorRTTarget",
}
#: the target commands use when none is given
DEFAULT_TARGET = "desktop"


def register_target(name: str, spec: str) -> None:
    """Register a target of one's own as ``"package.module:Class"``."""
    TARGETS[name] = spec


def target_class(name: str) -> type:
    """The class registered as ``name``; one clear error for an unknown name."""
    if name not in TARGETS:
        raise NnfcError(f"unknown target {name!r}; known: {', '.join(sorted(TARGETS))}")
    module, _, cls = TARGETS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def get_target(name: str, **options) -> Target:
    """Instantiate the target called ``name`` with ``options`` (see its ``option_help``)."""
    cls = target_class(name)
    unknown = sorted(set(options) - set(getattr(cls, "option_help", {})))
    if unknown:
        raise NnfcError(f"target {name!r} does not take option(s) {', '.join(unknown)}")
    return cls(**options)


def target_for_suffix(suffix: str) -> str | None:
    """The first registered target whose artifacts end with ``suffix`` (".tflite" -> android)."""
    suffix = suffix.lower()
    return next((name for name in TARGETS
                 if suffix in getattr(target_class(name), "artifact_suffixes", ())), None)


def supported_options(name: str, wanted: dict) -> dict:
    """The subset of ``wanted`` (None values dropped) that target ``name`` takes."""
    known = getattr(target_class(name), "option_help", {})
    return {k: v for k, v in wanted.items() if v is not None and k in known}


__all__ = ["BenchResult", "DEFAULT_TARGET", "DeviceProfiling", "Target", "TARGETS",
           "get_target", "register_target", "supported_options", "target_class",
           "target_for_suffix"]
