"""Running TensorRT engines from Python: is TensorRT + a CUDA GPU usable here, and the
deserialized engine with its execution context and device buffers (TensorRT 10 tensor API,
cuda-python for memory and streams)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from nnfc.errors import NnfcError

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


class EngineRunner:
    """Deserialized engine + execution context + device buffers (TensorRT 10 tensor API)."""

    def __init__(self, trt, engine: bytes):
        self.trt, self.cudart = trt, _cudart()
        self._engine_bytes = engine
        self.buffers: dict[str, tuple[int, np.ndarray]] = {}
        self.memory_mb = 0.0

    def __enter__(self) -> "EngineRunner":
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


