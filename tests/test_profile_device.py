"""Profiling a device this machine cannot drive (jetson without TensorRT here): export the
subnets + script, read the device log back, fit, and compile with a predicted-only verdict."""

import json

import pytest

from compile_fixtures import profiled_bundle
from cli_runner import run_cli



def fake_trtexec_log(models, latency):
    lines = []
    for i, m in enumerate(models):
        ms = latency(i)
        lines += [f"### nnfc-model: {m}",
                  "[11/24/2026-20:00:00] [I] === Performance summary ===",
                  f"[11/24/2026-20:00:00] [I] Latency: min = {ms * 0.9:.4f} ms, "
                  f"max = {ms * 1.2:.4f} ms, mean = {ms:.4f} ms, median = {ms:.4f} ms, "
                  f"percentile(90%) = {ms * 1.1:.4f} ms, percentile(95%) = {ms * 1.1:.4f} ms",
                  "### nnfc-exit: 0"]
    return "\n".join(lines) + "\n"


def test_jetson_device_profile_fit_and_compile(tmp_path, capsys):
    pytest.importorskip("nnfc.targets.tensorrt")
    bundle = profiled_bundle()
    dev = tmp_path / "dev"
    code, out, err = run_cli(["profile", "--bundle", str(bundle), "--target", "jetson",
                              "--subnets", "16", "--device-dir", str(dev)], capsys)
    assert code == 0, err
    plan = json.loads((dev / "plan.json").read_text())
    assert len(plan["rows"]) == 16 and (dev / "profile_on_jetson.sh").is_file()
    assert all((dev / r["model"]).is_file() for r in plan["rows"])
    assert "fit --measurements" in out
    # the device's log: latency grows with the subnet's FLOPs
    (dev / "trt_measurements.log").write_text(fake_trtexec_log(
        [r["model"] for r in plan["rows"]],
        lambda i: 0.05 + plan["rows"][i]["flops"] / 1e8))
    pred = tmp_path / "jetson.json"
    code, out, err = run_cli(["profile", "--bundle", str(bundle), "--target", "jetson", "-o",
                              str(pred), "fit", "--measurements",
                              str(dev / "trt_measurements.log")], capsys)
    assert code == 0, err
    assert json.loads(pred.read_text())["target"] == "jetson"
    out_dir = tmp_path / "o"
    code, out, err = run_cli(["compile", "--bundle", str(bundle), "--target", "jetson",
                              "--task", "odd", "--lat", "1s", "--profile", str(pred),
                              "-o", str(out_dir)], capsys)
    assert code == 0, err
    report = json.loads((out_dir / "report.json").read_text())
    assert report["measured"]["latency_ms"] is None and report["measured"]["not_measured"]
    assert report["within_budget"] is None and report["within_budget_predicted"] is True
    assert report["max_abs_diff_vs_supernet"] < 1e-4
    assert "not measured here" in out
