"""A baseline's model from torch to a measured artifact, exactly as ``nnfc compile`` treats its own:
export to ONNX (dynamic batch, input ``input``, the family's named outputs), lower for the target, measure
with the profile's settings, check the artifact against the ONNX model, score the test split,
and write ``model.onnx``, the artifact, ``report.json`` and ``summary.txt`` atomically.

The report has compile's schema (``request``, ``activation_ratio``, ``params``, ``flops``,
``predicted``, ``measured``, ``within_budget``, ``artifact``, ``timings_s`` ...) plus ``method``,
``accuracy`` and ``customization`` (what the method did and how long it took).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx
import torch
from torch import nn

from nnfc.atomic import write_json_atomic
from nnfc.compiler.graph_stats import graph_stats
from nnfc.compiler.pipeline import _measured, report_provenance
from nnfc.onnx_io import save_onnx
from nnfc.outputs import output_dir
from nnfc.units import format_mb, format_ms

INPUT_NAME = "input"

logging.getLogger("torch.onnx").setLevel(logging.ERROR)


class _Plain(nn.Module):
    """The network with every gate on (``gates=None``), as a one-input module returning its
    outputs in order."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(x)
        return tuple(out.values()) if isinstance(out, dict) else (out,)


def export_plain(net: nn.Module, path: str | os.PathLike, image_shape: tuple[int, ...],
                 output_names: list[str], opset: int = 18) -> onnx.ModelProto:
    """Export ``net`` (eval mode, no gate inputs) with torch's dynamo exporter, dynamic batch,
    one named graph output per network output."""
    from nnfc.training.export import batch_dim, export_dynamo
    model = export_dynamo(_Plain(net), (torch.randn(2, *image_shape),), ({0: batch_dim()},),
                          [INPUT_NAME], output_names, opset)
    save_onnx(model, path)
    return model


def onnx_runner(model_path: str | os.PathLike):
    """images -> {output name: array} through ONNX Runtime on the CPU."""
    from nnfc.targets.onnxruntime import open_session
    session = open_session(Path(model_path).read_bytes())
    names = [o.name for o in session.get_outputs()]
    in_name = session.get_inputs()[0].name
    return lambda x: dict(zip(names, session.run(names, {in_name: x})))


def finish(ctx, *, out: Path, net: nn.Module, gates: Mapping[str, np.ndarray],
           lat_ms: float | None, mem_mb: float | None, method: str,
           customization: dict[str, Any],
           extra_files: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Export, lower, measure, verify and score ``net``; write the output directory atomically
    and return the report."""
    import time

    from nnfc.baselines import task_data

    bundle, family, target, predictor = ctx.bundle, ctx.family, ctx.target, ctx.predictor
    image_shape, timings = ctx.image_shape, {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    with output_dir(out, "baseline", inputs=[bundle.root]) as tmp:
        model = export_plain(net, tmp / "model.onnx", image_shape,
                             task_data.output_names(family), ctx.cfg.export.opset)
        lap("export")
        artifact = target.lower(tmp / "model.onnx", tmp)
        lap("lower")
        bench = measure_like_compile(ctx, artifact, out)
        lap("measure")
        run = onnx_runner(tmp / "model.onnx")
        diff = artifact_diff(target, artifact, run, image_shape)
        accuracy = task_data.task_metric(family, ctx.task, run)
        lap("evaluate")
        stats = graph_stats(model)
        parts = {**customization.get("parts_s", {}),
                 "export+lower+measure": round(sum(timings[k] for k in
                                                   ("export", "lower", "measure")), 3)}
        customization = {**customization, "parts_s": parts,
                         "seconds": round(sum(parts.values()), 3)}
        for name, data in (extra_files or {}).items():
            write_json_atomic(tmp / name, data)
        lat_pred, mem_pred = predictor.predict({k: np.asarray(v, np.float32)
                                                for k, v in gates.items()})
        report = build_report(method=method, request=ctx.request(lat_ms, mem_mb), bundle=bundle,
                              gates=gates,
                              predicted=(float(lat_pred[0] if lat_pred.ndim else lat_pred),
                                         float(mem_pred[0] if mem_pred.ndim else mem_pred)),
                              bench=bench, stats=stats, diff=diff, artifact=artifact.name,
                              accuracy=accuracy, customization=customization,
                              timings=timings, target=target, predictor=predictor)
        write_json_atomic(tmp / "report.json", report)
        (tmp / "summary.txt").write_text(summary(report) + "\n", encoding="utf-8")
    return report


def measure_like_compile(ctx, artifact: Path, out: Path):
    """Measure ``artifact`` exactly as ``nnfc compile`` measures its own (drift-cancelled against
    the profile's reference subnet where it can); a target that cannot measure here gives the
    reason as a string."""
    from nnfc.compiler.measured_rounds import Meter
    from nnfc.compiler.pipeline import CompileRequest
    req = CompileRequest(task=list(ctx.task), target=ctx.target_name, out=out)
    return Meter(ctx.target, ctx.predictor, req, ctx.profile_dir)(artifact)


def artifact_diff(target, artifact: Path, run, image_shape: tuple[int, ...]) -> float:
    """Largest |difference| between the target artifact and the ONNX model on one input, over
    every output (in order; checked by :func:`nnfc.equivalence.compare_outputs`)."""
    from nnfc.equivalence import compare_outputs, max_diff
    x = np.random.default_rng(0).standard_normal((1, *image_shape)).astype(np.float32)
    want = run(x)
    gots = target.run(artifact, {INPUT_NAME: x})
    return max_diff(compare_outputs(list(want), gots, list(want.values()),
                                    want_is="the ONNX model's"))


def build_report(*, method, request, bundle, gates, predicted, bench, stats, diff, artifact,
                 accuracy, customization, timings, target, predictor) -> dict[str, Any]:
    """compile's report schema plus ``method``, ``accuracy`` and ``customization``."""
    total = sum(np.asarray(g).size for g in gates.values())
    active = sum(float(np.sum(g)) for g in gates.values())
    measured = not isinstance(bench, str)
    mem = stats.memory_mb
    lat = bench.latency_ms if measured else predicted[0]
    lat_b, mem_b = request.get("lat_ms"), request.get("mem_mb")
    within = (lat_b is None or lat <= lat_b) and (mem_b is None or mem <= mem_b)
    return {
        "method": method,
        "request": request,
        "limit": None,
        "activation_ratio": active / total if total else 1.0,
        "params": stats.params,
        "flops": stats.flops,
        "predicted": {"latency_ms": predicted[0], "memory_mb": predicted[1]},
        "measured": _measured(bench, mem),
        "within_budget": bool(within) if measured else None,
        "within_budget_predicted": bool(within) if not measured else None,
        "max_abs_diff_vs_supernet": None,
        "max_abs_diff_artifact_vs_onnx": diff,
        "artifact": artifact,
        "accuracy": accuracy,
        "customization": customization,
        "timings_s": dict(timings),
        "memory_definition": "parameter bytes + largest intermediate tensor of model.onnx "
                             "(MB = 1e6 bytes), as nnfc compile reports it",
        **report_provenance(bundle, predictor, bench, target),
    }


def summary(report: dict[str, Any]) -> str:
    """A few human lines about a baseline report."""
    req, meas, pred = report["request"], report["measured"], report["predicted"]
    acc, cust = report["accuracy"], report["customization"]
    budget = ", ".join(x for x in (
        f"latency ≤ {format_ms(req['lat_ms'])}" if req.get("lat_ms") else "",
        f"memory ≤ {format_mb(req['mem_mb'])}" if req.get("mem_mb") else "") if x) or "none"
    lat = (f"measured {format_ms(meas['latency_ms']['median'])}"
           if meas.get("latency_ms") else "not measured here")
    verdict = {True: "within budget", False: "OVER BUDGET", None: "not measured"}[
        report["within_budget"]]
    if report["method"] == "retrain":
        verdict += " (Retrain ignores the budget)"
    return "\n".join([
        f"{report['method']}: task {{{', '.join(req['task'])}}} on {req['target']}, budget "
        f"{budget}",
        f"  {report['activation_ratio']:.1%} of the gated channels, "
        f"{report['params'] / 1e6:.3f} M params, {report['flops'] / 1e6:.1f} MFLOPs",
        f"  latency  predicted {format_ms(pred['latency_ms'])}, {lat}",
        f"  memory   predicted {format_mb(pred['memory_mb'])}, "
        f"measured {format_mb(meas['memory_mb'])}",
        f"  {verdict}; {acc['metric']} {acc['value']:.1%} on {acc['samples']} test samples",
        f"  customization {cust['seconds']:.1f}s ("
        + ", ".join(f"{k} {v:.1f}s" for k, v in cust.get("parts_s", {}).items()) + ")",
    ])
