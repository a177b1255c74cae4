"""The int8 version of a generated subnet for the frontier: the pruned network quantized by
onnxruntime's static QDQ quantizer as ``nnfc compile --precision int8`` does (per-channel int8
weights, calibrated on the factory's own samples of the task, the layers that write the
network's outputs kept float), without compile's accuracy control (which may return more layers
to float): the curve shows what plain int8 costs and buys per limit."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import onnx

from nnfc.analysis.context import Analysis
from nnfc.errors import NnfcError

#: precisions the frontier draws
FRONTIER_PRECISIONS = ("fp32", "int8")


def parse_precisions(text: str | None, target) -> list[str]:
    """``"fp32,int8"`` -> the list, checked against what the frontier and ``target`` build."""
    from nnfc.precision.stage import supported
    wanted = [p.strip() for p in (text or "fp32").split(",") if p.strip()]
    for p in wanted:
        if p not in FRONTIER_PRECISIONS:
            raise NnfcError(f"--precision: the frontier draws {', '.join(FRONTIER_PRECISIONS)}, "
                            f"not {p!r}")
        if p not in supported(target):
            raise NnfcError(f"--precision: the {target.name} target does not build {p}; it "
                            f"builds {', '.join(supported(target))}")
        if p == "int8" and getattr(target, "lower_precision", None) is not None:
            raise NnfcError(f"--precision int8: the frontier quantizes with onnxruntime; the "
                            f"{target.name} target quantizes its own way (use nnfc compile "
                            "--precision int8 there)")
    if "fp32" not in wanted:
        wanted.insert(0, "fp32")
    return wanted


class Int8Builder:
    """``model(gates)`` -> the QDQ int8 ONNX model of the pruned network."""

    def __init__(self, a: Analysis, task: list[str]):
        from nnfc.precision.calibration import calibration_for
        self.a = a
        self.calibration = calibration_for(a.bundle, task)
        self.symmetric = False

    def model(self, gates: Mapping[str, np.ndarray]) -> onnx.ModelProto:
        from nnfc.passes import apply_gates
        from nnfc.precision import ort_quantize as oq
        model = oq.prepared(apply_gates(self.a.supernet, dict(gates)))
        raw = [o["name"] for o in self.a.bundle.output_spec]
        heads = oq.output_producers(model, raw)
        nodes = [n for n in oq.network_nodes(model, raw) if n not in heads]
        return oq.quantize_qdq(model, self.calibration, nodes, symmetric=self.symmetric)

    def describe(self) -> dict:
        return {"calibration": self.calibration.describe(),
                "method": "onnxruntime static QDQ, per-channel int8 weights, uint8 activations; "
                          "output layers float; no accuracy control"}
