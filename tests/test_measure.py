"""Drift-cancelling measurement: a candidate timed call by call against a reference."""

import time

import pytest

from nnfc.compiler.measure import clock_for, measure_relative


class FakeClock:
    """A clock that only the simulated calls advance: the tests assert the arithmetic of the
    measurement, not the timing of this machine."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def call(self, ms_of):
        """A callable that takes ``ms_of()`` milliseconds of this clock's time."""
        def run():
            self.now += ms_of() / 1e3
        return run


def test_relative_cancels_a_load_that_slows_both():
    calls = {"n": 0}

    def slowdown():  # the "machine" gets 2x slower half way through
        calls["n"] += 1
        return 2.0 if calls["n"] > 40 else 1.0

    clock = FakeClock()
    cand = clock.call(lambda: 0.6 * slowdown())
    ref = clock.call(lambda: 1.2 * slowdown())
    m = measure_relative(cand, ref, runs=5, warmup=1, rounds=8, outlier=0.5, clock=clock)
    assert m.relative == pytest.approx(0.5, rel=0.08)
    assert len(m.round_ratios) == 8 and m.load >= 0.0


def test_outlier_round_is_measured_again():
    state = {"round_calls": 0}

    def cand_ms():  # the 3rd round's candidate calls alone run 3x slower
        state["round_calls"] += 1
        return 1.5 if 10 < state["round_calls"] <= 14 else 0.5

    clock = FakeClock()
    m = measure_relative(clock.call(cand_ms), clock.call(lambda: 1.0), runs=4, warmup=0,
                         rounds=5, clock=clock)
    assert m.outlier_rounds >= 1
    assert m.relative == pytest.approx(0.5, rel=0.1)
    assert max(m.round_ratios) < 0.6


def test_single_threaded_targets_use_thread_cpu_time():
    class T:
        threads = 1
    assert clock_for(T()) is time.thread_time
    T.threads = None
    assert clock_for(T()) is time.perf_counter


def test_a_settled_figure_ends_after_two_rounds():
    clock = FakeClock()
    cand, ref = clock.call(lambda: 0.6), clock.call(lambda: 1.2)
    asked = []

    def settled(ratio, spread):
        asked.append((ratio, spread))
        return True

    m = measure_relative(cand, ref, runs=4, warmup=1, rounds=3, clock=clock, settled=settled)
    assert len(m.round_ratios) == 2 and m.runs == 8
    assert asked == [(pytest.approx(0.5), pytest.approx(0.0))]
    never = measure_relative(cand, ref, runs=4, warmup=1, rounds=3, clock=clock,
                             settled=lambda ratio, spread: False)
    assert len(never.round_ratios) == 3
