"""``jetson`` target: TensorRT.

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

Profiling on a Jetson (for ``nnfc profile``; wiring by the compiler): write the subnets'
ONNX files into a directory, call :func:`write_device_profile_script` on them, copy the directory
to the Jetson and run ``bash profile_on_jetson.sh`` there; it writes
``trt_measurements.log``. Copy that back and read it with :func:`parse_device_measurements`,
which returns one row per ONNX file (``latency_ms``, ``latency_p90_ms``, ``runtime_memory_mb``...).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import onnx

from nnfc.atomic import write_bytes_atomic
from nnfc.errors import NnfcError
from nnfc.onnx_io import load_onnx
from nnfc.targets.base import BenchResult, summarize, time_calls
from nnfc.targets.static_shapes import with_static_batch

#: opsets TensorRT 10's ONNX parser reads; models outside are converted to DEFAULT_TRT_OPSET
TRT_MIN_OPSET, TRT_MAX_OPSET, DEFAULT_TRT_OPSET = 9, 20, 17
DEFAULT_WORKSPACE_MB = 1024
ONNX_NAME, ENGINE_NAME, RECIPE_NAME = "model.trt.onnx", "model.engine", "build_engine.sh"
PROFILE_SCRIPT, MEASUREMENTS_LOG = "profile_on_jetson.sh", "trt_measurements.log"
INSTALL_HINT = ("TensorRT comes with JetPack on a Jetson (python3-libnvinfer), or `pip install "
                "tensorrt cuda-python` on a machine with an NVIDIA GPU")


class TensorRTUnavailable(NnfcError):
    """TensorRT (the Python package) or a CUDA GPU is missing on this machine."""


def tensorrt_status() -> tuple[Any | None, str]:
    """``(tensorrt module, "")`` when TensorRT and a CUDA GPU are usable, else
    ``(None, reason)``."""
    try:
        import tensorrt as trt
    except ImportError:
        return None, "the tensorrt Python package is not installed"
    try:
        cudart = _cudart()
    except ImportError:
        return None, "cuda-python (needed for GPU buffers) is not installed"
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count < 1:
        return None, "no CUDA GPU is visible"
    return trt, ""


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def trtexec_command(onnx_name: str = ONNX_NAME, engine_name: str = ENGINE_NAME,
                    fp16: bool = False, workspace_mb: int = DEFAULT_WORKSPACE_MB) -> str:
    """The trtexec command that builds the engine from the TensorRT-ready ONNX."""
    parts = ["trtexec", f"--onnx={onnx_name}", f"--saveEngine={engine_name}",
             f"--memPoolSize=workspace:{workspace_mb}"]
    if fp16:
        parts.append("--fp16")
    return " ".join(shlex.quote(p) for p in parts)


def tensorrt_ready_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` TensorRT parses as is: gates folded (all-on if any are still graph
    inputs), batch 1 and static input shapes, opset within TensorRT 10's range, shapes
    inferred; checked with ``onnx.checker``."""
    gate_names = [i.name for i in model.graph.input if i.name.startswith("gate.")]
    if gate_names:
        from nnfc.passes import apply_gates, gate_inputs
        sizes = gate_inputs(model)
        model = apply_gates(model, {k: np.ones(n, np.float32) for k, n in sizes.items()})
    model = with_static_batch(model, 1)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not TRT_MIN_OPSET <= opset <= TRT_MAX_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, DEFAULT_TRT_OPSET)
        except Exception as exc:
            raise NnfcError(f"the model's opset {opset} is outside TensorRT's "
                            f"{TRT_MIN_OPSET}-{TRT_MAX_OPSET} and converting it to "
                            f"{DEFAULT_TRT_OPSET} failed: {exc}") from exc
    foreign = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        raise NnfcError(f"the model uses operator domains TensorRT does not parse: "
                        f"{', '.join(foreign)}")
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise NnfcError(f"the TensorRT-ready ONNX is not valid: {str(exc).splitlines()[0]}") \
            from exc
    return model


def build_engine(trt, onnx_path: Path, fp16: bool = False,
                 workspace_mb: int = DEFAULT_WORKSPACE_MB) -> bytes:
    """Build a serialized engine with the TensorRT 10 Python API (explicit batch is the
    default there, so the network is created with flags 0)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise NnfcError(f"TensorRT cannot parse {onnx_path.name}: {errors or 'unknown error'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb * (1 << 20))
    if fp16:
        if not builder.platform_has_fast_fp16:
            print("nnfc: this GPU has no fast FP16; building the FP16 engine anyway",
                  file=sys.stderr)
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise NnfcError(f"TensorRT could not build an engine from {onnx_path.name} "
                        f"(see the TensorRT messages above)")
    return bytes(serialized)


class TensorRTTarget:
    """TensorRT engines for NVIDIA Jetson (the ``jetson`` target)."""

    name = "jetson"
    artifact_suffix = ".engine"
    runtime = "tensorrt"

    def __init__(self, fp16: bool = False, workspace_mb: int = DEFAULT_WORKSPACE_MB):
        self.fp16 = fp16
        self.workspace_mb = workspace_mb

    def lower(self, pruned_onnx: str | Path, out_dir: str | Path) -> Path:
        """Write ``model.trt.onnx``; build ``model.engine`` where TensorRT and a GPU exist
        (returned), else write ``build_engine.sh``, say so on stderr and return the ONNX."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        model = load_onnx(pruned_onnx)
        ready = tensorrt_ready_onnx(model)
        onnx_path = out_dir / ONNX_NAME
        _write_atomic(onnx_path, ready.SerializeToString())
        trt, reason = tensorrt_status()
        if trt is None:
            recipe = self._write_recipe(out_dir, reason)
            print(f"nnfc: no TensorRT engine built ({reason}); on the Jetson run "
                  f"`bash {recipe.name}` in {out_dir} "
                  f"({trtexec_command(fp16=self.fp16, workspace_mb=self.workspace_mb)})",
                  file=sys.stderr)
            return onnx_path
        t0 = time.perf_counter()
        engine = build_engine(trt, onnx_path, self.fp16, self.workspace_mb)
        engine_path = out_dir / ENGINE_NAME
        _write_atomic(engine_path, engine)
        meta = {"format": "nnfc-tensorrt", "version": 1, "tensorrt": trt.__version__,
                "fp16": self.fp16, "workspace_mb": self.workspace_mb, "onnx": ONNX_NAME,
                "build_seconds": round(time.perf_counter() - t0, 2)}
        _write_atomic(engine_path.with_name(ENGINE_NAME + ".json"),
                      (json.dumps(meta, indent=1) + "\n").encode())
        return engine_path

    def _write_recipe(self, out_dir: Path, reason: str) -> Path:
        command = trtexec_command(fp16=self.fp16, workspace_mb=self.workspace_mb)
        text = ("#!/usr/bin/env bash\n"
                f"# Build the TensorRT engine on the Jetson (written by nnfc: {reason} here).\n"
                "# trtexec ships with JetPack: /usr/src/tensorrt/bin/trtexec\n"
                "set -euo pipefail\n"
                'cd "$(dirname "$0")"\n'
                'PATH="$PATH:/usr/src/tensorrt/bin"\n'
                f"{command}\n")
        path = out_dir / RECIPE_NAME
        _write_atomic(path, text.encode())
        path.chmod(0o755)
        return path

    def run(self, artifact: str | Path, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run an engine with TensorRT; a TensorRT-ready ``.onnx`` without TensorRT runs with
        onnxruntime (the same file the engine is built from)."""
        artifact = _existing(artifact)
        trt, reason = tensorrt_status()
        if artifact.suffix == ".onnx" and trt is None:
            from nnfc.targets.onnxruntime import open_session
            return open_session(artifact).run(None, dict(inputs))
        if trt is None:
            raise TensorRTUnavailable(f"cannot run {artifact.name}: {reason}; {INSTALL_HINT}")
        with _EngineRunner(trt, self._engine_bytes(trt, artifact)) as runner:
            return runner.run(inputs)

    def benchmark(self, artifact: str | Path, runs: int = 50, warmup: int = 10) -> BenchResult:
        """Median/p90 latency (batch 1, host-timed execute + sync, input/output copies
        excluded) and the GPU memory the engine takes (cudaMemGetInfo before/after)."""
        artifact = _existing(artifact)
        trt, reason = tensorrt_status()
        if trt is None:
            onnx_name = artifact.name if artifact.suffix == ".onnx" else ONNX_NAME
            raise TensorRTUnavailable(
                f"cannot benchmark on the jetson target here: {reason}. On the Jetson run "
                f"`{trtexec_command(onnx_name, fp16=self.fp16)}` and time it with "
                f"`trtexec --loadEngine={ENGINE_NAME}`; {INSTALL_HINT}")
        with _EngineRunner(trt, self._engine_bytes(trt, artifact)) as runner:
            times = time_calls(runner.execute, runs, warmup)
            memory = runner.memory_mb
        median, p90 = summarize(times)
        return BenchResult(median, p90, memory, len(times),
                           {"runtime": f"tensorrt {trt.__version__}", "fp16": self.fp16,
                            "memory": "GPU memory taken by engine, context and I/O buffers "
                                      "(cudaMemGetInfo)"})

    def _engine_bytes(self, trt, artifact: Path) -> bytes:
        if artifact.suffix == ".onnx":
            return build_engine(trt, artifact, self.fp16, self.workspace_mb)
        return artifact.read_bytes()


class _EngineRunner:
    """Deserialized engine + execution context + device buffers (TensorRT 10 tensor API)."""

    def __init__(self, trt, engine: bytes):
        self.trt, self.cudart = trt, _cudart()
        self._engine_bytes = engine
        self.buffers: dict[str, tuple[int, np.ndarray]] = {}
        self.memory_mb = 0.0

    def __enter__(self) -> "_EngineRunner":
        trt, cudart = self.trt, self.cudart
        free_before = _check(cudart.cudaMemGetInfo())[0]
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self._engine_bytes)
        if self.engine is None:
            raise NnfcError("TensorRT could not deserialize the engine (built by another "
                            "TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate())
        self.inputs, self.outputs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            host = np.zeros(shape, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
            ptr = _check(cudart.cudaMalloc(max(1, host.nbytes)))
            self.buffers[name] = (ptr, host)
            self.context.set_tensor_address(name, ptr)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(name)
        free_after = _check(cudart.cudaMemGetInfo())[0]
        self.memory_mb = max(0, free_before - free_after) / 1e6
        rng = np.random.default_rng(0)
        self._copy_in({n: rng.standard_normal(self.buffers[n][1].shape) for n in self.inputs})
        return self

    def _copy_in(self, inputs: Mapping[str, np.ndarray]) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        for name in self.inputs:
            ptr, host = self.buffers[name]
            data = np.ascontiguousarray(np.asarray(inputs[name]).astype(host.dtype))
            if data.shape != host.shape:
                raise NnfcError(f"input {name} must have shape {list(host.shape)}, "
                                f"got {list(data.shape)}")
            _check(self.cudart.cudaMemcpy(ptr, data.ctypes.data, data.nbytes, kind))

    def execute(self) -> None:
        if not self.context.execute_async_v3(self.stream):
            raise NnfcError("TensorRT execution failed")
        _check(self.cudart.cudaStreamSynchronize(self.stream))

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        missing = [n for n in self.inputs if n not in inputs]
        if missing:
            raise NnfcError(f"missing input(s) {', '.join(missing)}")
        self._copy_in(inputs)
        self.execute()
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        outs = []
        for name in self.outputs:
            ptr, host = self.buffers[name]
            _check(self.cudart.cudaMemcpy(host.ctypes.data, ptr, host.nbytes, kind))
            outs.append(host.copy())
        return outs

    def __exit__(self, *exc) -> None:
        for ptr, _ in self.buffers.values():
            self.cudart.cudaFree(ptr)
        if getattr(self, "stream", None) is not None:
            self.cudart.cudaStreamDestroy(self.stream)


def _check(result):
    """cuda-python returns ``(err, value...)``; raise on error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise NnfcError(f"CUDA call failed with error {int(err)}")
    return values[0] if len(values) == 1 else tuple(values)


# ---- profiling on the device ---------------------------------------------------------------

def write_device_profile_script(onnx_files: Iterable[str | Path], out_dir: str | Path,
                                fp16: bool = False, iterations: int = 200, warmup_ms: int = 500,
                                workspace_mb: int = DEFAULT_WORKSPACE_MB) -> Path:
    """Write ``out_dir/profile_on_jetson.sh`` that, run on the Jetson from ``out_dir``, builds
    and times an engine for each ONNX file with trtexec and appends the results to
    ``trt_measurements.log`` (read it back with :func:`parse_device_measurements`).

    The ONNX files must be in ``out_dir`` (they are referenced by name) and should be
    TensorRT-ready (see :func:`tensorrt_ready_onnx`). For ``nnfc profile --target jetson``:
    prune each random subnet, write ``tensorrt_ready_onnx(pruned)`` as ``subnet<i>.onnx`` into
    the directory, then call this with those paths."""
    out_dir = Path(out_dir)
    names = []
    for f in onnx_files:
        f = Path(f)
        if f.parent.resolve() != out_dir.resolve():
            raise NnfcError(f"{f} must be inside {out_dir} (the script refers to it by name)")
        names.append(f.name)
    if not names:
        raise NnfcError("no ONNX files to profile")
    precision = "--fp16" if fp16 else ""
    lines = [
        "#!/usr/bin/env bash",
        "# Profile TensorRT engines on the Jetson (written by nnfc). Run from anywhere:",
        f"#   bash {PROFILE_SCRIPT}",
        f"# then copy {MEASUREMENTS_LOG} back and fit with `nnfc profile fit`.",
        "set -uo pipefail",
        'cd "$(dirname "$0")"',
        'PATH="$PATH:/usr/src/tensorrt/bin"',
        "command -v trtexec >/dev/null || { echo 'trtexec not found (JetPack installs it in "
        "/usr/src/tensorrt/bin)' >&2; exit 1; }",
        f"LOG={MEASUREMENTS_LOG}",
        ': > "$LOG"',
        f"MODELS=({' '.join(shlex.quote(n) for n in names)})",
        'i=0',
        'for m in "${MODELS[@]}"; do',
        '  i=$((i+1)); echo "[$i/${#MODELS[@]}] $m" >&2',
        '  engine="${m%.onnx}.engine"',
        '  echo "### nnfc-model: $m" >> "$LOG"',
        f'  trtexec --onnx="$m" --saveEngine="$engine" --memPoolSize=workspace:{workspace_mb} '
        f'{precision} --iterations={iterations} --warmUp={warmup_ms} --duration=0 '
        '>> "$LOG" 2>&1',
        '  echo "### nnfc-exit: $?" >> "$LOG"',
        '  if [ -f "$engine" ]; then echo "### nnfc-engine-bytes: $(stat -c %s "$engine")" '
        '>> "$LOG"; rm -f "$engine"; fi',
        'done',
        'echo "wrote $(pwd)/$LOG" >&2',
        "",
    ]
    path = out_dir / PROFILE_SCRIPT
    _write_atomic(path, "\n".join(lines).encode())
    path.chmod(0o755)
    return path


def prepare_device_profile(models: Iterable[tuple[str, onnx.ModelProto]], out_dir: str | Path,
                           fp16: bool = False, iterations: int = 200) -> Path:
    """Write each ``(name, pruned model)`` as a TensorRT-ready ``out_dir/<name>.onnx`` plus the
    device script (:func:`write_device_profile_script`); returns the script's path.

    The one call ``nnfc profile --target jetson`` needs: e.g. names ``subnet0``, ``subnet1``...
    for the random subnets; the rows :func:`parse_device_measurements` returns carry
    ``model = "<name>.onnx"`` to match them back."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, model in models:
        path = out_dir / f"{name}.onnx"
        _write_atomic(path, tensorrt_ready_onnx(model).SerializeToString())
        files.append(path)
    return write_device_profile_script(files, out_dir, fp16=fp16, iterations=iterations)


_MODEL = re.compile(r"^### nnfc-model: (.+?)\s*$")
_EXIT = re.compile(r"^### nnfc-exit: (\d+)")
_ENGINE = re.compile(r"^### nnfc-engine-bytes: (\d+)")
_LATENCY = re.compile(r"\]\s*Latency: (.*)$|^Latency: (.*)$")
_STAT = re.compile(r"(median|percentile\(90%\)|mean|min|max) = ([0-9.eE+-]+) ms")
_GPU_NOW = re.compile(r"now: CPU (\d+), GPU (\d+) \(MiB\)")


def parse_device_measurements(path: str | Path, strict: bool = True) -> list[dict]:
    """Read ``trt_measurements.log`` written by :func:`write_device_profile_script`.

    Returns one dict per model in order: ``model`` (file name), ``latency_ms`` (trtexec's
    end-to-end median), ``latency_p90_ms``, ``runtime_memory_mb`` (the GPU memory TensorRT
    reports holding, MiB converted to MB; the engine size if no such line), ``engine_mb``.
    A model whose build or timing failed raises NnfcError naming it (``strict``), or is left
    out of the rows (``strict=False``; compare the rows' ``model`` names with what was sent)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise NnfcError(f"cannot read TensorRT measurements {path}: {exc}") from exc
    blocks: list[dict] = []
    for line in text.splitlines():
        if (m := _MODEL.match(line)):
            blocks.append({"model": m.group(1), "lines": []})
        elif blocks:
            blocks[-1]["lines"].append(line)
    if not blocks:
        raise NnfcError(f"{path} holds no '### nnfc-model:' blocks: not written by "
                        f"{PROFILE_SCRIPT}?")
    rows, failed = [], []
    for block in blocks:
        stats, gpu_mib, engine_bytes, code = {}, None, None, None
        for line in block["lines"]:
            if (m := _EXIT.match(line)):
                code = int(m.group(1))
            elif (m := _ENGINE.match(line)):
                engine_bytes = int(m.group(1))
            elif (m := _LATENCY.search(line)):
                stats = dict(_STAT.findall(m.group(1) or m.group(2)))
            elif (m := _GPU_NOW.search(line)):
                gpu_mib = max(gpu_mib or 0, int(m.group(2)))
        if code not in (0, None) or "median" not in stats:
            failed.append(block["model"])
            continue
        engine_mb = engine_bytes / 1e6 if engine_bytes is not None else None
        memory = gpu_mib * (1 << 20) / 1e6 if gpu_mib else engine_mb
        rows.append({"model": block["model"], "latency_ms": float(stats["median"]),
                     "latency_p90_ms": float(stats.get("percentile(90%)", stats["median"])),
                     "latency_mean_ms": float(stats.get("mean", stats["median"])),
                     "runtime_memory_mb": memory, "engine_mb": engine_mb})
    if failed and strict:
        raise NnfcError(f"TensorRT build or timing failed for {len(failed)} model(s) in "
                        f"{path}: {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}")
    return rows


def _write_atomic(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data)


def _existing(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    if not artifact.is_file():
        raise NnfcError(f"artifact {artifact} does not exist")
    return artifact
