"""The trade-off a user picks a budget from: for limits on a grid, the generated subnet's actual
activation ratio, predicted and measured latency, memory and task metric on the target, and the
budget each point needs (the smallest ``--lat`` / ``--mem`` under which compile's search accepts
it: the prediction with the profile's safety margin)."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from nnfc.analysis.context import Analysis
from nnfc.analysis.plotting import PALETTE, clustered_labels, percent, pyplot, save_png

DEFAULT_LIMITS = (0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0)


def compute(a: Analysis, task: list[str], limits: Iterable[float] = DEFAULT_LIMITS,
            samples: int = 50, progress: Callable[[Iterable], Iterable] = lambda x: x,
            precisions: Iterable[str] = ("fp32",)) -> dict[str, Any]:
    """``{"task", "target", "metric", "points": [{"limit", "activation_ratio", "latency_ms",
    "memory_mb", "metric", "predicted_latency_ms", "predicted_memory_mb", "budget_ms",
    "budget_mb", "latency_source"}], "latency_span", "by_precision": {"int8": [{"limit",
    "latency_ms", "metric"}]}, ...}``; subnets several limits share are measured and evaluated
    once; ``precisions`` beyond fp32 (int8) add a curve each (:mod:`nnfc.analysis.quantized`)."""
    from nnfc.analysis.cache import gates_key
    from nnfc.analysis.measuring import SubnetMeter
    from nnfc.analysis.metric import MetricEvaluator
    from nnfc.compiler.assembler_runtime import select
    from nnfc.evaluation import activation_ratio

    task = a.task(task)
    limits = [float(x) for x in limits]
    gates = a.gates(task, limits)
    pred_lat, pred_mem = a.predictor.predict(gates)
    lat_margin, mem_margin = a.predictor.margins
    meter, metric = SubnetMeter(a), MetricEvaluator(a, samples)
    extra = [p for p in precisions if p != "fp32"]
    builder: list = []  # the int8 builder, made when a subnet is not cached yet
    done: dict[str, dict[str, Any]] = {}
    points = []
    by_precision: dict[str, list[dict[str, Any]]] = {p: [] for p in extra}
    try:
        for i in progress(range(len(limits))):
            g = select(gates, i)
            key = gates_key(g)
            if key not in done:
                lat, source = meter.latency_ms(g)
                done[key] = {"latency_ms": lat, "latency_source": source,
                             "memory_mb": meter.memory_mb(g), "metric": metric.value(task, g)}
            points.append({"limit": limits[i], "activation_ratio": activation_ratio(g),
                           **done[key],
                           "predicted_latency_ms": float(pred_lat[i]),
                           "predicted_memory_mb": float(pred_mem[i]),
                           "budget_ms": float(pred_lat[i]) * (1 + lat_margin),
                           "budget_mb": float(pred_mem[i]) * (1 + mem_margin)})
            for p in extra:
                if f"{p}:{key}" not in done:
                    build = _memo(lambda g=g: _int8(a, task, builder).model(g))
                    lat, source = meter.latency_ms(g, p, build)
                    done[f"{p}:{key}"] = {"latency_ms": lat, "latency_source": source,
                                          "metric": metric.value(task, g, p, build)}
                by_precision[p].append({"limit": limits[i], **done[f"{p}:{key}"]})
    except BaseException:
        meter.close()
        raise
    ones = {n: np.ones(int(g["size"]), np.float32)
            for n, g in zip(a.gate_names, a.bundle.gate_layers)}
    try:
        supernet_ms, supernet_source = meter.latency_ms(ones) if meter.can_measure else (None, "")
    finally:
        meter.close()
    measured = [p["latency_ms"] for p in points if p["latency_ms"] is not None]
    span = max(measured) / min(measured) if measured else None
    return {"task": task, "target": a.target, "metric_name": metric.name, "samples": samples,
            "points": points, "distinct_subnets": len([k for k in done if ":" not in k]),
            "by_precision": by_precision,
            "int8": builder[0].describe() if builder else None,
            "supernet_latency_ms": supernet_ms, "supernet_latency_source": supernet_source,
            "latency_span": span, "margins": {"latency": lat_margin, "memory": mem_margin},
            "measurement": meter.describe(), "metric_evaluations": metric.evaluated,
            "estimated": a.estimated, "profile": str(a.profile_path)}


def plot(data: dict[str, Any], path) -> None:
    """2×2: metric vs measured latency (the frontier); latency, memory and activation vs limit."""
    plt = pyplot()
    pts = data["points"]
    limits = np.array([p["limit"] for p in pts])
    metric = np.array([p["metric"] for p in pts])
    lat = np.array([np.nan if p["latency_ms"] is None else p["latency_ms"] for p in pts])
    name, task = data["metric_name"], ",".join(data["task"])
    fig, ax = plt.subplots(2, 2, figsize=(12, 9))
    a0 = ax[0, 0]
    measured = np.isfinite(lat).any()
    x = lat if measured else np.array([p["predicted_latency_ms"] for p in pts])
    order = np.argsort(x)
    front = _pareto(x[order], metric[order])
    a0.plot(x[order][front], metric[order][front], "-", color=PALETTE["blue"], lw=2,
            label="frontier: best metric for the latency")
    a0.plot(x, metric, "o", color=PALETTE["blue"], ms=7, label="generated subnet at a limit (fp32)")
    for prec, rows in (data.get("by_precision") or {}).items():
        px = np.array([np.nan if r["latency_ms"] is None else r["latency_ms"] for r in rows])
        py = np.array([r["metric"] for r in rows])
        o = np.argsort(px)
        a0.plot(px[o], py[o], ":s", color=PALETTE["orange"], ms=6,
                label=f"{prec} (onnxruntime QDQ) of the same subnets")
    if data.get("supernet_latency_ms"):
        a0.axvline(data["supernet_latency_ms"], ls="--", color=PALETTE["black"], lw=1,
                   label=f"full supernet: {data['supernet_latency_ms']:.2f} ms")
    (x0, x1), (y0, y1) = a0.get_xlim(), a0.get_ylim()
    for (xi, yi), text in clustered_labels(x[order], metric[order],
                                           [f"{100 * v:.3g}" for v in limits[order]], x1 - x0,
                                           y1 - y0, near=0.08, join=", ", suffix=" %"):
        a0.annotate(text, (xi, yi), textcoords="offset points", xytext=(4, -15), fontsize=9)
    a0.set_xlabel(("measured" if measured else "predicted") + " latency (ms, batch 1)")
    a0.set_ylabel(f"{name} (test split, {data['samples']} samples)")
    a0.set_title(f"{task} on {data['target']}: {name} vs latency (labels: limits, left to right)")
    a0.legend(loc="center right")
    a1 = ax[0, 1]
    a1.plot(limits, lat, "-o", color=PALETTE["blue"], label="measured")
    a1.plot(limits, [p["predicted_latency_ms"] for p in pts], "--s", color=PALETTE["orange"],
            mfc="none", label="predicted")
    for prec, rows in (data.get("by_precision") or {}).items():
        a1.plot(limits, [np.nan if r["latency_ms"] is None else r["latency_ms"] for r in rows],
                "-D", color=PALETTE["green"], ms=5, label=f"measured, {prec}")
    a1.plot(limits, [p["budget_ms"] for p in pts], ":^", color=PALETTE["vermillion"],
            label=f"budget it needs (+{data['margins']['latency']:.1%} margin)")
    if data.get("supernet_latency_ms"):
        a1.axhline(data["supernet_latency_ms"], ls="--", color=PALETTE["black"], lw=1,
                   label="full supernet (measured)")
    a1.set_xscale("log")
    a1.set_xlabel("activation limit (log scale)")
    a1.set_ylabel("latency (ms, batch 1)")
    a1.set_title("latency per limit")
    a1.legend(loc="upper left", bbox_to_anchor=(0.0, 0.94))  # below the supernet's line
    a2 = ax[1, 0]
    a2.plot(limits, [p["memory_mb"] for p in pts], "-o", color=PALETTE["green"],
            label="pruned graph (exact)")
    a2.plot(limits, [p["budget_mb"] for p in pts], ":^", color=PALETTE["vermillion"],
            label="budget it needs (prediction + margin)")
    a2.set_xscale("log")
    a2.set_xlabel("activation limit (log scale)")
    a2.set_ylabel("memory (MB: parameters + largest tensor)")
    a2.set_title("memory per limit")
    a2.legend()
    a3 = ax[1, 1]
    a3.plot(limits, [p["activation_ratio"] for p in pts], "-o", color=PALETTE["purple"],
            label="actual activation ratio")
    a3.plot(limits, limits, "--", color=PALETTE["black"], lw=1, label="ratio = limit")
    a3.set_xscale("log")
    a3.set_yscale("log")
    a3.set_xlabel("activation limit (log scale)")
    a3.set_ylabel("active gate entries / all (log scale)")
    a3.set_title("how much of the supernet each limit uses")
    a3.legend()
    for axis in (a1, a2, a3):
        axis.set_xticks(limits[_spread(limits)])
        axis.set_xticklabels([percent(v) for v in limits[_spread(limits)]], rotation=45)
        axis.minorticks_off()
    save_png(fig, path)


def _spread(limits: np.ndarray) -> list[int]:
    """Indices of limits far enough apart on a log axis to label without overlap."""
    keep, last = [], None
    for i, v in enumerate(limits):
        if last is None or np.log10(v / last) > 0.12:
            keep.append(i)
            last = v
    return keep


def _memo(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` called once, its result reused (the latency and the metric share one model)."""
    box: list = []
    return lambda: box[0] if box else (box.append(fn()) or box[0])


def _int8(a: Analysis, task: list[str], holder: list):
    """The analysis' int8 builder (calibration drawn once)."""
    if not holder:
        from nnfc.analysis.quantized import Int8Builder
        holder.append(Int8Builder(a, task))
    return holder[0]


def _pareto(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices (into x sorted ascending) of the points no faster point beats on ``y``."""
    keep, best = [], -np.inf
    for i, yi in enumerate(y):
        if np.isfinite(x[i]) and yi > best:
            keep.append(i)
            best = yi
    return np.array(keep, dtype=int)


def summary(data: dict[str, Any]) -> str:
    span = data["latency_span"]
    text = (f"frontier of {','.join(data['task'])} on {data['target']}: {len(data['points'])} "
            f"limits, {data['distinct_subnets']} distinct subnets"
            + (f", measured latency spans {span:.2f}x" if span else ""))
    for prec, rows in (data.get("by_precision") or {}).items():
        pairs = [(r["latency_ms"] / p["latency_ms"], r["metric"] - p["metric"])
                 for r, p in zip(rows, data["points"]) if r["latency_ms"] and p["latency_ms"]]
        if pairs:
            text += (f"; {prec}: {np.median([q for q, _ in pairs]):.2f}x the fp32 latency "
                     f"(median), metric {np.median([d for _, d in pairs]):+.3f}")
    return text
