"""The statistics behind `nnfc bench --baseline`: thresholds, paired and unpaired latency
changes with confidence intervals, exact memory/metric changes (synthetic rounds)."""

from __future__ import annotations

import numpy as np
import pytest

from nnfc.benchmarking.compare import (exact_change, paired_latency_change, parse_thresholds,
                                       unpaired_latency_change)
from nnfc.errors import NnfcError


def test_thresholds():
    assert parse_thresholds(None) == {"lat": 0.05, "mem": 0.01, "acc": 1.0}
    assert parse_thresholds("lat=3%, acc=0.5pt") == {"lat": 0.03, "mem": 0.01, "acc": 0.5}
    for bad, message in [("lat=5", "cannot read"), ("speed=5%", "cannot read"),
                         ("lat=1pt", "percentage"), ("acc=1%", "points")]:
        with pytest.raises(NnfcError, match=message):
            parse_thresholds(bad)


def noisy_rounds(n: int, seed: int, level: float = 100.0) -> np.ndarray:
    """Round medians of a busy machine: a drifting load plus occasional slow spells."""
    rng = np.random.default_rng(seed)
    drift = 1 + 0.3 * np.sin(np.linspace(0, 3, n))
    spikes = 1 + (rng.random(n) < 0.2) * rng.uniform(0.2, 1.0, n)
    return level * drift * spikes


def test_paired_change_cancels_the_load():
    base = noisy_rounds(15, 0)
    rng = np.random.default_rng(1)
    same = base * rng.uniform(0.98, 1.02, 15)
    ch = paired_latency_change(base, same, 0.05)
    assert not ch.regression and abs(ch.change) < 0.02 and ch.ci[0] < 0.02
    slower = base * 1.2 * rng.uniform(0.98, 1.02, 15)
    ch = paired_latency_change(base, slower, 0.05)
    assert ch.regression and ch.method == "paired"
    assert 0.15 < ch.ci[0] <= ch.change <= ch.ci[1] < 0.25 and ch.p_value < 0.01
    # significant but within the threshold: not a regression
    ch = paired_latency_change(base, base * 1.03, 0.05)
    assert ch.significant and not ch.regression
    with pytest.raises(NnfcError, match="same number"):
        paired_latency_change(base, base[:5], 0.05)


def test_unpaired_change():
    rng = np.random.default_rng(2)
    base = 100 * rng.uniform(1.0, 1.1, 15)
    ch = unpaired_latency_change(base, 100 * rng.uniform(1.0, 1.1, 15), 0.05)
    assert not ch.regression and ch.method == "unpaired"
    ch = unpaired_latency_change(base, 130 * rng.uniform(1.0, 1.1, 15), 0.05)
    assert ch.regression and ch.ci[0] > 0.15
    # this run's machine is 30 % slower: the reference model's rounds say so
    slow_machine = 130 * rng.uniform(1.0, 1.1, 15)
    ref_base, ref_here = 200 * np.ones(15), 260 * np.ones(15)
    ch = unpaired_latency_change(base, slow_machine, 0.05, reference=(ref_base, ref_here))
    assert ch.method == "unpaired-normalized" and not ch.regression and abs(ch.change) < 0.06
    assert ch.candidate > 1.2 * ch.baseline  # the values reported stay in ms
    constant = unpaired_latency_change([5.0] * 4, [5.0] * 4, 0.05)
    assert constant.change == 0 and constant.ci == (0.0, 0.0) and not constant.significant


def test_exact_changes():
    assert exact_change("mem", 10.0, 10.05, 0.01).regression is False
    mem = exact_change("mem", 10.0, 10.2, 0.01)
    assert mem.regression and mem.change == pytest.approx(0.02) and mem.ci is None
    acc = exact_change("acc", 0.98, 0.96, 1.0)
    assert acc.regression and acc.change == pytest.approx(-2.0)
    assert not exact_change("acc", 0.98, 0.975, 1.0).regression
    assert not exact_change("acc", 0.90, 0.99, 1.0).regression
    missing = exact_change("acc", None, 0.9, 1.0)
    assert missing.method == "missing" and not missing.regression
