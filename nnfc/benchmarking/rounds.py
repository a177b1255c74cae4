"""Interleaved measurement rounds of several artifacts on one machine.

Round ``k`` benchmarks every artifact once; baseline/candidate pairs alternate their order
(ABBA...), so a slow spell of the machine hits both sides of a pair alike. A round lasts at least
``min_round_ms`` (more runs for a fast model), so that the rounds spread over enough time for a
burst of load on a shared machine to hit only a few of them. Each round opens a fresh runtime
session (a new target instance): on a busy machine one session can run persistently slower than
another of the same file (where its buffers landed), and a fresh one per round turns that into
round-to-round noise instead of a difference between two artifacts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from nnfc.targets.base import Target


@dataclass
class Subject:
    """One artifact to measure: its file and the target instance that runs it."""

    label: str
    artifact: Path
    make_target: Callable[[], Target]
    target: Target | None = None
    round_medians: list[float] = field(default_factory=list)
    round_p90s: list[float] = field(default_factory=list)
    runtime_memory_mb: list[float] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    runs: int = 0                # timed runs per round (after calibration)


def calibrate(subject: Subject, runs: int, warmup: int, min_round_ms: float) -> int:
    """Timed runs per round for ``subject``: ``runs``, or more so that a round lasts at least
    ``min_round_ms`` (from one short trial round)."""
    subject.target = subject.target or subject.make_target()
    trial = subject.target.benchmark(subject.artifact, runs=3, warmup=warmup)
    if trial.median_ms <= 0:
        return runs
    return max(runs, math.ceil(min_round_ms / trial.median_ms))


def run_rounds(pairs: Sequence[tuple[Subject | None, Subject]], rounds: int, runs: int,
               warmup: int, min_round_ms: float = 0.0,
               progress: Callable[[int], Callable[[], None]] | None = None) -> None:
    """Measure every ``(baseline or None, candidate)`` pair ``rounds`` times, interleaved;
    fills each subject's ``round_medians`` / ``round_p90s`` / ``runtime_memory_mb``. Both sides
    of a pair run the same number of runs per round.

    ``progress(total)`` returns a callback called once per benchmark call."""
    for pair in pairs:
        sides = [s for s in pair if s is not None]
        n = max(calibrate(s, runs, warmup, min_round_ms) for s in sides) if min_round_ms \
            else runs
        for s in sides:
            s.runs = n
    total = rounds * sum(1 + (b is not None) for b, _ in pairs)
    tick = progress(total) if progress else (lambda: None)
    for k in range(rounds):
        for i, (base, cand) in enumerate(pairs):
            order = [s for s in (base, cand) if s is not None]
            if (k + i) % 2:
                order.reverse()
            for subject in order:
                subject.target = subject.make_target()  # a fresh session every round
                result = subject.target.benchmark(subject.artifact, runs=subject.runs,
                                                  warmup=warmup)
                subject.round_medians.append(result.median_ms)
                subject.round_p90s.append(result.p90_ms)
                subject.runtime_memory_mb.append(result.peak_memory_mb)
                subject.details = dict(result.details)
                tick()
