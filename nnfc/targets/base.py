"""The target interface every runtime implements (see DESIGN.md, Targets).

``lower(pruned_onnx, out_dir) -> artifact``, ``run(artifact, inputs) -> outputs``,
``benchmark(artifact, runs, warmup) -> BenchResult``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Protocol

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

    name: str
    #: file suffix of the artifact ``lower`` writes, e.g. ".onnx", ".tflite", ".engine"
    artifact_suffix: str

    def lower(self, pruned_onnx: str | Path, out_dir: str | Path) -> Path: ...

    def run(self, artifact: str | Path, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...

    def benchmark(self, artifact: str | Path, runs: int = 50, warmup: int = 10) -> BenchResult: ...


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


def result_to_dict(result: BenchResult) -> dict:
    return asdict(result)
