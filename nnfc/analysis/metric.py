"""The task family's metric of one generated subnet (pruned network in ONNX Runtime on the
factory's test split, as ``nnfc eval`` computes it), cached per factory, task, subnet and
number of test samples."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from nnfc.analysis.cache import gates_key
from nnfc.analysis.context import Analysis


class MetricEvaluator:
    """``value(task, gates)`` -> the family's metric (``name``: map50, accuracy, ...)."""

    def __init__(self, analysis: Analysis, samples: int):
        self.a, self.samples = analysis, samples
        self.cache = analysis.cache("metric")
        self.name = analysis.family.metric
        self.evaluated = 0

    def value(self, task: list[str], gates: Mapping[str, np.ndarray], variant: str = "fp32",
              build: Callable[[], "onnx.ModelProto"] | None = None) -> float:
        """The metric of the pruned network, or of ``build()``'s model (e.g. its int8 version)
        cached under ``variant``."""
        key = f"{self.a.weights_key}|{','.join(task)}|{self.samples}|{gates_key(gates)}"
        key += "" if variant == "fp32" else f"|{variant}"
        cached = self.cache.get(key)
        if cached is not None:
            return float(cached)
        import onnxruntime as ort

        from nnfc.passes import apply_gates
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        model = build() if build else apply_gates(self.a.supernet, dict(gates))
        session = ort.InferenceSession(model.SerializeToString(), opts,
                                       providers=["CPUExecutionProvider"])
        in_name = self.a.bundle.input_spec.get("name", "input")
        out_names = [o["name"] for o in self.a.bundle.output_spec]

        def run(x: np.ndarray) -> dict[str, np.ndarray]:
            return dict(zip(out_names, session.run(out_names, {in_name: x})))

        value = float(self.a.family.evaluate(self.a.family.parse_task(task), run, self.samples))
        self.cache.put(key, value)
        self.evaluated += 1
        return value
