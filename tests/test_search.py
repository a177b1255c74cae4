"""Budget search: the batched search returns exactly Algorithm 1's gates; infeasible budgets."""

import numpy as np
import pytest

from compile_fixtures import ATTRIBUTES, SEEN, UNSEEN, profiled_bundle
from nnfc.bundle import read_bundle
from nnfc.compiler.assembler_runtime import Assembler
from nnfc.compiler.pipeline import load_predictor_for
from nnfc.compiler.search import algorithm1, batched_search, candidates, limit_grid
from nnfc.errors import NnfcError


@pytest.fixture(scope="module")
def setup():
    bundle = read_bundle(profiled_bundle())
    predictor = load_predictor_for(bundle, "desktop")
    return bundle, predictor, Assembler(bundle.assembler_path, predictor.structure.gates)


def test_limit_grid():
    grid = limit_grid(0.01, 0.01)
    assert len(grid) == 100 and grid[0] == 0.01 and grid[-1] == 1.0
    assert limit_grid(0.05, 0.1).tolist() == pytest.approx([0.05 + 0.1 * i for i in range(10)])
    with pytest.raises(NnfcError):
        limit_grid(0.0, 0.01)


def test_assembler_batches_and_is_monotone(setup):
    bundle, predictor, asm = setup
    task = bundle.encode_task(["only-two", "odd"])
    limits = limit_grid()
    gates = asm.gates(task, limits)
    assert all(v.shape == (100, size) for v, size in zip(gates.values(), predictor.structure.sizes))
    ratio = predictor.structure.activation_ratio(gates)
    assert np.all(np.diff(ratio) >= 0) and ratio[0] < 0.3 and ratio[-1] == 1.0


@pytest.mark.parametrize("task", SEEN[:4] + UNSEEN[:2])
def test_batched_equals_algorithm1(setup, task):
    bundle, predictor, asm = setup
    vec = bundle.encode_task(task)
    _, _, lat, mem = candidates(asm, predictor, vec)
    for q in (0.1, 0.35, 0.6, 0.9, 1.0):
        lat_b = float(np.quantile(lat, q)) * 1.0001
        mem_b = float(np.quantile(mem, min(1.0, q + 0.2))) * 1.0001
        for budget in ((lat_b, None), (None, mem_b), (lat_b, mem_b)):
            a = algorithm1(asm, predictor, vec, *budget)
            b = batched_search(asm, predictor, vec, *budget)
            assert a.limit == b.limit
            assert a.gates.keys() == b.gates.keys()
            for k in a.gates:
                np.testing.assert_array_equal(a.gates[k], b.gates[k])
            assert b.assembler_calls == 1 and a.assembler_calls >= 1
            # the answer fits and the next grid limit does not (or it is the last one)
            if budget[0]:
                assert a.latency_ms <= budget[0]
            if budget[1]:
                assert a.memory_mb <= budget[1]
            nxt = [t for t in b.trace if t["limit"] > b.limit]
            assert not nxt or not nxt[0]["fits"]


def test_margin_makes_search_conservative(setup):
    bundle, predictor, asm = setup
    vec = bundle.encode_task(["odd"])
    _, _, lat, _ = candidates(asm, predictor, vec)
    # the predictor is fitted on real timings: leave room for the 20 % margin whatever they were
    budget = max(float(np.quantile(lat, 0.7)), float(lat.min()) * 1.25)
    plain = batched_search(asm, predictor, vec, budget, None)
    safe = batched_search(asm, predictor, vec, budget, None, margins=(0.2, 0.0))
    assert safe.limit <= plain.limit and safe.latency_ms * 1.2 <= budget


def test_infeasible_budget_names_smallest_achievable(setup):
    bundle, predictor, asm = setup
    vec = bundle.encode_task(["only-one", "odd"])
    _, _, lat, mem = candidates(asm, predictor, vec)
    for search in (algorithm1, batched_search):
        with pytest.raises(NnfcError, match="infeasible budget") as err:
            search(asm, predictor, vec, float(lat.min()) * 0.5, None)
        assert "smallest achievable" in str(err.value) and "latency" in str(err.value)
        with pytest.raises(NnfcError, match="memory") as err:
            search(asm, predictor, vec, None, float(mem.min()) * 0.5)
        assert "KB" in str(err.value) or "MB" in str(err.value)


def test_vocabulary_is_fixture_vocabulary(setup):
    assert setup[0].attributes == ATTRIBUTES


def test_best_search_never_below_algorithm1(setup):
    from nnfc.compiler.search import best_search
    bundle, predictor, asm = setup
    for task in SEEN[:3]:
        vec = bundle.encode_task(task)
        _, _, lat, _ = candidates(asm, predictor, vec)
        for q in (0.2, 0.5, 0.8):
            budget = float(np.quantile(lat, q)) * 1.0001
            a = batched_search(asm, predictor, vec, budget, None)
            b = best_search(asm, predictor, vec, budget, None)
            assert b.activation_ratio >= a.activation_ratio and b.latency_ms <= budget
            fitting = [t for t in b.trace if t["fits"]]
            assert b.limit in [t["limit"] for t in fitting]
