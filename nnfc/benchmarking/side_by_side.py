"""Artifacts of one task side by side in one ``nnfc bench`` run (e.g. the same subnet as fp32
and int8, or two budgets): each against the first artifact of its task and target, from the
interleaved rounds (median of the per-round latency ratios, so load that hits a round hits
both) and, with ``--eval``, the metric difference in points."""

from __future__ import annotations

from typing import Any

import numpy as np


def precision_of(report: dict | None) -> str | None:
    """The precision a compile output was built as (None for a plain file)."""
    if report is None:
        return None
    return (report.get("precision") or {}).get("built", "fp32")


def side_by_side(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per entry with an earlier entry of the same task and target: ``name``,
    ``against``, ``speedup`` (the other's latency / this one's, median over rounds),
    ``metric_points`` (this metric - the other's, x 100) where both were evaluated."""
    rows = []
    firsts: dict[tuple, dict] = {}
    for e in entries:
        key = (tuple(e.get("task") or ()), e["target"])
        if not e.get("task"):
            continue
        first = firsts.setdefault(key, e)
        if first is e:
            continue
        mine, theirs = e["latency_ms"]["rounds"], first["latency_ms"]["rounds"]
        n = min(len(mine), len(theirs))
        ratios = [theirs[i] / mine[i] for i in range(n) if mine[i] > 0]
        row = {"name": e["name"], "against": first["name"],
               "precision": e.get("precision"), "against_precision": first.get("precision"),
               "speedup": float(np.median(ratios)) if ratios else None,
               "speedup_range": [float(min(ratios)), float(max(ratios))] if ratios else None,
               "metric_points": None}
        if e.get("eval") and first.get("eval") and e["eval"]["metric"] == first["eval"]["metric"]:
            row["metric"] = e["eval"]["metric"]
            row["metric_points"] = (e["eval"]["value"] - first["eval"]["value"]) * 100.0
        rows.append(row)
    return rows


def side_by_side_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Human lines of :func:`side_by_side`."""
    lines = []
    for r in rows:
        tag = (f" ({r['precision']} vs {r['against_precision']})"
               if r.get("precision") and r["precision"] != r.get("against_precision") else "")
        speed = (f"{r['speedup']:.2f}x the speed (rounds {r['speedup_range'][0]:.2f}-"
                 f"{r['speedup_range'][1]:.2f}x)" if r["speedup"] else "speed -")
        metric = (f", {r['metric']} {r['metric_points']:+.2f} points"
                  if r["metric_points"] is not None else "")
        lines.append(f"{r['name']} vs {r['against']}{tag}: {speed}{metric}")
    return lines
