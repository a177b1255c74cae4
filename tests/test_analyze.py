"""``nnfc analyze``: every subcommand writes a PNG and JSON with the documented keys on a tiny
trained factory profiled here; the report's index.html shows every figure; outputs follow the
output-directory rules; evaluations and measurements are cached."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cli_runner import run_cli
from factory_fixtures import train_tiny

pytest.importorskip("matplotlib")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def factory(tmp_path_factory):
    """(bundle dir, profile JSON) of the tiny NumVQA factory, profiled on desktop (20 subnets,
    one quick round each)."""
    root = tmp_path_factory.mktemp("analyze")
    bundle = train_tiny(root / "tiny")
    profile = root / "prof" / "desktop.json"
    assert _quiet_cli(["profile", "--bundle", str(bundle), "--subnets", "20", "--runs", "2",
                       "--rounds", "1", "--warmup", "0", "-o", str(profile)]) == 0
    return Path(bundle), profile


def _quiet_cli(args) -> int:
    from nnfc.cli import main
    try:
        main(args)
    except SystemExit as exc:
        return exc.code or 0
    return 0


def _analyze(capsys, factory, sub, out, *extra, target=True):
    bundle, profile = factory
    args = ["analyze", sub, "--bundle", str(bundle), "-o", str(out), *extra]
    if target:
        args += ["--profile", str(profile)]
    return run_cli(args, capsys)


KEYS = {
    "frontier": {"task", "target", "points"},
    "activation": {"limits", "tasks", "seen", "unseen"},
    "gates": {"limit", "tasks", "task_similarity", "task", "limits", "limit_similarity"},
    "predictor": {"target", "points", "n_test"},
    "training": {"metric", "epochs", "loss", "evaluations", "periodic", "note"},
}


@pytest.mark.parametrize("sub", sorted(KEYS))
def test_subcommand_writes_png_and_json(sub, factory, tmp_path, capsys):
    out = tmp_path / sub
    extra = ["--task", "has,0"] if sub == "frontier" else ["--task", "has 0"] if sub == "gates" \
        else []
    code, stdout, err = _analyze(capsys, factory, sub, out, *extra,
                                 target=sub in ("frontier", "predictor"))
    assert code == 0, err
    assert (out / f"{sub}.png").read_bytes()[:8] == PNG
    data = json.loads((out / f"{sub}.json").read_text())
    assert KEYS[sub] <= set(data)
    assert json.loads((out / ".nnfc-output.json").read_text())["kind"] == "analysis"
    if sub == "frontier":
        assert len(data["points"]) >= 8 and data["task"] == ["has", "0"]
        for p in data["points"]:
            assert {"limit", "activation_ratio", "latency_ms", "memory_mb", "metric"} <= set(p)
            assert 0 <= p["activation_ratio"] <= 1
            assert p["latency_ms"] > 0 and 0 <= p["metric"] <= 1
            assert p["budget_ms"] >= p["predicted_latency_ms"]
    if sub == "gates":
        sim = np.array(data["task_similarity"])
        assert np.allclose(np.diag(sim), 1) and np.allclose(sim, sim.T)
    if sub == "training":  # the tiny factory records no periodic evaluation: said in one line
        assert not data["periodic"] and "no periodic evaluation" in stdout
        assert data["evaluations"] and len(data["epochs"]) == 3


def test_frontier_reuses_cached_evaluations_and_measurements(factory, tmp_path, capsys):
    for name in ("a", "b"):
        code, _, err = _analyze(capsys, factory, "frontier", tmp_path / name, "--task", "has,0",
                                "--limits", "0.1,0.5,1")
        assert code == 0, err
    second = json.loads((tmp_path / "b" / "frontier.json").read_text())
    first = json.loads((tmp_path / "a" / "frontier.json").read_text())
    assert second["metric_evaluations"] == 0 and second["measurement"]["measured_now"] == 0
    assert [p["latency_ms"] for p in first["points"]] == [p["latency_ms"] for p in
                                                           second["points"]]


def test_frontier_int8_curve(factory, tmp_path, capsys):
    code, stdout, err = _analyze(capsys, factory, "frontier", tmp_path / "q", "--task", "has,0",
                                 "--limits", "0.5,1", "--precision", "fp32,int8")
    assert code == 0, err
    data = json.loads((tmp_path / "q" / "frontier.json").read_text())
    rows = data["by_precision"]["int8"]
    assert [r["limit"] for r in rows] == [0.5, 1.0] and "int8:" in stdout
    assert all(r["latency_ms"] > 0 and 0 <= r["metric"] <= 1 for r in rows)
    code, _, err = _analyze(capsys, factory, "frontier", tmp_path / "r", "--precision", "fp16")
    assert code == 2 and "--precision" in err and err.count("\n") == 1


def test_report_index_shows_every_figure(factory, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, err = _analyze(capsys, factory, "report", out, "--task", "has,0")
    assert code == 0, err
    page = (out / "index.html").read_text()
    for name in ("frontier", "activation", "gates", "predictor", "training", "environments"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG, name
        assert f'src="{name}.png"' in page and f'href="{name}.json"' in page
    env = json.loads((out / "environments.json").read_text())
    assert [(c["background"], c["threads"]) for c in env["conditions"]] == [
        (0, 1), (1, 1), (2, 1), (3, 1), (0, 2)]
    assert all(c["median_ms"] > 0 for c in env["conditions"])
    assert "http" not in page.split("</style>")[1]  # static: no server, no remote assets
    report = json.loads((out / "report.json").read_text())
    assert set(report["seconds"]) == set(KEYS) | {"environments"}


def test_predictor_profiles_this_machine_when_it_has_no_profile(factory, tmp_path, capsys):
    """No --profile and none cached: this machine is profiled (as a first compile does), then
    extended to --profile-subnets so the predictor analysis can subsample."""
    bundle, _ = factory
    code, _, err = run_cli(["analyze", "predictor", "--bundle", str(bundle), "--profile-subnets",
                            "20", "--repeats", "1", "-o", str(tmp_path / "p")], capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "p" / "predictor.json").read_text())
    assert data["n_measured"] >= 20 and data["points"][-1]["subnets"] + data["n_test"] == \
        data["n_measured"]


def test_refuses_a_directory_of_user_files(factory, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = _analyze(capsys, factory, "activation", out, target=False)
    assert code == 2 and "refusing to write into" in err and err.count("\n") == 1
    assert (out / "notes.txt").read_text() == "keep me" and len(list(out.iterdir())) == 1


def test_bad_task_and_limits_are_one_error_line(factory, tmp_path, capsys):
    for extra, message in ((["--task", "pink,car"], "pink"),
                           (["--limits", "0,2"], "--limits")):
        code, _, err = _analyze(capsys, factory, "frontier", tmp_path / "x", *extra)
        assert code == 2 and message in err and "Traceback" not in err
        assert not (tmp_path / "x").exists()


def test_training_curve_reads_periodic_evaluation():
    from nnfc.analysis import training_curve
    history = [{"epoch": e, "loss": 2.0 / e, "ratio_minus_limit": 0.0,
                "eval": {"metric": "map50", "seen": {"0.5": {"map50": 0.1 * e}},
                         "unseen": {"0.5": 0.05 * e}}} for e in (1, 2, 3)]
    a = SimpleNamespace(bundle=SimpleNamespace(manifest={"training": {"metrics": {
        "metric": "map50", "history": history + ["garbage", {"epoch": "x"}]}}}),
        family=SimpleNamespace(metric="map50"))
    data = training_curve.compute(a)
    assert data["periodic"] and data["note"] is None
    assert [(r["epoch"], r["group"], r["value"]) for r in data["evaluations"]
            if r["group"] == "unseen"] == [(1, "unseen", 0.05), (2, "unseen", 0.1),
                                           (3, "unseen", pytest.approx(0.15))]


def test_jaccard_and_label_clusters():
    from nnfc.analysis.gate_similarity import jaccard
    from nnfc.analysis.plotting import clustered_labels
    sim = jaccard(np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1]]))
    assert np.allclose(sim, [[1, 0.5, 0], [0.5, 1, 0], [0, 0, 1]])
    labels = clustered_labels([0, 0.01, 0.5], [0, 0, 0], ["a", "b", "c"], 1, 1, join=",")
    assert [t for _, t in labels] == ["a,b", "c"]


def test_a_broken_or_foreign_cache_file_is_ignored(tmp_path):
    from nnfc.analysis.cache import ResultCache
    path = tmp_path / "metric.json"
    for text in ('{"format": "nnfc-analysis-cache", "version": 1, "entries": {"k": NaN}}',
                 '{"format": "other"}', "[1, 2", '{"format": "nnfc-analysis-cache", '
                 '"version": 1, "entries": {"k": 1, "k": 2}}'):
        path.write_text(text)
        cache = ResultCache(path)
        assert cache.get("k") is None
        cache.put("k", 0.5)  # rewritten whole
        assert ResultCache(path).get("k") == 0.5
