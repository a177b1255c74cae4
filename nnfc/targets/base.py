"""The target interface every runtime implements.

``lower(pruned_onnx, out_dir) -> artifact``, ``run(artifact, inputs) -> outputs``,
``benchmark(artifact, runs, warmup) -> BenchResult``; the class describes itself (``name``,
``artifact_suffixes``, ``option_help``, ``repeatable_options``) so that the CLI needs no per-target
code. A target whose device this machine cannot drive (a Jetson) adds the optional
device-profiling hooks of :class:`DeviceProfiling`.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Protocol, runtime_checkable

import numpy as np


@dataclass
class BenchResult:
    """Latency (ms, batch 1) and peak memory (MB) of one artifact on one target."""

    median_ms: float
    p90_ms: float
    peak_memory_mb: float
    runs: int
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"latency_ms": {"median": self.median_ms, "p90": self.p90_ms},
                "peak_memory_mb": self.peak_memory_mb, "runs": self.runs,
                "details": self.details}


class Target(Protocol):
    """A deployment runtime."""

    #: registry name ("desktop", "android", "jetson")
    name: ClassVar[str]
    #: file suffix of the artifact ``lower`` writes, e.g. ".onnx", ".tflite", ".engine"
    artifact_suffix: ClassVar[str]
    #: suffixes of the files ``run``/``benchmark`` take as they are (an ``.onnx`` given to a
    #: target without ".onnx" here is lowered first)
    artifact_suffixes: ClassVar[tuple[str, ...]]
    #: constructor options it takes: name -> one line of help (``get_target(name, **options)``;
    #: an instance's chosen values are its ``options`` attribute where the compiler sets it)
    option_help: ClassVar[Mapping[str, str]]
    #: options that make timings repeatable on a shared machine (profiling, comparisons)
    repeatable_options: ClassVar[Mapping[str, Any]]

    def lower(self, pruned_onnx: str | Path | bytes, out_dir: str | Path) -> Path:
        """The artifact made from an ONNX file or a serialized model (``bytes``)."""

    def run(self, artifact: str | Path, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...

    def benchmark(self, artifact: str | Path, runs: int = 50, warmup: int = 10) -> BenchResult: ...


@runtime_checkable
class DeviceProfiling(Protocol):
    """Optional hooks of a target measured on a device this machine cannot drive: ``nnfc profile
    --device-dir`` writes the subnets and :meth:`write_device_profile_script`; the device's log
    is read back with :meth:`parse_device_measurements` (``nnfc profile fit``)."""

    def write_device_profile_script(self, onnx_files: Iterable[str | Path],
                                    out_dir: str | Path) -> Path:
        """Write a script that, run on the device from ``out_dir``, measures each file."""

    def parse_device_measurements(self, path: str | Path) -> list[dict]:
        """One row per measured file: ``model`` (file name), ``latency_ms``, ... ."""


def time_calls(fn: Callable[[], object], runs: int, warmup: int) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times; return each call's ms."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def summarize(times_ms: list[float]) -> tuple[float, float]:
    """Median and 90th percentile of a list of latencies."""
    p90 = float(np.percentile(times_ms, 90))
    return float(statistics.median(times_ms)), p90

