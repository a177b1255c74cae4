"""Latency measurement that holds up on a busy machine: the best of several rounds' medians.

Other processes can only slow a run down, so the smallest of ``rounds`` medians (each over
``runs`` timed runs after ``warmup``; more rounds while the two best still disagree) is the most
repeatable estimate of the model's own latency;
every round's median is kept so the spread (the measurement's own noise) can be reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median
from typing import Callable
from pathlib import Path


@dataclass
class Measurement:
    latency_ms: float            # min over rounds of the round median
    p90_ms: float                # p90 of the chosen round
    runtime_memory_mb: float     # what the runtime reports (max over rounds)
    round_medians: list[float] = field(default_factory=list)
    runs: int = 0
    details: dict = field(default_factory=dict)

    @property
    def spread(self) -> float:
        """(max - min) / min of the round medians: the measurement's own noise."""
        lo = min(self.round_medians)
        return (max(self.round_medians) - lo) / lo if lo > 0 else 0.0


def measure(target, artifact: str | Path, runs: int = 10, warmup: int = 3, rounds: int = 10,
            max_rounds: int | None = None, tolerance: float = 0.01) -> Measurement:
    """Benchmark ``artifact`` on ``target`` ``rounds`` times and keep the best median; while the
    two best medians still differ by more than ``tolerance``, add rounds (up to ``max_rounds``,
    default 3 x rounds) — the minimum has then converged."""
    rounds = max(1, rounds)
    max_rounds = max(rounds, max_rounds if max_rounds is not None else 3 * rounds)
    results = [target.benchmark(artifact, runs=runs, warmup=warmup) for _ in range(rounds)]
    while len(results) < max_rounds and len(results) >= 2:
        best_two = sorted(r.median_ms for r in results)[:2]
        if best_two[1] <= best_two[0] * (1 + tolerance):
            break
        results.append(target.benchmark(artifact, runs=runs, warmup=warmup))
    best = min(results, key=lambda r: r.median_ms)
    return Measurement(best.median_ms, best.p90_ms, max(r.peak_memory_mb for r in results),
                       [r.median_ms for r in results], sum(r.runs for r in results),
                       dict(best.details))


# ---- drift-cancelling measurement: time the candidate interleaved with a fixed reference -----
def runner(target, artifact: str | Path):
    """A zero-argument callable running one inference of ``artifact`` on ``target`` (its
    ``runner``), or None for targets that can only benchmark whole blocks."""
    make = getattr(target, "runner", None)
    return make(artifact) if make is not None else None


@dataclass
class RelativeMeasurement:
    """A candidate timed pairwise with a reference model, run for run, call after call.

    ``relative`` (candidate / reference, median over rounds of each round's ratio of medians)
    is what a changing load leaves alone: anything that slows both alike cancels. It becomes
    milliseconds with the reference's calibrated latency."""

    relative: float
    candidate_ms: float          # median of the candidate's runs in the kept rounds (raw)
    reference_ms: float          # median of the reference's runs in the kept rounds (raw)
    round_ratios: list[float] = field(default_factory=list)
    outlier_rounds: int = 0
    runs: int = 0
    load: float = 0.0            # 1-minute load average when the measurement ended

    @property
    def spread(self) -> float:
        """(max - min) / median of the kept round ratios."""
        r = sorted(self.round_ratios)
        return (r[-1] - r[0]) / r[len(r) // 2] if r else 0.0


def clock_for(target):
    """The clock that times one inference on ``target``: the calling thread's CPU time where
    the runtime computes in that thread alone (one intra-op thread), which other processes
    cannot inflate by taking the core away; else wall time."""
    import time
    return time.thread_time if getattr(target, "threads", None) == 1 else time.perf_counter


def clock_name(clock) -> str:
    import time
    return "CPU time of the inference thread" if clock is time.thread_time else "wall time"


def measure_relative(candidate, reference, runs: int = 10, warmup: int = 3, rounds: int = 5,
                     max_extra: int | None = None, outlier: float = 0.03,
                     clock=None, settled: Callable[[float, float], bool] | None = None
                     ) -> RelativeMeasurement:
    """Time ``candidate()`` and ``reference()`` alternately (``runs`` pairs per round, after
    ``warmup`` pairs) with ``clock`` (default: wall time); each round gives
    median(candidate) / median(reference). A round whose ratio is more than ``outlier``
    (relative) and 3 median absolute deviations away from the median ratio is re-measured (at
    most ``max_extra`` extra rounds, default ``rounds``).

    ``settled(ratio, spread)``: asked after each round from the second on (before ``rounds``
    are done); True ends the measurement there — the caller's decision no longer depends on
    the rounds left (e.g. the figure lies far from every budget it is compared with)."""
    import os
    import time

    import numpy as np

    clock = clock or time.perf_counter
    for _ in range(warmup):
        reference()
        candidate()
    max_extra = rounds if max_extra is None else max_extra

    def one_round():
        c, r = [], []
        for k in range(max(1, runs)):
            # alternate which goes first so neither always follows the other's cache state
            first, second, tf, ts = ((reference, candidate, r, c) if k % 2 == 0
                                     else (candidate, reference, c, r))
            t0 = clock()
            first()
            t1 = clock()
            second()
            t2 = clock()
            tf.append((t1 - t0) * 1e3)
            ts.append((t2 - t1) * 1e3)
        return float(np.median(c)), float(np.median(r))

    rows = [one_round()]
    while len(rows) < max(1, rounds):
        rows.append(one_round())
        if settled is not None and len(rows) < rounds:
            ratios = [c / r for c, r in rows]
            mid = median(ratios)
            if settled(mid, (max(ratios) - min(ratios)) / mid):
                break
    outliers = 0
    while True:
        ratios = np.array([c / r for c, r in rows])
        med = float(np.median(ratios))
        dev = np.abs(ratios / med - 1.0)
        mad = float(np.median(dev))
        bad = np.flatnonzero((dev > outlier) & (dev > 3.0 * max(mad, 1e-3)))
        if len(bad) == 0 or outliers >= max_extra:
            break
        worst = int(bad[np.argmax(dev[bad])])
        rows.pop(worst)
        outliers += 1
        rows.append(one_round())
    ratios = [c / r for c, r in rows]
    return RelativeMeasurement(float(np.median(ratios)), float(np.median([c for c, _ in rows])),
                               float(np.median([r for _, r in rows])), ratios, outliers,
                               len(rows) * max(1, runs), os.getloadavg()[0])
