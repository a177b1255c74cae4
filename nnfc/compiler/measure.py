"""Latency measurement that holds up on a busy machine: the best of several rounds' medians.

Other processes can only slow a run down, so the smallest of ``rounds`` medians (each over
``runs`` timed runs after ``warmup``; more rounds while the two best still disagree) is the most
repeatable estimate of the model's own latency;
every round's median is kept so the spread (the measurement's own noise) can be reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
