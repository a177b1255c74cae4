"""The actual activation ratio of the generated subnets against the requested limit, for the
seen and the unseen tasks (the paper's Fig. 11): assembler calls only, no pruning."""

from __future__ import annotations

from typing import Any

import numpy as np

from nnfc.analysis.context import Analysis
from nnfc.analysis.plotting import SEEN_COLOUR, UNSEEN_COLOUR, PALETTE, pyplot, save_png

DEFAULT_LIMITS = tuple(float(x) for x in np.round(np.geomspace(0.01, 1.0, 25), 4))


def compute(a: Analysis, limits=DEFAULT_LIMITS) -> dict[str, Any]:
    """``{"limits", "tasks": [{"task", "seen", "ratios"}], "seen": {"mean", "min", "max"},
    "unseen": {...}}`` — ratio = active gate entries / all gate entries."""
    limits = [float(x) for x in limits]
    rows = []
    for task, seen in a.all_tasks():
        g = a.gates(task, limits)
        total = sum(v.shape[1] for v in g.values())
        ratios = sum(v.sum(axis=1) for v in g.values()) / total
        rows.append({"task": task, "seen": seen, "ratios": [float(r) for r in ratios]})
    out: dict[str, Any] = {"limits": limits, "tasks": rows}
    for group, flag in (("seen", True), ("unseen", False)):
        r = np.array([t["ratios"] for t in rows if t["seen"] == flag])
        if len(r):
            out[group] = {"tasks": len(r), "mean": r.mean(0), "min": r.min(0), "max": r.max(0)}
    over = max(max(r / l for r, l in zip(t["ratios"], limits)) for t in rows)
    out["max_ratio_over_limit"] = float(over)
    return out


def plot(data: dict[str, Any], path) -> None:
    plt = pyplot()
    limits = np.array(data["limits"])
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for group, colour, marker in (("seen", SEEN_COLOUR, "o"), ("unseen", UNSEEN_COLOUR, "s")):
        if group not in data:
            continue
        g = data[group]
        ax.fill_between(limits, g["min"], g["max"], color=colour, alpha=0.15,
                        label=f"{group} tasks: range over {g['tasks']} tasks")
        ax.plot(limits, g["mean"], marker=marker, ms=4, color=colour,
                label=f"{group} tasks: mean")
    ax.plot(limits, limits, "--", color=PALETTE["black"], lw=1, label="actual ratio = limit")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("activation limit given to the assembler (fraction, log scale)")
    ax.set_ylabel("actual activation ratio (active gate entries / all, log scale)")
    ax.set_title("Actual activation ratio vs limit (seen and unseen tasks)")
    ax.legend(loc="upper left")
    save_png(fig, path)


def summary(data: dict[str, Any]) -> str:
    top = {g: float(np.max(data[g]["mean"])) for g in ("seen", "unseen") if g in data}
    return ("activation: mean actual ratio at most "
            + ", ".join(f"{g} {v:.1%}" for g, v in top.items())
            + f"; never above the limit by more than {data['max_ratio_over_limit']:.2f}x")
