"""Numbers that cannot lie (issue #21): the equivalence check, gate values, and every figure
nnfc loads from a file — each hostile value has one outcome: one error naming file and field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnfc.compiler.assembler_runtime import binary_gates
from nnfc.equivalence import ATOL, RTOL, compare_outputs, output_diff
from nnfc.errors import NnfcError


# ---- the equivalence check ---------------------------------------------------------------
def test_equal_outputs_pass_with_their_difference():
    want = np.linspace(-3, 3, 60, dtype=np.float32).reshape(6, 10)
    d = output_diff("logits", want + 1e-5, want)
    assert d.max_abs_diff == pytest.approx(1e-5, rel=1e-2)
    assert d.tolerance == pytest.approx(RTOL * 3 + ATOL)


@pytest.mark.parametrize("got, want, needle", [
    ([np.nan, 1.0], [0.0, 1.0], "output 'y' holds non-finite values (NaN in 1 of 2)"),
    ([np.inf, 1.0], [0.0, 1.0], "Inf in 1 of 2"),
    ([0.0, 1.0], [np.nan, np.nan], "the reference's output 'y' holds non-finite"),
    ([3.6e24, 1.0], [0.0, 1.0], "differs from the reference's by 3.6e+24"),
    ([0.0, 1.0, 2.0], [0.0, 1.0], "has shape (3,)"),
    ([1.0, 1.001], [1.0, 1.0], "differs from the reference's by 0.001"),
])
def test_broken_outputs_fail_naming_the_output(got, want, needle):
    with pytest.raises(NnfcError) as exc:
        output_diff("y", np.array(got), np.array(want))
    assert needle in str(exc.value)


def test_tolerance_scales_with_each_output():
    big = np.array([1e4, -2e4])
    output_diff("boxes", big + 1.0, big)  # 1.0 of 2e4: within 1e-4 relative
    with pytest.raises(NnfcError, match="'scores'"):
        compare_outputs(["boxes", "scores"], [big + 1.0, np.array([0.5])],
                        [big, np.array([0.4])])


def test_output_count_mismatch():
    with pytest.raises(NnfcError, match="has 1 output"):
        compare_outputs(["a", "b"], [np.zeros(1)], [np.zeros(1), np.zeros(1)])


# ---- gate values -------------------------------------------------------------------------
@pytest.mark.parametrize("values", [[np.nan, 1.0], [1e-46, 1.0], [0.5, 0.0], [np.inf, 0.0],
                                    [-0.0001, 1.0]])
def test_assembler_gates_must_be_exactly_0_or_1(values):
    with pytest.raises(NnfcError, match="only 0 and 1"):
        binary_gates("gate.x", np.array(values, np.float64), "the assembler's output")


def test_assembler_gates_of_0_and_1_pass_as_float32():
    out = binary_gates("gate.x", np.array([[0, 1, 1]], np.int64), "x")
    assert out.dtype == np.float32 and out.tolist() == [[0.0, 1.0, 1.0]]


@pytest.mark.parametrize("content, needle", [
    ('{"gate.a": [1e-46, 1]}', "gate.a[0] is 1e-46"),
    ('{"gate.a": [1, 0], "gate.a": [0, 1]}', "'gate.a' appears twice"),
    ('{"gate.a": [true, false]}', "field gate.a[0]: must be a number"),
    ('{"gate.a": [NaN]}', "NaN is not a JSON number"),
    ('{"gate.a": [1e999]}', "beyond the float range"),
    ('{"gate.a": "0101"}', "field gate.a: must be a list"),
])
def test_gates_file_values(tmp_path, content, needle):
    from nnfc.passes import load_gates_json
    from nnfc.passes.errors import PruneError
    path = tmp_path / "g.json"
    path.write_text(content)
    with pytest.raises(PruneError) as exc:
        load_gates_json(path)
    assert needle in str(exc.value) and str(path) in str(exc.value)


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "fifo"])
def test_gates_from_a_special_file_is_refused_without_reading(tmp_path, special):
    import os
    from nnfc.passes import load_gates_json
    from nnfc.passes.errors import PruneError
    path = special
    if special == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    with pytest.raises(PruneError, match="not a regular file"):
        load_gates_json(path)


def test_validate_gates_checks_before_the_float32_cast():
    from onnx import TensorProto, helper
    from nnfc.passes import validate_gates
    from nnfc.passes.errors import PruneError
    model = helper.make_model(helper.make_graph(
        [], "g", [helper.make_tensor_value_info("gate.a", TensorProto.FLOAT, [2])], []))
    with pytest.raises(PruneError, match="only 0 and 1"):
        validate_gates(model, {"gate.a": np.array([1e-46, 1.0], np.float64)})


# ---- figures loaded from files -----------------------------------------------------------
def _run_file(tmp_path, rounds, **entry):
    run = {"format": "nnfc-bench", "version": 1, "artifacts": [
        {"name": "m.onnx", "latency_ms": {"median": 1.0, "rounds": rounds}, **entry}]}
    path = tmp_path / "base.json"
    path.write_text(json.dumps(run).replace('"NAN"', "NaN"))
    return path


@pytest.mark.parametrize("rounds, entry, needle", [
    (["NAN", 1.0, 1.0], {}, "NaN is not a JSON number"),
    ([0.0, 1.0, 1.0], {}, "field artifacts[0].latency_ms.rounds[0]: must be > 0"),
    ([-1.0, 1.0, 1.0], {}, "rounds[0]: must be > 0"),
    ([1.0, 1.0, 1.0], {"memory_mb": -5}, "artifacts[0].memory_mb"),
    ([1.0, 1.0, 1.0], {"memory_mb": "12"}, "artifacts[0].memory_mb"),
    ([1.0, True, 1.0], {}, "rounds[1]: must be a number"),
])
def test_baseline_figures_are_validated(tmp_path, rounds, entry, needle):
    from nnfc.benchmarking.record import load_run
    with pytest.raises(NnfcError) as exc:
        load_run(_run_file(tmp_path, rounds, **entry))
    assert needle in str(exc.value) and "base.json" in str(exc.value)


def test_baseline_artifact_paths_are_checked_before_hashing(tmp_path):
    import os
    from nnfc.benchmarking.record import baseline_artifact
    run = {"_path": str(tmp_path / "base.json")}
    big = tmp_path / "big.onnx"
    with open(big, "wb") as fh:
        fh.truncate(1 << 40)  # 1 TB, sparse
    os.mkfifo(tmp_path / "fifo.onnx")
    for stored in ("/etc/shadow", str(big), "fifo.onnx", "/dev/zero"):
        assert baseline_artifact(run, {"artifact": stored, "sha256": "0" * 64}) is None


@pytest.mark.parametrize("measured, needle", [
    ('{"memory_mb": NaN}', "NaN is not a JSON number"),
    ('{"memory_mb": -1}', "field measured.memory_mb: must be > 0"),
    ('{"memory_mb": 1, "latency_ms": {"median": 0}}', "measured.latency_ms.median: must be > 0"),
])
def test_report_figures_are_validated(tmp_path, capsys, measured, needle):
    from cli_runner import run_cli
    out = tmp_path / "compiled"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"")
    (out / "report.json").write_text(
        '{"artifact": "model.onnx", "request": {"target": "desktop"}, '
        f'"measured": {measured}}}')
    code, _, err = run_cli(["bench", str(out), "--mem-budget", "1KB"], capsys)
    assert code == 2 and needle in err and "report.json" in err


@pytest.mark.parametrize("change, needle", [
    ({"latency_model": {"intercept": 0.1, "coef": []}}, "latency_model.coef"),
    ({"memory_model": {"intercept": 0.1, "coef": [1.0, "x"]}}, "memory_model.coef[1]"),
    ({"margin": {"latency": -0.5, "memory": 0.1}}, "margin.latency: must be >= 0"),
    ({"target_options": {"threads": -3}}, "target_options.threads: must be >= 0"),
    ({"target_options": {"threads": 2.5}}, "target_options.threads"),
    ({"structure": {"layers": "oops"}}, "field structure"),
    ({"reference": {"artifact": 5, "sha256": "x"}}, "reference.artifact"),
])
def test_predictor_figures_are_validated(tmp_path, change, needle):
    from compile_fixtures import profiled_bundle
    from nnfc.compiler.predictor import Predictor
    data = json.loads((profiled_bundle() / "profiles" / "desktop.json").read_text())
    data.update(change)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(NnfcError) as exc:
        Predictor.load(path)
    assert needle in str(exc.value) and "p.json" in str(exc.value)


@pytest.mark.parametrize("row, needle", [
    ({"latency_ms": 0}, "rows[0].latency_ms: must be > 0"),
    ({"latency_ms": -3.0}, "rows[0].latency_ms"),
    ({"graph_memory_mb": -1}, "rows[0].graph_memory_mb"),
    ({"gates": {"gate.a": [1, "x"]}}, "rows[0].gates.gate.a"),
])
def test_measurement_figures_are_validated(tmp_path, row, needle):
    from nnfc.compiler.profiler import read_measurements
    base = {"index": 0, "gates": {"gate.a": "01"}, "latency_ms": 1.0, "graph_memory_mb": 1.0}
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"rows": [{**base, **row}]}))
    with pytest.raises(NnfcError) as exc:
        read_measurements(path)
    assert needle in str(exc.value)


@pytest.mark.parametrize("value", ["abc", "-5", "nan", "inf", "1e99"])
def test_lock_timeout_env_is_one_clear_error(monkeypatch, tmp_path, value):
    monkeypatch.setenv("NNFC_LOCK_TIMEOUT", value)
    import importlib

    import nnfc.outputs
    importlib.reload(nnfc.outputs)  # importing never fails
    with pytest.raises(NnfcError, match="NNFC_LOCK_TIMEOUT"):
        nnfc.outputs.check_output_dir(tmp_path / "out", "compile")


@pytest.mark.parametrize("change, needle", [
    ({"latency_model": {"intercept": 0.1, "coef": [1.0, 2.0], "feature_set": "layer-align"}},
     "do not fit its structure"),
    ({"latency_model": {"intercept": 1.7e308, "coef": [1.7e308], "feature_set": "total-macs"}},
     "not finite"),
])
def test_predictor_coefficients_must_fit_the_structure(tmp_path, change, needle):
    from compile_fixtures import profiled_bundle
    from nnfc.compiler.predictor import Predictor
    data = json.loads((profiled_bundle() / "profiles" / "desktop.json").read_text())
    data.update(change)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(NnfcError, match=needle):
        Predictor.load(path)
