"""The ``jetson`` target: TensorRT.

``lower`` always writes ``model.trt.onnx``: a TensorRT-ready ONNX (batch fixed to 1, every input
static, an opset TensorRT 10's parser reads, no gate inputs — any left are folded all-on — shapes
inferred, checked with ``onnx.checker``). Then:

* where the ``tensorrt`` Python package and an NVIDIA GPU are present (a Jetson with JetPack, or
  a desktop GPU), it builds ``model.engine`` with the TensorRT Python API (builder ->
  OnnxParser -> builder config with a workspace limit, FP16 when asked -> serialized engine)
  and returns it;
* otherwise it writes the recipe ``build_engine.sh`` (``trtexec --onnx=model.trt.onnx
  --saveEngine=model.engine [--fp16]``) beside the ONNX, prints one line saying so, and returns
  the ONNX. It never writes a fake engine.

``run`` executes an engine with TensorRT; on the TensorRT-ready ONNX without TensorRT it runs
that ONNX with onnxruntime (the exact file the engine will be built from), so equivalence checks
still hold. ``benchmark`` needs TensorRT and a GPU; without them it raises
:class:`TensorRTUnavailable` (an NnfcError) naming the trtexec command to run on the device.
Profiling on the Jetson itself goes through the device-profiling hooks
(:mod:`nnfc.targets.tensorrt.device_profiling`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from nnfc.errors import NnfcError
from nnfc.onnx_io import load_onnx
from nnfc.targets.base import BenchResult, summarize, time_calls
from nnfc.targets.tensorrt import cuda_runner, device_profiling
from nnfc.targets.tensorrt.lowering import (DEFAULT_WORKSPACE_MB, ENGINE_NAME, ONNX_NAME,
                                            build_engine, check_explicit_int8, is_qdq,
                                            tensorrt_ready_onnx, trtexec_command,
                                            write_bytes, write_recipe)


class TensorRTTarget:
    """TensorRT engines for NVIDIA Jetson (the ``jetson`` target)."""

    name = "jetson"
    artifact_suffix = ".engine"
    #: engines, and the TensorRT-ready ONNX ``lower`` writes where no engine can be built here
    artifact_suffixes = (".engine", ".plan", ".onnx")
    runtime = "tensorrt"
    option_help = {"fp16": "build FP16 engines", "workspace_mb": "TensorRT builder workspace"}
    repeatable_options: dict = {}
    #: ``nnfc compile --precision``: int8 is an explicitly quantized (Q/DQ, zero point 0) ONNX
    #: that ``lower`` builds with INT8; fp16 builds with FP16
    precisions = ("fp32", "fp16", "int8")
    int8_symmetric = True

    def __init__(self, fp16: bool = False, workspace_mb: int = DEFAULT_WORKSPACE_MB):
        self.fp16 = fp16
        self.workspace_mb = workspace_mb

    def lower(self, pruned_onnx: str | Path | bytes, out_dir: str | Path) -> Path:
        """Write ``model.trt.onnx``; build ``model.engine`` where TensorRT and a GPU exist
        (returned), else write ``build_engine.sh``, say so on stderr and return the ONNX."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        ready = tensorrt_ready_onnx(load_onnx(pruned_onnx))
        int8 = is_qdq(ready)
        if int8:
            check_explicit_int8(ready)
        onnx_path = write_bytes(out_dir / ONNX_NAME, ready.SerializeToString())
        trt, reason = cuda_runner.tensorrt_status()
        if trt is None:
            recipe = write_recipe(out_dir, reason, self.fp16, self.workspace_mb, int8)
            command = trtexec_command(fp16=self.fp16, workspace_mb=self.workspace_mb,
                                      int8=int8)
            # out_dir may be a staging directory renamed into place later: name the files only
            logging.getLogger("nnfc").info(
                "no TensorRT engine built (%s); on the Jetson run `bash %s` beside %s (%s)",
                reason, recipe.name, onnx_path.name, command)
            return onnx_path
        t0 = time.perf_counter()
        engine_path = write_bytes(out_dir / ENGINE_NAME,
                                  build_engine(trt, onnx_path, self.fp16, self.workspace_mb,
                                               int8))
        meta = {"format": "nnfc-tensorrt", "version": 1, "tensorrt": trt.__version__,
                "fp16": self.fp16, "int8": int8, "workspace_mb": self.workspace_mb,
                "onnx": ONNX_NAME,
                "build_seconds": round(time.perf_counter() - t0, 2)}
        write_bytes(engine_path.with_name(ENGINE_NAME + ".json"),
                    (json.dumps(meta, indent=1) + "\n").encode())
        return engine_path

    def run(self, artifact: str | Path, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run an engine with TensorRT; a TensorRT-ready ``.onnx`` without TensorRT runs with
        onnxruntime (the same file the engine is built from)."""
        artifact = _existing(artifact)
        trt, reason = cuda_runner.tensorrt_status()
        if artifact.suffix == ".onnx" and trt is None:
            from nnfc.targets.onnxruntime import open_session
            return open_session(artifact).run(None, dict(inputs))
        if trt is None:
            raise cuda_runner.TensorRTUnavailable(f"cannot run {artifact.name}: {reason}; "
                                                  f"{cuda_runner.INSTALL_HINT}")
        with cuda_runner.EngineRunner(trt, self._engine_bytes(trt, artifact)) as runner:
            return runner.run(inputs)

    def benchmark(self, artifact: str | Path, runs: int = 50, warmup: int = 10) -> BenchResult:
        """Median/p90 latency (batch 1, host-timed execute + sync, input/output copies
        excluded) and the GPU memory the engine takes (cudaMemGetInfo before/after)."""
        artifact = _existing(artifact)
        trt, reason = cuda_runner.tensorrt_status()
        if trt is None:
            onnx_name = artifact.name if artifact.suffix == ".onnx" else ONNX_NAME
            raise cuda_runner.TensorRTUnavailable(
                f"cannot benchmark on the jetson target here: {reason}. On the Jetson run "
                f"`{trtexec_command(onnx_name, fp16=self.fp16)}` and time it with "
                f"`trtexec --loadEngine={ENGINE_NAME}`; {cuda_runner.INSTALL_HINT}")
        with cuda_runner.EngineRunner(trt, self._engine_bytes(trt, artifact)) as runner:
            times = time_calls(runner.execute, runs, warmup)
            memory = runner.memory_mb
        median, p90 = summarize(times)
        return BenchResult(median, p90, memory, len(times),
                           {"runtime": f"tensorrt {trt.__version__}", "fp16": self.fp16,
                            "memory": "GPU memory taken by engine, context and I/O buffers "
                                      "(cudaMemGetInfo)"})

    def lower_fp16(self, pruned_onnx: bytes, out_dir: Path) -> Path:
        """:meth:`lower` with FP16 on (``nnfc compile --precision fp16``)."""
        half = TensorRTTarget(fp16=True, workspace_mb=self.workspace_mb)
        return half.lower(pruned_onnx, out_dir)

    def _engine_bytes(self, trt, artifact: Path) -> bytes:
        if artifact.suffix == ".onnx":
            return build_engine(trt, artifact, self.fp16, self.workspace_mb,
                                is_qdq(load_onnx(artifact)))
        return artifact.read_bytes()

    # ---- device-profiling hooks (nnfc profile --device-dir / nnfc profile fit) ----------------
    def write_device_profile_script(self, onnx_files: Iterable[str | Path],
                                    out_dir: str | Path) -> Path:
        return device_profiling.write_device_profile_script(
            onnx_files, out_dir, fp16=self.fp16, workspace_mb=self.workspace_mb)

    def parse_device_measurements(self, path: str | Path) -> list[dict]:
        return device_profiling.parse_device_measurements(path)


def _existing(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    if not artifact.is_file():
        raise NnfcError(f"artifact {artifact} does not exist")
    return artifact
