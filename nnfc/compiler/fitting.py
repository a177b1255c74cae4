"""Fit and save a target's predictor from profile measurements (made here or on the device)."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

import onnx

from nnfc.bundle import Bundle
from nnfc.compiler.cost_analysis import analyse
from nnfc.compiler.graph_stats import graph_stats
from nnfc.compiler.predictor import Predictor, fit_predictor, plot_accuracy, unpack_gates
from nnfc.compiler.profiler import (apply_reference, bundle_fingerprint, same_factory,
                                    supernet_sha256)
from nnfc.atomic import atomic_file, copy_file_atomic
from nnfc.errors import NnfcError
from nnfc.onnx_io import shapes_only
from nnfc.trust import plain_name, verified_member


def fill_graph_memory(bundle: Bundle, rows: list[dict[str, Any]], supernet=None) -> None:
    """Add the pruned graph's exact memory to rows measured elsewhere (latency only)."""
    from nnfc.passes import apply_gates
    supernet = supernet or onnx.load(str(bundle.supernet_path))
    for row in rows:
        if "graph_memory_mb" not in row:
            stats = graph_stats(shapes_only(apply_gates(supernet, unpack_gates(row["gates"]))))
            row.update(graph_memory_mb=stats.memory_mb, params=stats.params, flops=stats.flops)


def fit_and_save(bundle: Bundle, target: str, measurements: dict[str, Any], out: Path,
                 plot: Path | None = None, measured_locally: bool = True,
                 target_options: dict | None = None, precision: str = "fp32"
                 ) -> tuple[Predictor, Path | None]:
    """Fit latency/memory on held-out-scored rows, save the predictor JSON (and PNG);
    ``precision``: what the measured subnets were built as (a profile per precision)."""
    rows = measurements["rows"]
    if not same_factory(measurements.get("bundle", {}), bundle):
        have = measurements["bundle"].get("supernet_sha256", "")
        raise NnfcError("these measurements were made for another factory "
                        f"(supernet sha256 {have[:12]}…, this one is "
                        f"{supernet_sha256(bundle)[:12]}…, another architecture)")
    supernet = onnx.load(str(bundle.supernet_path))
    fill_graph_memory(bundle, rows, supernet)
    if precision != "fp32":  # memory as that precision stores the weights
        from nnfc.precision import memory_mb
        rows = [dict(r, graph_memory_mb=memory_mb(r["param_bytes"], r["peak_tensor_bytes"],
                                                  precision))
                if "param_bytes" in r and "peak_tensor_bytes" in r else r for r in rows]
    reference = _place_reference(measurements, out)
    structure = analyse(supernet)
    meta = {"bundle": bundle_fingerprint(bundle), "host": measurements.get("host", {}),
            "measured_locally": measured_locally,
            "target_options": dict(target_options or measurements.get("target_options") or {}),
            "precision": precision,
            "runtime": measurements.get("runtime") or measurements.get("host", {}).get(
                "onnxruntime"),
            "profile": {"runs": measurements.get("runs"), "warmup": measurements.get("warmup"),
                        "rounds": measurements.get("rounds"),
                        "seed": measurements.get("seed"), "measurements": str(
                            measurements.get("_path", ""))},
            "reference": reference,
            "load": _load_summary(rows),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if reference is None:
        meta.pop("reference")
    # one BLAS thread: on a busy machine OpenBLAS's spinning worker threads made this fit take
    # over 7 minutes instead of 19 s (154 detection subnets, 2 cores at load 7)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1):
        predictor, held = fit_predictor(structure, target, rows, meta=meta)
    if not plot:
        predictor.save(out)
        return predictor, None
    # predictor and plot replaced together: the plot is drawn to a temp file first and renamed
    # only once the predictor is in place (a full disk leaves the old pair, never a mix)
    with atomic_file(plot, suffix=".png") as tmp:
        plot_accuracy(held, predictor.meta["accuracy"], tmp,
                      f"{target} {precision} predictor, {len(rows)} subnets")
        predictor.save(out)
    return predictor, Path(plot)


def _place_reference(measurements: dict[str, Any], out: Path) -> dict[str, Any] | None:
    """Recalibrate relative rows and put the reference artifact beside the predictor (compile
    times artifacts against it); its description for the predictor's meta, or None."""
    ref = measurements.get("reference")
    if not ref:
        return None
    apply_reference(measurements)
    src_dir = Path(measurements.get("_path") or out).parent
    where = f"{measurements.get('_path') or out}: reference.artifact"
    name = plain_name(ref.get("artifact"), where)
    dst = out.parent / name
    if not os.path.lexists(dst) and os.path.lexists(src_dir / name):
        copy_file_atomic(verified_member(src_dir, name, ref.get("sha256"), where), dst)
    return {k: ref[k] for k in ("artifact", "sha256", "latency_ms", "gates") if k in ref}


def _load_summary(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The 1-minute load average while the rows were measured (min / median / max)."""
    load = [float(r["load"]) for r in rows if r.get("load") is not None]
    if not load:
        return None
    import numpy as np
    return {"min": min(load), "median": float(np.median(load)), "max": max(load)}
