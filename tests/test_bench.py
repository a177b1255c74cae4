"""`nnfc bench`: exit 0 within budget, 1 over budget, 2 on bad input; artifact resolution."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnfc.cli import main
from nnfc.commands.bench import resolve_artifact, within_budgets
from nnfc.errors import NnfcError
from nnfc.onnx_io import save_onnx
from nnfc.passes import apply_gates, gate_inputs
from nnfc.targets import BenchResult
from supernets import supernet


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    _, model = supernet("resnet-tiny")
    gates = {k: (np.arange(n) % 2 == 0).astype(np.float32) for k, n in gate_inputs(model).items()}
    return save_onnx(apply_gates(model, gates), tmp_path_factory.mktemp("bench") / "model.onnx")


def bench(*args: str) -> int:
    try:
        main(["bench", *args])
    except SystemExit as exc:
        return int(exc.code)
    return 0


def test_within_budget_exits_0(onnx_path, capsys):
    assert bench(str(onnx_path), "--runs", "5", "--lat-budget", "10s",
                 "--mem-budget", "8GB") == 0
    out = capsys.readouterr().out
    assert "median" in out and "p90" in out and "budget    OK" in out


def test_over_latency_budget_exits_1(onnx_path, capsys):
    assert bench(str(onnx_path), "--runs", "5", "--lat-budget", "1us", "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["within_budget"] is False
    assert report["budget"]["latency_ms"] == pytest.approx(1e-3)
    assert report["violations"][0].startswith("latency median")
    assert report["latency_ms"]["median"] > 1e-3


def test_p90_budget_and_no_budget(onnx_path, capsys):
    assert bench(str(onnx_path), "--runs", "5", "--lat-stat", "p90", "--lat-budget", "1us") == 1
    assert "latency p90" in capsys.readouterr().out
    assert bench(str(onnx_path), "--runs", "3", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target"] == "desktop" and report["within_budget"] is True
    assert report["runs"] == 3


def test_memory_budget_check():
    result = BenchResult(median_ms=4.0, p90_ms=5.0, peak_memory_mb=350.0, runs=10)
    assert within_budgets(result, 20.0, 300.0, "median") == [
        "peak memory 350.0 MB > budget 300.0 MB"]
    assert within_budgets(result, 4.5, 400.0, "median") == []
    assert within_budgets(result, 4.5, 400.0, "p90") == ["latency p90 5.00 ms > budget 4.50 ms"]


@pytest.mark.parametrize("args, message", [
    (["--lat-budget", "20"], "has no unit"),
    (["--mem-budget", "300 parsecs"], "memory"),
    (["--target", "mars"], "unknown target 'mars'"),
])
def test_bad_input_exits_2(onnx_path, capsys, args, message):
    assert bench(str(onnx_path), *args) == 2
    assert message in capsys.readouterr().err


def test_wrong_kind_of_artifact(tmp_path, capsys):
    tflite = tmp_path / "model.tflite"
    tflite.write_bytes(b"x")
    assert bench(str(tflite), "--target", "desktop") == 2
    assert "bench it with --target android" in capsys.readouterr().err
    odd = tmp_path / "model.bin"
    odd.write_bytes(b"x")
    assert bench(str(odd)) == 2
    assert "give --target" in capsys.readouterr().err
    assert bench(str(tmp_path / "missing.onnx")) == 2


def test_compile_output_directory(onnx_path, tmp_path, capsys):
    out = tmp_path / "compiled"
    out.mkdir()
    (out / "model.onnx").write_bytes(onnx_path.read_bytes())
    (out / "report.json").write_text(json.dumps(
        {"request": {"target": "desktop"}, "artifact": "model.onnx"}))
    assert resolve_artifact(out, None) == (out / "model.onnx", "desktop")
    assert resolve_artifact(out, "jetson") == (out / "model.onnx", "jetson")
    assert bench(str(out), "--runs", "3", "--lat-budget", "10s") == 0
    with pytest.raises(NnfcError, match="without report.json"):
        resolve_artifact(tmp_path, None)
