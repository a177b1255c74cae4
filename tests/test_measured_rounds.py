"""The choice of the next measured round (nnfc.compiler.measured_rounds.next_candidate)."""

from pathlib import Path

import numpy as np

from nnfc.compiler.graph_stats import GraphStats
from nnfc.compiler.measured_rounds import (Candidates, Measured, Round, clear_of, keep,
                                           next_candidate, settle)
from nnfc.compiler.search import SearchResult

BUDGET = 10.0


def grid(predicted: list[float]) -> Candidates:
    n = len(predicted)
    return Candidates(np.round(np.linspace(0.1, 1.0, n), 4), {"gate.a": np.ones((n, 4))},
                      np.asarray(predicted, float), np.zeros(n), np.linspace(0.1, 1.0, n),
                      np.ones(n, bool))


def measured(cands: Candidates, i: int, ms: float, spread: float = 0.0) -> Round:
    found = SearchResult(float(cands.limits[i]), {}, float(cands.latency_ms[i]), 0.0,
                         float(cands.ratio[i]), 1, len(cands.limits), "batched")
    bench = Measured(ms, None, None, [ms], 10, spread, {}, "test")
    return Round(found, Path(f"r{i}.onnx"), bench, GraphStats(0, 0, 0, 0, 0))


def test_steps_up_to_the_largest_rescaled_fit():
    c = grid([5, 6, 7, 8, 9, 9.5, 10.5, 12])
    # measured 10 % below its prediction: 9.5 * 0.9 * 1.01 fits, 10.5 * 0.9 * 1.01 = 9.54 too
    r = [measured(c, 3, 7.2)]
    assert next_candidate(c, r, BUDGET, {3}, 0.97) == 6


def test_never_steps_up_past_a_measured_violation():
    c = grid([5, 6, 7, 8, 9, 9.5, 10.5, 12])
    r = [measured(c, 3, 7.2), measured(c, 6, 10.2)]
    assert next_candidate(c, r, BUDGET, {3, 6}, 0.97) == 5
    # nothing left between the best fit and the violation: done (the budget binds)
    r.append(measured(c, 5, 9.3))
    assert next_candidate(c, r, BUDGET, {3, 5, 6}, 0.97) is None


def test_stops_when_the_budget_is_used_well():
    c = grid([5, 6, 7, 8, 9, 9.5, 10.5, 12])
    assert next_candidate(c, [measured(c, 4, 9.8)], BUDGET, {4}, 0.97) is None


def test_steps_down_when_over_budget():
    c = grid([5, 6, 7, 8, 9, 9.5, 10.5, 12])
    # measured 20 % above its prediction: 8 * 1.2 * 1.01 = 9.7 fits
    assert next_candidate(c, [measured(c, 4, 10.8)], BUDGET, {4}, 0.97) == 3
    # nothing fits the rescaled prediction: the smallest one
    assert next_candidate(c, [measured(c, 4, 30.0)], BUDGET, {4}, 0.97) == 0


def test_keeps_the_largest_within_budget():
    c = grid([5, 6, 7, 8, 9, 9.5, 10.5, 12])
    r = [measured(c, 3, 7.2), measured(c, 6, 10.2), measured(c, 5, 9.3)]
    assert keep(r, BUDGET) is r[2]
    over = [measured(c, 6, 10.2), measured(c, 7, 11.0)]
    assert keep(over, BUDGET) is over[-1]  # none within: the last measured


def test_clear_of_every_threshold_ends_a_measurement():
    assert clear_of(9.0, 0.002, (10.0, 9.7))          # 7 % and 10 % below the lines
    assert not clear_of(9.65, 0.002, (10.0, 9.7))     # 0.5 % from the step-up line
    assert not clear_of(9.0, 0.06, (10.0,))           # a noisy figure: 2 x spread > 10 %
    assert clear_of(12.0, 0.0, ())                    # nothing to decide


def test_settle_writes_the_kept_rounds_model(tmp_path):
    c = grid([5, 6, 7, 8])
    first, second = measured(c, 1, 6.0), measured(c, 2, 7.0)
    work = tmp_path / "round2"
    work.mkdir()
    for r, where, model in ((first, tmp_path, b"one"), (second, work, b"two")):
        r.artifact = where / "model.ort.onnx"
        r.artifact.write_bytes(model + b"-lowered")
        r.model = model
    kept = settle(keep([first, second], BUDGET), tmp_path)
    assert kept is second and kept.artifact == tmp_path / "model.ort.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.ort.onnx"]
    assert (tmp_path / "model.onnx").read_bytes() == b"two"
    assert kept.artifact.read_bytes() == b"two-lowered"
