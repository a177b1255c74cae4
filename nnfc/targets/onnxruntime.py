"""``desktop`` target: ONNX Runtime on the CPU.

``lower`` applies ORT's portable (extended) graph optimizations offline and saves the optimized
model; ``benchmark`` runs batch 1 with warm-up and reports median/p90 latency and the memory the
session holds after the runs (weights + arena; ORT's arena does not shrink, so this is its peak).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
import onnxruntime as ort

from nnfc.atomic import atomic_file, write_failure_cause
from nnfc.errors import NnfcError
from nnfc.onnx_io import source_name
from nnfc.targets.base import BenchResult, summarize, time_calls
from nnfc.targets.memory import rss_mb

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
              "tensor(double)": np.float64, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
              "tensor(bool)": np.bool_, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def session_options(threads: int | None = None,
                    level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                    ) -> ort.SessionOptions:
    """Session options with ``threads`` intra-op threads (None: ORT's default) and ``level``."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return opts


def open_session(model: str | Path | bytes, threads: int | None = None,
                 level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                 ) -> ort.InferenceSession:
    """An ORT CPU session for a model path or serialized bytes, with a clear error if invalid."""
    src = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(src, session_options(threads, level),
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
        raise NnfcError(f"onnxruntime cannot load {source_name(model)}: "
                        f"{str(exc).splitlines()[0]}") from exc


def open_reference_session(model: str | Path | bytes, threads: int | None = None
                           ) -> ort.InferenceSession:
    """A session that evaluates the model as written (no graph rewrites), for equivalence
    checks that run it once: it opens in a third of the time an optimizing session takes."""
    return open_session(model, threads, level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)


def random_inputs(session: ort.InferenceSession, batch: int = 1, seed: int = 0
                  ) -> dict[str, np.ndarray]:
    """Random inputs for every graph input; symbolic dims become ``batch`` (first) or 1."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in session.get_inputs():
        shape = [d if isinstance(d, int) else (batch if i == 0 else 1)
                 for i, d in enumerate(inp.shape)]
        dtype = _ORT_TYPES.get(inp.type, np.float32)
        feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


class OnnxRuntimeTarget:
    """ONNX Runtime CPU (the ``desktop`` target)."""

    name = "desktop"
    artifact_suffix = ".onnx"
    artifact_suffixes = (".onnx",)
    runtime = "onnxruntime"
    option_help = {"threads": "intra-op threads (default: onnxruntime's choice)"}
    repeatable_options = {"threads": 1}
    #: ``nnfc compile --precision``: int8 is onnxruntime's static QDQ quantization
    #: (:mod:`nnfc.precision.ort_quantize`), lowered like a float model
    precisions = ("fp32", "int8")
    precision_refusals = {
        "fp16": "onnxruntime's CPU provider has no float16 convolution kernels on x86: a float16 "
                "model runs float32 kernels between casts (the default factory's red,car "
                "subnet: 6.7 ms against 1.8 ms in float32); use int8 or fp32"}

    def __init__(self, threads: int | None = None):
        self.threads = threads
        # (file key, session, feeds, memory MB) of the last artifact benchmarked
        self._last: tuple | None = None

    def lower(self, pruned_onnx: str | Path | bytes, out_dir: str | Path) -> Path:
        """Optimize with ORT (portable 'extended' level) and save ``out_dir/model.ort.onnx``
        (``pruned_onnx``: a file or a serialized model)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        final = out_dir / "model.ort.onnx"
        with atomic_file(final, suffix=".onnx") as tmp:
            opts = session_options(self.threads, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
            opts.optimized_model_filepath = str(tmp)
            try:
                ort.InferenceSession(pruned_onnx if isinstance(pruned_onnx, bytes)
                                     else str(pruned_onnx), opts,
                                     providers=["CPUExecutionProvider"])
            except Exception as exc:
                cause = write_failure_cause(out_dir)  # a full disk reads "serialization failed"
                if cause:
                    raise NnfcError(f"cannot write {final}: {cause}") from None
                raise NnfcError(f"onnxruntime cannot load {source_name(pruned_onnx)}: "
                                f"{str(exc).splitlines()[0]}") from exc
        return final

    def _session(self, artifact: str | Path) -> ort.InferenceSession:
        """A session for the file's current contents, shared by ``run`` and ``runner`` (the
        last few files are kept: compile measures, then verifies, the same artifact)."""
        key = _file_key(artifact)
        cache = self.__dict__.setdefault("_sessions", {})
        if key not in cache:
            while len(cache) >= 3:
                cache.pop(next(iter(cache)))
            cache[key] = open_session(artifact, self.threads)
        return cache[key]

    def run(self, artifact: str | Path, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the artifact on ``inputs`` (name -> array) and return all outputs."""
        return self._session(artifact).run(None, dict(inputs))

    def runner(self, artifact: str | Path):
        """One inference of ``artifact`` per call (session and random inputs made once), for
        measurements that interleave two models call by call (``measure_relative``)."""
        session = self._session(artifact)
        feeds = random_inputs(session)
        return lambda: session.run(None, feeds)

    def benchmark(self, artifact: str | Path, runs: int = 50, warmup: int = 10) -> BenchResult:
        """Median/p90 latency at batch 1 and the session's resident memory.

        Benchmarking the same file again (measurement rounds) reuses its session and the memory
        figure of the first call, instead of building the session anew each time."""
        key = _file_key(artifact)
        if self._last is None or self._last[0] != key:
            self._last = None  # release the previous session before measuring a new one
            before = rss_mb()
            session = open_session(artifact, self.threads)
            feeds = random_inputs(session)
            times = time_calls(lambda: session.run(None, feeds), runs, warmup)
            self._last = (key, session, feeds, max(0.0, rss_mb() - before))
        else:
            _, session, feeds, _ = self._last
            times = time_calls(lambda: session.run(None, feeds), runs, warmup)
        median, p90 = summarize(times)
        return BenchResult(median, p90, self._last[3], len(times),
                           details={"runtime": f"onnxruntime {ort.__version__}",
                                    "threads": self.threads or "default",
                                    "memory": "RSS held by the session after the first runs"})


def _file_key(path: str | Path) -> tuple[str, int, int]:
    """Identity of a file's current contents: resolved path, size, mtime."""
    stat = os.stat(path)
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns
