"""Trend of several saved runs (``nnfc bench --trend a.json b.json ... --plot trend.png``):
latency (median of the rounds, bars from the best round to the median p90), memory and the
evaluation metric of each artifact, run after run."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from nnfc.benchmarking.outputs import check_replaceable
from nnfc.errors import NnfcError

PNG_MARKER = "nnfc bench --plot"
#: how a metric is named on an axis (others: their own name)
METRIC_NAMES = {"map50": "mAP@0.5", "accuracy": "accuracy"}


def metric_label(table: dict[str, list[dict[str, Any] | None]]) -> str:
    """The evaluation panel's axis label: the metric(s) the runs carry, by name, in percent."""
    names = sorted({e["eval"]["metric"] for entries in table.values() for e in entries
                    if e and e.get("eval") and e["eval"].get("metric")})
    shown = ", ".join(METRIC_NAMES.get(n, n) for n in names) or "evaluation metric"
    return f"{shown} (%)"


def trend_table(runs: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any] | None]]:
    """artifact name -> one entry per run (None where a run lacks it), in the runs' order."""
    names: list[str] = []
    for run in runs:
        names += [e["name"] for e in run["artifacts"] if e["name"] not in names]
    return {n: [next((e for e in r["artifacts"] if e["name"] == n), None) for r in runs]
            for n in names}


def run_label(run: dict[str, Any], i: int) -> str:
    return run.get("label") or Path(run.get("_path", f"run{i}")).stem


def trend_text(runs: Sequence[dict[str, Any]]) -> str:
    from nnfc.units import format_mb, format_ms
    table = trend_table(runs)
    lines = []
    for name, entries in table.items():
        lines.append(name)
        for i, (run, e) in enumerate(zip(runs, entries)):
            if e is None:
                lines.append(f"  {run_label(run, i):24s} -")
                continue
            ev = e.get("eval")
            lines.append(f"  {run_label(run, i):24s} {format_ms(e['latency_ms']['median']):>10s}"
                         f" {format_mb(e['memory_mb']):>10s}"
                         + (f"  {ev['metric']} {100 * ev['value']:.1f}%" if ev else ""))
    return "\n".join(lines)


def plot_trend(runs: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write the trend PNG (needs matplotlib: ``pip install 'nnfc[plot]'``)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise NnfcError("the trend plot needs matplotlib: pip install 'nnfc[plot]'") from exc
    from nnfc.atomic import atomic_file
    path = Path(path)
    check_replaceable(path, PNG_MARKER.encode(), "plot")
    table = trend_table(runs)
    has_eval = any(e and e.get("eval") for entries in table.values() for e in entries)
    panels = 3 if has_eval else 2
    fig, axes = plt.subplots(panels, 1, figsize=(max(7.0, 1.0 + 0.7 * len(runs)), 2.6 * panels + 0.6),
                             sharex=True, squeeze=False)
    axes = axes[:, 0]
    x = list(range(len(runs)))
    for name, entries in table.items():
        idx = [i for i, e in zip(x, entries) if e is not None]
        es = [e for e in entries if e is not None]
        med = [e["latency_ms"]["median"] for e in es]
        lo = [m - e["latency_ms"].get("best", m) for m, e in zip(med, es)]
        hi = [max(0.0, e["latency_ms"].get("p90", m) - m) for m, e in zip(med, es)]
        line = axes[0].errorbar(idx, med, yerr=[lo, hi], marker="o", capsize=3, label=name)
        axes[1].plot(idx, [e["memory_mb"] for e in es], marker="o", color=line[0].get_color())
        if has_eval:
            ev = [(i, e["eval"]["value"] * 100) for i, e in zip(idx, es) if e.get("eval")]
            if ev:
                axes[2].plot(*zip(*ev), marker="o", color=line[0].get_color())
    axes[0].set_ylabel("latency (ms, batch 1)")
    axes[1].set_ylabel("memory (MB)")
    if has_eval:
        axes[2].set_ylabel(metric_label(table))
    axes[-1].set_xticks(x, [run_label(r, i) for i, r in enumerate(runs)], rotation=30,
                        ha="right")
    axes[-1].set_xlabel("saved run (oldest first)")
    axes[0].set_title("nnfc bench trend\nlatency: median of the rounds, bars from the best round "
                      "to the p90", fontsize="medium")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize="small", loc="lower center",
               ncol=min(3, len(table)))
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * ((len(table) - 1) // 3), 1, 1))
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": PNG_MARKER})
    plt.close(fig)
    return path
