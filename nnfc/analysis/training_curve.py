"""The task metric against training epochs (the paper's Fig. 12) from the bundle's training
history (``manifest.json`` → ``training.metrics.history``): the loss of every epoch, and the
periodic evaluation the trainer records (per seen/unseen group and limit) where the bundle has one;
otherwise the final evaluation (``training.metrics``) at the last epoch, and a note saying so."""

from __future__ import annotations

import math
from typing import Any

from nnfc.analysis.context import Analysis
from nnfc.analysis.plotting import SEEN_COLOUR, UNSEEN_COLOUR, PALETTE, percent, pyplot, \
    save_png

NO_PERIODIC = ("this bundle's training history has no periodic evaluation (only the loss per "
               "epoch and the final evaluation); retrain with a current nnfc to record one")
LINESTYLES = ("-", "--", ":", "-.")


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(float(x)) else None


def _group_values(block: Any, metric: str) -> dict[float, float]:
    """``{"<limit>": value or {metric: value, ...}}`` -> {limit: value} (malformed entries
    skipped: the manifest is someone else's file)."""
    out = {}
    if not isinstance(block, dict):
        return out
    for limit, v in block.items():
        lim = _number(_float(limit))
        val = _number(v.get(metric, v.get("value"))) if isinstance(v, dict) else _number(v)
        if lim is not None and val is not None:
            out[lim] = val
    return out


def _float(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def compute(a: Analysis) -> dict[str, Any]:
    """``{"metric", "epochs", "loss", "ratio_minus_limit", "evaluations": [{"epoch", "group",
    "limit", "value"}], "periodic": bool, "note"}``."""
    training = a.bundle.manifest.get("training")
    training = training if isinstance(training, dict) else {}
    final = training.get("metrics") if isinstance(training.get("metrics"), dict) else {}
    metric = str(final.get("metric") or getattr(a.family, "metric", "metric"))
    history = final.get("history", training.get("history"))
    history = history if isinstance(history, list) else []
    epochs, loss, gap, evals = [], [], [], []
    for row in history:
        if not isinstance(row, dict) or _number(row.get("epoch")) is None:
            continue
        e = _number(row["epoch"])
        if _number(row.get("loss")) is not None:
            epochs.append(e)
            loss.append(_number(row["loss"]))
            gap.append(_number(row.get("ratio_minus_limit")))
        ev = row.get("eval")
        if isinstance(ev, dict):
            m = str(ev.get("metric") or metric)
            for group in ("seen", "unseen"):
                for lim, val in _group_values(ev.get(group), m).items():
                    evals.append({"epoch": e, "group": group, "limit": lim, "value": val})
    periodic = len({r["epoch"] for r in evals}) >= 2
    note = None
    if not periodic:
        note = NO_PERIODIC
        last = max(epochs) if epochs else None
        if last is not None:
            for group in ("seen", "unseen"):
                for lim, val in _group_values(final.get(group), metric).items():
                    evals.append({"epoch": last, "group": group, "limit": lim, "value": val})
    return {"metric": metric, "epochs": epochs, "loss": loss, "ratio_minus_limit": gap,
            "evaluations": evals, "periodic": periodic, "note": note}


def plot(data: dict[str, Any], path) -> None:
    plt = pyplot()
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(12, 5.6))
    if data["epochs"]:
        a0.plot(data["epochs"], data["loss"], "-", color=PALETTE["black"],
                label="training loss (task + gate)")
        a0.legend(loc="upper right")
    a0.set_xlabel("epoch")
    if data["loss"] and min(data["loss"]) > 0:  # the first epochs' loss dwarfs the rest
        from matplotlib.ticker import FuncFormatter
        a0.set_yscale("log")
        for axis in (a0.yaxis.set_major_formatter, a0.yaxis.set_minor_formatter):
            axis(FuncFormatter(lambda v, _: f"{v:g}"))
    a0.set_ylabel("loss (per-epoch mean, log scale)" if a0.get_yscale() == "log"
                  else "loss (per-epoch mean)")
    a0.set_title("training loss")
    evals = data["evaluations"]
    limits = sorted({r["limit"] for r in evals})
    for group, colour in (("seen", SEEN_COLOUR), ("unseen", UNSEEN_COLOUR)):
        for k, lim in enumerate(limits):
            pts = sorted((r["epoch"], r["value"]) for r in evals
                         if r["group"] == group and r["limit"] == lim)
            if pts:
                a1.plot([p[0] for p in pts], [p[1] for p in pts],
                        LINESTYLES[k % len(LINESTYLES)], marker="osD^v"[k % 5],
                        ms=5 if data["periodic"] else 9, color=colour,
                        mfc="none" if group == "unseen" else colour,
                        label=f"{group} tasks, limit {percent(lim)}")
    a1.set_xlabel("epoch")
    a1.set_ylabel(f"{data['metric']} (training's own evaluation)")
    title = f"{data['metric']} vs epoch"
    if not data["periodic"]:
        title += " (final evaluation only)"
        if data["epochs"]:
            a1.set_xlim(0, max(data["epochs"]) * 1.05)
    a1.set_title(title)
    if evals:  # below the axes: never over a curve or the final evaluation's markers
        a1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=9)
    else:
        a1.text(0.5, 0.5, "no evaluation recorded", ha="center", va="center",
                transform=a1.transAxes)
    save_png(fig, path)


def summary(data: dict[str, Any]) -> str:
    if data["note"]:
        return data["note"]
    return (f"training: {data['metric']} at {len({r['epoch'] for r in data['evaluations']})} "
            f"evaluated epochs of {len(data['epochs'])}")
