"""A target that builds every artifact in one reduced precision: ``PrecisionTarget(target,
"int8", calibration)``. ``nnfc profile --precision int8`` measures its subnets through it (a
profile per target and precision), and a compile whose profile is the precision's own measures
its rounds through it, so the search and the measured rounds see int8 latencies.

Its ``lower`` builds the subnet as the precision stage's first attempt does (onnxruntime QDQ
with the output layers float, lowered by the target; the target's own path where it has one)
and keeps the float lowering beside it (:meth:`float_artifact`) for the equivalence check.
Everything else (``run``, ``benchmark``, ``runner``, options...) is the wrapped target's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


from nnfc.onnx_io import load_onnx
from nnfc.precision.calibration import Calibration

FLOAT_DIR = ".float"


class PrecisionTarget:
    """``target`` building ``precision`` artifacts (see the module doc)."""

    def __init__(self, target, precision: str, calibration: Calibration,
                 raw_outputs: list[str], keep_float_lowering: bool = True):
        self.inner, self.precision, self.calibration = target, precision, calibration
        self.raw_outputs = list(raw_outputs)
        self.keep_float_lowering = keep_float_lowering
        self._floats: dict[Path, Path] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def lower(self, pruned_onnx, out_dir) -> Path:
        from nnfc.precision import ort_quantize as oq
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        model = oq.prepared(load_onnx(pruned_onnx))
        own = getattr(self.inner, "lower_precision", None)
        if self.precision == "fp16":
            art = Path(own(model, "fp16", out_dir) if own else
                       self.inner.lower_fp16(model.SerializeToString(), out_dir))
        elif own is not None:
            art = Path(own(model, "int8", out_dir, calibration=self.calibration,
                           raw_outputs=self.raw_outputs))
        else:
            heads = oq.output_producers(model, self.raw_outputs)
            nodes = [n for n in oq.network_nodes(model, self.raw_outputs) if n not in heads]
            q = oq.quantize_qdq(model, self.calibration, nodes,
                                symmetric=bool(getattr(type(self.inner), "int8_symmetric",
                                                       False)))
            art = Path(self.inner.lower(q.SerializeToString(), out_dir))
        if self.keep_float_lowering:
            self._floats[art] = Path(self.inner.lower(model.SerializeToString(),
                                                      out_dir / FLOAT_DIR))
        return art

    def float_artifact(self, artifact: Path) -> Path | None:
        """The float lowering made beside ``artifact`` (None where none was kept)."""
        return self._floats.get(Path(artifact))


#: calibration samples of a subnet measured for its latency only (profiling): the ranges do
#: not change the kernels, and calibrating 64 samples per subnet took 20 s on a loaded machine
LATENCY_CALIBRATION_SAMPLES = 8


def precision_target(target, precision: str, bundle, task: list[str] | None = None,
                     keep_float_lowering: bool = True, samples: int | None = None):
    """``target`` as is for fp32, else wrapped to build ``precision``; calibrated on the task
    (profiling: the factory's first seen task, a latency needs no particular one)."""
    if precision == "fp32":
        return target
    from nnfc.precision.calibration import DEFAULT_SAMPLES, calibration_for
    task = list(task or bundle.tasks("seen")[0])
    return PrecisionTarget(target, precision,
                           calibration_for(bundle, task, samples or DEFAULT_SAMPLES),
                           [o["name"] for o in bundle.output_spec], keep_float_lowering)


__all__ = ["PrecisionTarget", "precision_target"]
