"""Accuracy-controlled quantization: the quantized artifact's metric against the float one's.

As NNCF's ``quantize_with_accuracy_control``: build the quantized artifact, measure the
family's metric on the target's runtime next to the float artifact of the same subnet; while
the drop exceeds ``max_drop`` points, return the next-noisiest layer (ranked once, by
:func:`nnfc.precision.ort_quantize.sensitivity`) to float, rebuild and measure again, at most
``max_reverts`` times. Every attempt is kept for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

#: layers returned to float at most before giving up (NNCF's max_num_iterations is similar)
DEFAULT_MAX_REVERTS = 8


@dataclass
class Attempt:
    """One quantized build: the layers kept float, its artifact and metric."""

    kept_float: list[str]
    artifact: Path
    metric: float

    def entry(self, float_metric: float) -> dict:
        return {"kept_float": list(self.kept_float), "metric": round(self.metric, 4),
                "drop_points": round(drop_points(float_metric, self.metric), 2)}


@dataclass
class Controlled:
    """What the control ended with: the last attempt, whether it holds the bound, all of them."""

    float_metric: float
    max_drop: float
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def best(self) -> Attempt:
        """The attempt within the bound with the fewest float layers, else the last one."""
        ok = [a for a in self.attempts if self.within(a)]
        return ok[0] if ok else self.attempts[-1]

    def within(self, attempt: Attempt | None = None) -> bool:
        a = attempt or self.best
        return drop_points(self.float_metric, a.metric) <= self.max_drop + 1e-9


def drop_points(float_metric: float, quantized_metric: float) -> float:
    """How many points (metric x 100) the quantized artifact loses against the float one."""
    return (float_metric - quantized_metric) * 100.0


def control(build: Callable[[Sequence[str]], Path], metric: Callable[[Path], float],
            float_metric: float,
            rank: Callable[[], list[tuple[tuple[str, ...], float]]] | None,
            max_drop: float, max_reverts: int = DEFAULT_MAX_REVERTS,
            progress: Callable[[str], None] = lambda msg: None) -> Controlled:
    """Build with nothing kept float; then, while above ``max_drop``, keep the next layer of
    ``rank()`` float (called once, only when needed) and build again. ``rank`` None: one
    build, no fallback (a precision or a target without layer-wise control)."""
    result = Controlled(float_metric, max_drop)
    kept: list[str] = []
    artifact = build(kept)
    result.attempts.append(Attempt([], artifact, metric(artifact)))
    if result.within(result.attempts[-1]) or rank is None:
        return result
    ranking = rank()
    for group, _ in ranking[:max_reverts]:
        kept = kept + [g for g in group if g not in kept]
        progress(f"metric {drop_points(float_metric, result.attempts[-1].metric):.2f} points "
                 f"below float: keeping {group[-1]} float")
        artifact = build(kept)
        result.attempts.append(Attempt(list(kept), artifact, metric(artifact)))
        if result.within(result.attempts[-1]):
            break
    return result
