"""Is a candidate slower, bigger or less accurate than its baseline? Changes with a confidence
interval, decided so that a noisy machine does not raise false alarms.

Latency is measured in *rounds* (one round = enough timed calls to last ``--min-round-time``,
its median kept). On a shared machine a round is either undisturbed or slowed by a burst of other
work (never sped up), and such bursts last several rounds. So the change compares the *lower
quartile* of the rounds' log latencies of candidate and baseline — it stays put while up to three
quarters of one side's rounds are slowed — with a bootstrap confidence interval. With the
baseline artifact at hand, baseline and candidate rounds are interleaved (ABBA order) and
resampled in pairs (``paired``); without it, the candidate's rounds are compared with the saved
ones (``unpaired``), which also carries any difference in load between the two runs.

A metric *regresses* when its change is significant (the interval lies above zero) **and** the
estimate exceeds the threshold (``--max-regression lat=5%``); against saved rounds (no baseline
artifact) the whole interval must lie above the threshold, since it cannot hold the difference
between two runs. Memory (nnfc's model memory, exact)
and the evaluation metric (fixed test samples, deterministic) have no sampling noise: their
change is exact and only the threshold applies.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from nnfc.errors import NnfcError

#: default thresholds: latency +5 %, memory +1 %, evaluation metric -1 point
DEFAULT_THRESHOLDS = {"lat": 0.05, "mem": 0.01, "acc": 1.0}
#: two-sided confidence level of the latency interval (its lower bound must clear 0)
DEFAULT_CONFIDENCE = 0.99
BOOTSTRAP_RESAMPLES = 4000
#: the rounds' quantile compared (other processes only ever slow a round down: the fast rounds
#: are the model's own latency; a quartile stays put while up to 3/4 of the rounds are slowed)
ROUND_QUANTILE = 0.25
METRIC_NAMES = {"lat": "latency", "mem": "memory", "acc": "evaluation metric"}

# one way to match each number (no nested optional digits: linear time on any input)
_THRESHOLD = re.compile(r"^\s*(lat|mem|acc)\s*=\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(%|pt)\s*$")
MAX_THRESHOLD_TEXT = 200


def parse_thresholds(text: str | None) -> dict[str, float]:
    """``"lat=5%,mem=1%,acc=0.5pt"`` -> ``{"lat": 0.05, "mem": 0.01, "acc": 0.5}`` on top of
    the defaults (latency and memory relative, the evaluation metric in absolute points)."""
    out = dict(DEFAULT_THRESHOLDS)
    if not text:
        return out
    if len(text) > MAX_THRESHOLD_TEXT:
        raise NnfcError(f"--max-regression: {len(text)} characters is not a threshold list; "
                        "write e.g. lat=5%,mem=1%,acc=0.5pt")
    for item in text.split(","):
        m = _THRESHOLD.match(item)
        if not m:
            raise NnfcError(f"--max-regression: cannot read {item.strip()!r}; write e.g. "
                            f"lat=5%,mem=1%,acc=0.5pt (lat/mem in %, acc in points)")
        key, value, unit = m.group(1), float(m.group(2)), m.group(3)
        if key in ("lat", "mem") and unit != "%":
            raise NnfcError(f"--max-regression: {key} takes a percentage, e.g. {key}=5%")
        if key == "acc" and unit != "pt":
            raise NnfcError("--max-regression: acc takes points of the metric, e.g. acc=0.5pt")
        out[key] = value / 100 if unit == "%" else value
    return out


@dataclass
class Change:
    """One metric of one artifact against its baseline."""

    metric: str                  # "lat" | "mem" | "acc"
    baseline: float | None       # baseline value (latency: median of its rounds)
    candidate: float | None
    change: float | None         # relative (lat, mem) or points (acc, candidate - baseline)
    ci: tuple[float, float] | None  # interval of ``change`` (None: exact, no sampling noise)
    threshold: float
    method: str                  # "paired", "unpaired", "exact", "missing"
    p_value: float | None = None
    regression: bool = False

    @property
    def significant(self) -> bool:
        """The change is distinguishable from zero (exact changes: non-zero)."""
        if self.change is None:
            return False
        if self.ci is None:
            return self.change != 0
        return self.ci[0] > 0 or self.ci[1] < 0

    def to_json(self) -> dict:
        out = asdict(self)
        out["ci"] = list(self.ci) if self.ci else None
        out["significant"] = self.significant
        return out


def _bootstrap_interval(samples: Sequence[np.ndarray], statistic, paired: bool,
                        confidence: float, seed: int) -> tuple[float, float]:
    from scipy import stats
    if all(len(np.unique(s)) == 1 for s in samples):  # no spread: the interval is a point
        value = float(statistic(*samples, axis=-1))
        return value, value
    res = stats.bootstrap(tuple(samples), statistic, paired=paired, vectorized=True,
                          n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=confidence,
                          method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _lower_quartile(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.quantile(x, ROUND_QUANTILE, axis=axis)


def _quartile_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return _lower_quartile(y, axis) - _lower_quartile(x, axis)


def paired_latency_change(baseline_rounds: Sequence[float], candidate_rounds: Sequence[float],
                          threshold: float, confidence: float = DEFAULT_CONFIDENCE,
                          seed: int = 0) -> Change:
    """Interleaved rounds: change of the lower quartile of the log latencies, bootstrap CI
    resampling rounds in pairs, Wilcoxon signed-rank p-value of the per-round log ratios."""
    from scipy import stats
    lb, lc = _logs(baseline_rounds, candidate_rounds)
    if len(lb) != len(lc):
        raise NnfcError("a paired comparison needs the same number of rounds of both")
    low, high = _bootstrap_interval([lb, lc], _quartile_difference, True, confidence, seed)
    d = lc - lb
    p = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    return _latency_change(lb, lc, (low, high), threshold, "paired", p)


def unpaired_latency_change(baseline_rounds: Sequence[float], candidate_rounds: Sequence[float],
                            threshold: float, confidence: float = DEFAULT_CONFIDENCE,
                            seed: int = 0,
                            reference: tuple[Sequence[float], Sequence[float]] | None = None
                            ) -> Change:
    """Candidate rounds against saved baseline rounds (made at another time, under another
    load, maybe on another machine): change of the lower quartile of the log latencies,
    bootstrap CI resampling each side on its own, Mann-Whitney U p-value.

    ``reference``: the reference model's rounds of the baseline run and of this run (see
    :mod:`nnfc.benchmarking.reference`); each round is then divided by the reference's in the
    same round, which cancels the speed of the machine at the time (method
    ``unpaired-normalized``; the values reported stay in ms)."""
    from scipy import stats
    lb, lc = _logs(baseline_rounds, candidate_rounds)
    method = "unpaired"
    raw = (lb, lc)
    if reference is not None:
        rb, rc = _logs(*reference)
        if len(rb) != len(lb) or len(rc) != len(lc):
            raise NnfcError("reference rounds do not match the rounds they normalize")
        lb, lc, method = lb - rb, lc - rc, "unpaired-normalized"
    low, high = _bootstrap_interval([lb, lc], _quartile_difference, False, confidence, seed)
    p = float(stats.mannwhitneyu(lc, lb, alternative="two-sided").pvalue)
    change = _latency_change(lb, lc, (low, high), threshold, method, p)
    change.baseline, change.candidate = (float(np.exp(_lower_quartile(x))) for x in raw)
    return change


def _logs(baseline_rounds: Sequence[float], candidate_rounds: Sequence[float]
          ) -> tuple[np.ndarray, np.ndarray]:
    lb = np.log(np.asarray(baseline_rounds, float))
    lc = np.log(np.asarray(candidate_rounds, float))
    if len(lb) < 3 or len(lc) < 3:
        raise NnfcError("a comparison needs >= 3 rounds of both the baseline and the candidate")
    return lb, lc


def _latency_change(lb: np.ndarray, lc: np.ndarray, log_ci: tuple[float, float],
                    threshold: float, method: str, p: float) -> Change:
    change = math.expm1(float(_quartile_difference(lb, lc)))
    ci = (math.expm1(log_ci[0]), math.expm1(log_ci[1]))
    # paired: significant and beyond the threshold; against saved rounds the interval misses
    # the difference between two runs, so the whole interval must lie beyond the threshold
    floor = 0.0 if method == "paired" else threshold
    regression = ci[0] > floor and change > threshold
    return Change("lat", float(np.exp(_lower_quartile(lb))), float(np.exp(_lower_quartile(lc))),
                  change, ci, threshold, method, p, regression)


def exact_change(metric: str, baseline: float | None, candidate: float | None,
                 threshold: float) -> Change:
    """Memory (relative, larger is worse) or the evaluation metric (points, smaller is worse):
    values without sampling noise."""
    if baseline is None or candidate is None:
        return Change(metric, baseline, candidate, None, None, threshold, "missing")
    if metric == "acc":
        change = 100.0 * (candidate - baseline)
        regression = -change > threshold + 1e-9
    else:
        change = candidate / baseline - 1 if baseline > 0 else 0.0
        regression = change > threshold + 1e-12
    return Change(metric, baseline, candidate, change, None, threshold, "exact",
                  regression=regression)
