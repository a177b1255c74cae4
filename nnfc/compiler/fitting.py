"""Fit and save a target's predictor from profile measurements (made here or on the device)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import onnx

from nnfc.bundle import Bundle
from nnfc.compiler.cost_structure import analyse
from nnfc.compiler.graph_stats import graph_stats
from nnfc.compiler.predictor import Predictor, fit_predictor, plot_accuracy, unpack_gates
from nnfc.compiler.profiler import bundle_fingerprint
from nnfc.errors import NnfcError


def fill_graph_memory(bundle: Bundle, rows: list[dict[str, Any]], supernet=None) -> None:
    """Add the pruned graph's exact memory to rows measured elsewhere (latency only)."""
    from nnfc.passes import apply_gates
    supernet = supernet or onnx.load(str(bundle.supernet_path))
    for row in rows:
        if "graph_memory_mb" not in row:
            stats = graph_stats(apply_gates(supernet, unpack_gates(row["gates"])))
            row.update(graph_memory_mb=stats.memory_mb, params=stats.params, flops=stats.flops)


def fit_and_save(bundle: Bundle, target: str, measurements: dict[str, Any], out: Path,
                 plot: Path | None = None, measured_locally: bool = True,
                 target_options: dict | None = None) -> tuple[Predictor, Path | None]:
    """Fit latency/memory on held-out-scored rows, save the predictor JSON (and PNG)."""
    rows = measurements["rows"]
    want = bundle_fingerprint(bundle)["supernet_sha256"]
    have = measurements.get("bundle", {}).get("supernet_sha256")
    if have and have != want:
        raise NnfcError("these measurements were made for another factory "
                        f"(supernet sha256 {have[:12]}…, this one is {want[:12]}…)")
    supernet = onnx.load(str(bundle.supernet_path))
    fill_graph_memory(bundle, rows, supernet)
    structure = analyse(supernet)
    meta = {"bundle": bundle_fingerprint(bundle), "host": measurements.get("host", {}),
            "measured_locally": measured_locally,
            "target_options": dict(target_options or measurements.get("target_options") or {}),
            "runtime": measurements.get("runtime") or measurements.get("host", {}).get(
                "onnxruntime"),
            "profile": {"runs": measurements.get("runs"), "warmup": measurements.get("warmup"),
                        "rounds": measurements.get("rounds"),
                        "seed": measurements.get("seed"), "measurements": str(
                            measurements.get("_path", ""))},
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    predictor, held = fit_predictor(structure, target, rows, meta=meta)
    predictor.save(out)
    png = plot_accuracy(held, predictor.meta["accuracy"], plot,
                        f"{target} predictor, {len(rows)} subnets") if plot else None
    return predictor, png
