"""The ``jetson`` target (TensorRT), in focused modules: :mod:`.lowering` (TensorRT-ready ONNX,
engine build, trtexec recipe), :mod:`.cuda_runner` (engines run with TensorRT + cuda-python),
:mod:`.device_profiling` (script + log parser for profiling on the Jetson) and :mod:`.target`
(the :class:`TensorRTTarget` tying them together)."""

from nnfc.targets.tensorrt.cuda_runner import TensorRTUnavailable, tensorrt_status
from nnfc.targets.tensorrt.target import TensorRTTarget

__all__ = ["TensorRTTarget", "TensorRTUnavailable", "tensorrt_status"]
