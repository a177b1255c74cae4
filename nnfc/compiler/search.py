"""Budget search (the paper's Algorithm 1) and its batched equivalent.

Both walk the same grid of activation limits (``start``, ``start+step``, …, ≤ 1) and return the
gates of the last limit before the first one whose predicted latency or memory breaks the budget.
``algorithm1`` asks the assembler once per limit, as the paper does; ``batched_search`` asks it
once for the whole grid, predicts every candidate in one vectorised step and locates the first
violation, so it returns exactly the same gates in one call (with every prediction in hand, a
bisection would only risk missing an earlier violation). ``best_search`` (opt-in) looks past the
first violation for the largest activation that fits anywhere on the grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from nnfc.compiler.assembler_runtime import Assembler, select
from nnfc.compiler.predictor import Predictor
from nnfc.errors import NnfcError
from nnfc.units import format_mb, format_ms


@dataclass
class SearchResult:
    """The chosen limit, its gates (1-D arrays) and the predicted figures."""

    limit: float
    gates: dict[str, np.ndarray]
    latency_ms: float
    memory_mb: float
    activation_ratio: float
    assembler_calls: int
    candidates: int
    method: str
    trace: list[dict] = field(default_factory=list)


def limit_grid(start: float = 0.01, step: float = 0.01) -> np.ndarray:
    """The candidate limits start, start+step, …, up to and including 1.0."""
    if not (0 < start <= 1 and 0 < step <= 1):
        raise NnfcError("search start and step must lie in (0, 1]")
    n = int(np.floor((1.0 - start) / step + 1e-9)) + 1
    return np.round(start + step * np.arange(n), 10)


def _fits(lat, mem, lat_budget, mem_budget, margins):
    ok = np.ones(np.shape(lat), dtype=bool)
    if lat_budget is not None:
        ok &= np.asarray(lat) * (1.0 + margins[0]) <= lat_budget
    if mem_budget is not None:
        ok &= np.asarray(mem) * (1.0 + margins[1]) <= mem_budget
    return ok


def algorithm1(assembler: Assembler, predictor: Predictor, task: Sequence[float],
               lat_ms: float | None, mem_mb: float | None, start: float = 0.01,
               step: float = 0.01, margins: tuple[float, float] = (0.0, 0.0)) -> SearchResult:
    """Algorithm 1: raise the limit from ``start`` by ``step``; stop at the first violation."""
    best = None
    calls = 0
    trace = []
    for limit in limit_grid(start, step):
        gates = select(assembler.gates(task, [limit]), 0)
        calls += 1
        lat, mem = (float(v[0]) for v in predictor.predict(gates))
        ok = bool(_fits(lat, mem, lat_ms, mem_mb, margins))
        trace.append({"limit": float(limit), "latency_ms": lat, "memory_mb": mem, "fits": ok})
        if not ok:
            break
        best = (float(limit), gates, lat, mem)
    if best is None:
        raise infeasible_error(assembler, predictor, task, lat_ms, mem_mb, start, step, margins)
    limit, gates, lat, mem = best
    ratio = float(predictor.structure.activation_ratio(gates)[0])
    return SearchResult(limit, gates, lat, mem, ratio, calls, calls, "algorithm1", trace)


def candidates(assembler: Assembler, predictor: Predictor, task: Sequence[float],
               start: float = 0.01, step: float = 0.01):
    """Every grid limit's gates (one batched assembler call) and predictions."""
    limits = limit_grid(start, step)
    gates = assembler.gates(task, limits)
    lat, mem = predictor.predict(gates)
    return limits, gates, lat, mem


def batched_search(assembler: Assembler, predictor: Predictor, task: Sequence[float],
                   lat_ms: float | None, mem_mb: float | None, start: float = 0.01,
                   step: float = 0.01, margins: tuple[float, float] = (0.0, 0.0)
                   ) -> SearchResult:
    """Algorithm 1's answer from one batched assembler call over the whole limit grid."""
    limits, gates, lat, mem = candidates(assembler, predictor, task, start, step)
    ok = _fits(lat, mem, lat_ms, mem_mb, margins)
    first_bad = int(np.argmin(ok)) if not ok.all() else len(limits)
    if first_bad == 0:
        raise _infeasible(predictor, lat, mem, lat_ms, mem_mb, limits, margins)
    i = first_bad - 1
    chosen = select(gates, i)
    trace = [{"limit": float(l), "latency_ms": float(a), "memory_mb": float(b), "fits": bool(f)}
             for l, a, b, f in zip(limits, lat, mem, ok)]
    return SearchResult(float(limits[i]), chosen, float(lat[i]), float(mem[i]),
                        float(predictor.structure.activation_ratio(chosen)[0]), 1, len(limits),
                        "batched", trace)


def best_search(assembler: Assembler, predictor: Predictor, task: Sequence[float],
                lat_ms: float | None, mem_mb: float | None, start: float = 0.01,
                step: float = 0.01, margins: tuple[float, float] = (0.0, 0.0)) -> SearchResult:
    """The grid candidate with the largest activation ratio among *all* that fit — unlike
    Algorithm 1 it looks past the first violation (latency need not grow with the limit:
    channel alignment can make a larger subnet faster)."""
    limits, gates, lat, mem = candidates(assembler, predictor, task, start, step)
    ok = _fits(lat, mem, lat_ms, mem_mb, margins)
    if not ok.any():
        raise _infeasible(predictor, lat, mem, lat_ms, mem_mb, limits, margins)
    ratio = predictor.structure.activation_ratio(gates)
    i = int(np.flatnonzero(ok)[np.lexsort((limits[ok], ratio[ok]))[-1]])
    chosen = select(gates, i)
    trace = [{"limit": float(l), "latency_ms": float(a), "memory_mb": float(b), "fits": bool(f)}
             for l, a, b, f in zip(limits, lat, mem, ok)]
    return SearchResult(float(limits[i]), chosen, float(lat[i]), float(mem[i]), float(ratio[i]),
                        1, len(limits), "best", trace)


SEARCHES = {"batched": batched_search, "algorithm1": algorithm1, "best": best_search}


def infeasible_error(assembler, predictor, task, lat_ms, mem_mb, start=0.01, step=0.01,
                     margins=(0.0, 0.0)) -> NnfcError:
    """The error for a budget no grid limit meets (predicts the whole grid once)."""
    limits, _, lat, mem = candidates(assembler, predictor, task, start, step)
    return _infeasible(predictor, lat, mem, lat_ms, mem_mb, limits, margins)


def _infeasible(predictor, lat, mem, lat_ms, mem_mb, limits, margins) -> NnfcError:
    """One clear message with the smallest latency/memory this task can reach on the target."""
    lat, mem = np.asarray(lat), np.asarray(mem)
    parts = []
    if lat_ms is not None and lat[0] * (1 + margins[0]) > lat_ms:
        parts.append(f"latency {format_ms(lat_ms)} (smallest achievable: "
                     f"{format_ms(float(lat.min()))})")
    if mem_mb is not None and mem[0] * (1 + margins[1]) > mem_mb:
        parts.append(f"memory {format_mb(mem_mb)} (smallest achievable: "
                     f"{format_mb(float(mem.min()))})")
    if not parts:  # the first limit fits each budget alone, but not both together
        parts.append(f"latency {format_ms(lat_ms)} together with memory {format_mb(mem_mb)} "
                     f"(smallest achievable: {format_ms(float(lat.min()))}, "
                     f"{format_mb(float(mem.min()))})")
    ok = _fits(lat, mem, lat_ms, mem_mb, margins)
    hint = ("; a larger limit fits (try --search best)" if ok.any() else
            "; relax the budget or use a smaller factory")
    margin = (f" with the predictor's safety margin ({margins[0]:.0%} latency, "
              f"{margins[1]:.0%} memory)" if any(margins) else "")
    return NnfcError(f"infeasible budget for this task on {predictor.target}: "
                     f"{' and '.join(parts)} at limit {limits[0]:.0%}{margin}{hint}")
