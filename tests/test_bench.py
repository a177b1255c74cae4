"""`nnfc bench`: exit 0 within budget, 1 over budget, 2 on bad input; artifact resolution;
several artifacts, saved runs, baselines (paired and unpaired), CI reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
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


FAST = ("--rounds", "3", "--runs", "3", "--warmup", "1", "--min-round-time", "0")


def test_within_budget_exits_0(onnx_path, capsys):
    assert bench(str(onnx_path), *FAST, "--lat-budget", "10s", "--mem-budget", "8GB") == 0
    out = capsys.readouterr().out
    assert "median" in out and "p90" in out and "budget   OK" in out


def test_over_latency_budget_exits_1(onnx_path, capsys):
    assert bench(str(onnx_path), *FAST, "--lat-budget", "1us", "--json") == 1
    run = json.loads(capsys.readouterr().out)
    (entry,) = run["artifacts"]
    assert run["over_budget"] is True and run["exit_code"] == 1
    assert run["settings"]["budget"]["latency_ms"] == pytest.approx(1e-3)
    assert entry["violations"][0].startswith("latency median")
    assert entry["latency_ms"]["median"] > 1e-3


def test_p90_budget_and_no_budget(onnx_path, capsys):
    assert bench(str(onnx_path), *FAST, "--lat-stat", "p90", "--lat-budget", "1us") == 1
    assert "latency p90" in capsys.readouterr().out
    assert bench(str(onnx_path), *FAST, "--json") == 0
    run = json.loads(capsys.readouterr().out)
    (entry,) = run["artifacts"]
    assert entry["target"] == "desktop" and not entry["violations"]
    assert len(entry["latency_ms"]["rounds"]) == 3 and entry["target_options"] == {"threads": 1}
    assert entry["memory_source"] == "model" and entry["memory_mb"] > 0


def test_memory_budget_check():
    result = BenchResult(median_ms=4.0, p90_ms=5.0, peak_memory_mb=350.0, runs=10)
    assert within_budgets(result, 20.0, 300.0, "median") == [
        "peak memory 350.0 MB > budget 300.0 MB"]
    assert within_budgets(result, 4.5, 400.0, "median") == []
    assert within_budgets(result, 4.5, 400.0, "p90") == ["latency p90 5.00 ms > budget 4.50 ms"]


@pytest.mark.parametrize("args, message", [
    (["--lat-budget", "20"], "has no unit"),
    (["--mem-budget", "300 parsecs"], "memory"),
    (["--target", "mars"], "'mars' is not one of 'desktop', 'android', 'jetson'"),
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
    assert bench(str(out), *FAST, "--lat-budget", "10s") == 0
    with pytest.raises(NnfcError, match="without report.json"):
        resolve_artifact(tmp_path, None)


@pytest.fixture(scope="module")
def wide_path(tmp_path_factory):
    _, model = supernet("resnet-tiny")
    gates = {k: np.ones(n, np.float32) for k, n in gate_inputs(model).items()}
    return save_onnx(apply_gates(model, gates), tmp_path_factory.mktemp("wide") / "model.onnx")


def in_dir(tmp_path, name, source) -> str:
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    (d / "m.onnx").write_bytes(source.read_bytes())
    return str(d / "m.onnx")


def test_baseline_paired_unpaired_and_reports(onnx_path, wide_path, tmp_path, capsys,
                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    in_dir(tmp_path, "base", onnx_path)
    in_dir(tmp_path, "cand", wide_path)
    # main: save the baseline next to its artifact
    monkeypatch.chdir(tmp_path / "base")
    assert bench("m.onnx", *FAST, "--save", "../baseline.json") == 0
    saved = json.loads((tmp_path / "baseline.json").read_text())
    assert saved["format"] == "nnfc-bench" and saved["artifacts"][0]["artifact"] == "base/m.onnx"
    # a pull request: a wider model under the same name, the baseline artifact present
    monkeypatch.chdir(tmp_path / "cand")
    capsys.readouterr()
    code = bench("m.onnx", *FAST, "--baseline", "../baseline.json", "--max-regression",
                 "lat=1000%", "--json", "--junit", "../junit.xml", "--markdown", "../summary.md")
    run = json.loads(capsys.readouterr().out)
    comp = run["artifacts"][0]["comparison"]
    assert comp["baseline"]["artifact_available"] is True
    lat, mem = comp["changes"]
    assert lat["method"] == "paired" and lat["ci"][0] <= lat["change"] <= lat["ci"][1]
    assert not lat["regression"]                      # within the (huge) latency threshold
    assert mem["method"] == "exact" and mem["change"] > 0.01 and mem["regression"]
    assert code == 1 and run["regression"] is True and run["exit_code"] == 1
    junit = (tmp_path / "junit.xml").read_text()
    assert junit.count("<testcase ") == 2 and 'failures="1"' in junit
    assert 'name="memory"' in junit and "memory regressed" in junit
    md = (tmp_path / "summary.md").read_text()
    assert "| `m.onnx` | desktop |" in md and "**REGRESSION**" in md
    # the baseline artifact is gone: the candidate is compared with the saved rounds
    (tmp_path / "base" / "m.onnx").unlink()
    (tmp_path / "cand" / "m.onnx").write_bytes(onnx_path.read_bytes())
    code = bench("m.onnx", *FAST, "--baseline", "../baseline.json", "--max-regression",
                 "lat=1000%", "--save", "../pr.json")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "vs saved rounds, relative to the reference model" in out
    assert "no significant regression" in out
    pr = json.loads((tmp_path / "pr.json").read_text())
    lat, mem = pr["artifacts"][0]["comparison"]["changes"]
    assert lat["method"] == "unpaired-normalized" and mem["change"] == 0
    assert len(pr["reference"]["rounds"]) == 3 and pr["reference"]["version"]
    # trend over the saved runs
    monkeypatch.chdir(tmp_path)
    pytest.importorskip("matplotlib")
    assert bench("--trend", "baseline.json", "pr.json", "--plot", "trend.png") == 0
    out = capsys.readouterr().out
    assert "m.onnx" in out and "baseline" in out and "trend.png" in out
    assert (tmp_path / "trend.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert bench("--trend", "baseline.json", "pr.json", "--plot", "trend.png") == 0  # ours


def test_reports_never_overwrite_foreign_files(onnx_path, tmp_path, capsys):
    foreign = tmp_path / "notes.json"
    foreign.write_text('{"mine": 1}')
    for flag in ("--save", "--junit", "--markdown"):
        assert bench(str(onnx_path), *FAST, flag, str(foreign)) == 2
        assert "not overwriting" in capsys.readouterr().err
    assert foreign.read_text() == '{"mine": 1}'
    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG not ours")
    assert bench(str(onnx_path), *FAST, "--save", str(tmp_path / "r.json")) == 0
    assert bench("--trend", str(tmp_path / "r.json"), "--plot", str(png)) == 2
    assert png.read_bytes() == b"\x89PNG not ours"


def test_bad_baselines(onnx_path, tmp_path, capsys):
    assert bench(str(onnx_path), *FAST, "--baseline", str(tmp_path / "none.json")) == 2
    assert "does not exist" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text('{"format": "something"}')
    assert bench(str(onnx_path), *FAST, "--baseline", str(other)) == 2
    assert "not a run saved by `nnfc bench --save`" in capsys.readouterr().err
    saved = tmp_path / "run.json"
    assert bench(str(onnx_path), *FAST, "--save", str(saved)) == 0
    data = json.loads(saved.read_text())
    data["artifacts"][0]["target"] = "android"
    saved.write_text(json.dumps(data))
    assert bench(str(onnx_path), *FAST, "--baseline", str(saved)) == 2
    assert "baseline measured it on android" in capsys.readouterr().err
    assert bench(str(onnx_path), "--plot", str(tmp_path / "p.png")) == 2
    assert bench(str(onnx_path), *FAST, "--max-regression", "lat=5") == 2
    assert bench(str(onnx_path), *FAST, "--eval") == 2
    assert "--eval needs `nnfc compile` output directories" in capsys.readouterr().err


def test_several_artifacts_one_run(onnx_path, wide_path, capsys):
    assert bench(str(onnx_path), str(wide_path), *FAST, "--json") == 0
    run = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in run["artifacts"]] == [str(onnx_path), str(wide_path)]
    small, wide = run["artifacts"]
    assert wide["memory_mb"] > small["memory_mb"]
    assert run["host"]["load_before"] and run["host"]["cpus"]


def test_eval_runs_the_artifact_on_the_task_test_split(tmp_path, capsys):
    """--eval: the artifact in a compile output directory, run by its target on the factory's
    test split, scores what `nnfc eval` computes for the same pruned model."""
    from nnfc.bundle import read_bundle
    from nnfc.evaluation import evaluate_bundle, run_assembler
    from nnfc.targets import get_target
    bundle = read_bundle(Path(__file__).resolve().parent.parent / "factories" / "numvqa-resnet")
    task, limit = ["only-two", "odd"], 0.1
    gates = {k: v[0] for k, v in run_assembler(bundle, [task], [limit]).items()}
    out = tmp_path / "compiled"
    out.mkdir()
    pruned = save_onnx(apply_gates(onnx.load(bundle.supernet_path), gates), out / "model.onnx")
    artifact = get_target("desktop").lower(pruned, out)
    (out / "report.json").write_text(json.dumps({
        "request": {"task": task, "target": "desktop"}, "artifact": artifact.name,
        "bundle": {"path": str(bundle.root)}, "measured": {"memory_mb": 0.2}}))
    assert bench(str(out), *FAST, "--eval", "--eval-samples", "100", "--json") == 0
    (entry,) = json.loads(capsys.readouterr().out)["artifacts"]
    (row,) = evaluate_bundle(bundle, [task], [limit], samples=100)
    assert entry["eval"]["metric"] == row.metric == "accuracy"
    assert entry["eval"]["value"] == pytest.approx(row.value) and 0.6 < row.value <= 1
    assert entry["eval"]["task"] == task and entry["eval"]["samples"] == 100
    # a baseline that scored 5 points more: an accuracy regression (exact, no interval)
    saved = tmp_path / "base.json"
    assert bench(str(out), *FAST, "--eval", "--eval-samples", "100", "--save", str(saved)) == 0
    data = json.loads(saved.read_text())
    data["artifacts"][0]["eval"]["value"] += 0.05
    saved.write_text(json.dumps(data))
    capsys.readouterr()
    assert bench(str(out), *FAST, "--eval", "--eval-samples", "100", "--baseline", str(saved),
                 "--max-regression", "lat=1000%") == 1
    out_text = capsys.readouterr().out
    assert "-5.0 pt" in out_text and "REGRESSION: " in out_text and " acc" in out_text
    # an artifact whose outputs are not the network's raw ones (e.g. a detection network joined
    # to its decode graph), for a family without evaluate_deployed: one clear error
    model = onnx.load(out / "model.onnx")
    producer = next(n for n in model.graph.node if "logits" in n.output)
    producer.output[list(producer.output).index("logits")] = "decoded"
    model.graph.output[0].name = "decoded"
    onnx.save(model, out / "model.onnx")
    assert bench(str(out), *FAST, "--eval") == 2
    assert "--eval: the artifact outputs decoded" in capsys.readouterr().err
