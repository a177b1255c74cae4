"""Human strings for one artifact's figures and changes, shared by the terminal, Markdown and
JUnit reports."""

from __future__ import annotations

from typing import Any

from nnfc.units import format_mb, format_ms

#: metric key -> (name in reports, field of the artifact entry)
METRICS = {"lat": "latency", "mem": "memory", "acc": "eval"}


def metric_label(key: str, entry: dict[str, Any]) -> str:
    if key == "acc":
        return (entry.get("eval") or {}).get("metric", "accuracy")
    return METRICS[key]


def format_value(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if key == "lat":
        return format_ms(value)
    if key == "mem":
        return format_mb(value)
    return f"{100 * value:.1f}%"


def format_change(change: dict[str, Any] | None) -> str:
    """``+12.3% [+10.1, +14.0]`` (latency, 99 % CI), ``+0.4%`` (memory), ``-1.5 pt`` (metric)."""
    if not change or change.get("change") is None:
        return "no baseline" if not change else "-"
    c = change["change"]
    if change["metric"] == "acc":
        return f"{c:+.1f} pt"
    text = f"{100 * c:+.1f}%"
    if change.get("ci"):
        low, high = change["ci"]
        text += f" [{100 * low:+.1f}, {100 * high:+.1f}]"
    return text


def verdict(change: dict[str, Any] | None) -> str:
    if not change or change.get("change") is None:
        return "-"
    if change["regression"]:
        return "REGRESSION"
    if change["significant"] and _better(change):
        return "improved"
    return "ok"


def _better(change: dict[str, Any]) -> bool:
    return change["change"] > 0 if change["metric"] == "acc" else change["change"] < 0


def entry_values(entry: dict[str, Any]) -> dict[str, float | None]:
    return {"lat": entry["latency_ms"]["median"], "mem": entry.get("memory_mb"),
            "acc": (entry.get("eval") or {}).get("value")}


def changes_by_metric(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    comp = entry.get("comparison") or {}
    return {c["metric"]: c for c in comp.get("changes", [])}


def threshold_text(key: str, threshold: float) -> str:
    return f"{threshold:g} pt" if key == "acc" else f"{100 * threshold:g}%"
