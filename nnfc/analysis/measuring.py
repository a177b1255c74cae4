"""Latency of a generated subnet measured as the target's profile measured its subnets: the
pruned network lowered for the target and timed call by call against the profile's reference
subnet (drift-cancelling; CPU time of the inference thread on a one-thread target), so the
figures sit on the same scale as the profile and its predictor. Subnets the profile itself
measured are not measured again; every new figure is cached per factory."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import onnx

from nnfc.analysis.cache import gates_key
from nnfc.analysis.context import Analysis


class SubnetMeter:
    """``measure(gates)`` -> ``{"latency_ms", "memory_mb", "source"}`` for one subnet."""

    def __init__(self, analysis: Analysis):
        from nnfc.compiler.pipeline import make_target
        from nnfc.compiler.predictor import host_info, unpack_gates
        from nnfc.targets import target_class

        self.a = analysis
        pred = analysis.predictor
        options = pred.meta.get("target_options") or dict(
            target_class(analysis.target).repeatable_options)
        self.target = make_target(analysis.target, options)
        self.can_measure = not analysis.estimated and hasattr(self.target, "runner")
        self.work = Path(tempfile.mkdtemp(prefix="nnfc-analyze-"))
        self.ref = pred.meta.get("reference") or {}
        self.ref_run = None
        self.cache = analysis.cache(f"latency-{analysis.target}")
        host = host_info()
        self.key_prefix = json.dumps([analysis.target, options, host["cpu"], host["cores"],
                                      self.ref.get("sha256"), self.ref.get("latency_ms")])
        self.known: dict[str, float] = {}
        for row in (analysis.measurements or {}).get("rows", []):
            try:
                self.known[gates_key(unpack_gates(row["gates"]))] = float(row["latency_ms"])
            except (KeyError, TypeError, ValueError):
                continue
        self.reused = self.measured = 0

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def _reference(self):
        """A runner of the profile's reference subnet: the kept artifact beside the profile, or
        the same subnet pruned and lowered again (its calibrated latency is the profile's)."""
        if self.ref_run is not None or not self.ref.get("latency_ms"):
            return self.ref_run
        from nnfc.compiler.measure import runner
        from nnfc.compiler.profiler import reference_gates
        from nnfc.passes import apply_gates
        kept = self.a.profile_path.parent / str(self.ref.get("artifact", ""))
        if self.ref.get("artifact") and kept.is_file():
            self.ref_run = runner(self.target, kept)
            return self.ref_run
        sizes = [int(g["size"]) for g in self.a.bundle.gate_layers]
        work = self.work / "reference"
        work.mkdir(exist_ok=True)
        onnx.save_model(apply_gates(self.a.supernet, reference_gates(self.a.gate_names, sizes)),
                        str(work / "model.onnx"))
        self.ref_run = runner(self.target, self.target.lower(work / "model.onnx", work))
        return self.ref_run

    def memory_mb(self, gates: Mapping[str, np.ndarray]) -> float:
        """The pruned graph's exact memory (parameters + largest intermediate tensor)."""
        from nnfc.compiler.graph_stats import graph_stats
        from nnfc.onnx_io import shapes_only
        from nnfc.passes import apply_gates
        return float(graph_stats(shapes_only(apply_gates(self.a.supernet, dict(gates))))
                     .memory_mb)

    def latency_ms(self, gates: Mapping[str, np.ndarray], variant: str = "fp32",
                   build: Callable[[], onnx.ModelProto] | None = None
                   ) -> tuple[float | None, str]:
        """(measured ms or None, where the figure comes from) of the pruned network, or of
        ``build()``'s model (e.g. its int8 version) under the cache name ``variant``."""
        key = gates_key(gates) if variant == "fp32" else f"{variant}:{gates_key(gates)}"
        if key in self.known:
            self.reused += 1
            return self.known[key], "profile"
        if not self.can_measure:
            return None, "not measured (estimated target)"
        cached = self.cache.get(f"{self.key_prefix}|{key}")
        if cached is not None:
            return float(cached), "cache"
        from nnfc.passes import apply_gates
        value = self._measure(build() if build else apply_gates(self.a.supernet, dict(gates)))
        self.cache.put(f"{self.key_prefix}|{key}", value)
        self.measured += 1
        return value, "measured"

    def _measure(self, model: onnx.ModelProto) -> float:
        from nnfc.compiler.measure import clock_for, measure, measure_relative, runner
        work = self.work / "subnet"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        onnx.save_model(model, str(work / "model.onnx"))
        artifact = self.target.lower(work / "model.onnx", work)
        ref_run = self._reference()
        if ref_run is not None:
            m = measure_relative(runner(self.target, artifact), ref_run, runs=5, warmup=1,
                                 rounds=3, clock=clock_for(self.target))
            return float(m.relative * float(self.ref["latency_ms"]))
        return float(measure(self.target, artifact, runs=10, warmup=3, rounds=5).latency_ms)

    def describe(self) -> dict[str, Any]:
        """How the figures were made (for the JSON)."""
        how = ("timed call by call against the profile's reference subnet, CPU time of the "
               "inference thread" if self.ref.get("latency_ms") else "best of 5 rounds' medians")
        return {"method": f"pruned network lowered for {self.a.target}, batch 1, {how}",
                "reused_from_profile": self.reused, "measured_now": self.measured,
                "from_cache": self.cache.hits}
