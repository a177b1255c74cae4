"""`nnfc baseline retrain|prune-tune` end to end on a tiny trained factory: report fields, the
torch-pruning loop ends within budget by the predictor and really removes channels (the pruned
network equals the gated supernet), resumption does not redo finished work, one-line errors."""

import json

import numpy as np
import onnx
import pytest
import torch

from baseline_fixtures import profiled_tiny_factory
from cli_runner import run_cli
from nnfc.compiler.graph_stats import graph_stats

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def bundle():
    return profiled_tiny_factory()


def _gated_subnet_stats(bundle, gates):
    from nnfc.passes import apply_gates
    return graph_stats(apply_gates(onnx.load(str(bundle / "supernet.onnx")), gates))


def _report(out):
    return json.loads((out / "report.json").read_text())


def test_retrain_end_to_end(bundle, tmp_path, capsys):
    out = tmp_path / "rt"
    code, stdout, err = run_cli(["baseline", "retrain", "--bundle", str(bundle), "--task",
                                 "0,has", "--lat", "1ms", "--mem", "1KB", "--epochs", "1",
                                 "--quiet", "-o", str(out)], capsys)
    assert code == 0, err
    assert {"model.onnx", "model.ort.onnx", "report.json", "summary.txt"} <= \
        {p.name for p in out.iterdir()}
    r = _report(out)
    assert r["method"] == "retrain"
    assert r["request"] == {"task": ["has", "0"], "target": "desktop", "lat_ms": 1.0,
                            "mem_mb": 0.001}
    assert r["activation_ratio"] == 1.0
    assert r["measured"]["latency_ms"]["median"] > 0
    assert r["within_budget"] is False  # 1KB: the budget is recorded, not obeyed
    assert r["accuracy"]["metric"] == "accuracy" and 0.5 < r["accuracy"]["value"] <= 1
    assert r["max_abs_diff_artifact_vs_onnx"] < 1e-4
    c = r["customization"]
    assert c["epochs"] == 1 and c["factory_epochs"] == 3 and len(c["history"]) == 1
    assert c["seconds"] >= c["parts_s"]["training"] > 0
    # full width: the same structure as the supernet with every gate on
    ones = {f"gate.{g['name']}": np.ones(g["size"], np.float32)
            for g in json.loads((bundle / "manifest.json").read_text())["gate_layers"]}
    assert graph_stats(onnx.load(str(out / "model.onnx"))).params == \
        _gated_subnet_stats(bundle, ones).params
    assert "Retrain ignores the budget" in stdout


def test_retrain_resumes_without_redoing_epochs(bundle, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    args = ["baseline", "retrain", "--bundle", str(bundle), "--task", "has,0", "--epochs", "2",
            "--quiet", "--checkpoint-dir", str(ckpt)]
    code, _, err = run_cli(args + ["-o", str(tmp_path / "a"), "--stop-after", "1"], capsys)
    assert code == 0, err
    assert not (tmp_path / "a").exists() and "continue with --resume" in err
    assert json.loads((ckpt / "state.json").read_text())["epoch"] == 0
    code, _, err = run_cli(args + ["-o", str(tmp_path / "a"), "--resume"], capsys)
    assert code == 0, err
    c = _report(tmp_path / "a")["customization"]
    assert c["epochs_this_session"] == 1 and [h["epoch"] for h in c["history"]] == [1, 2]
    # finished: another target/budget reuses the trained model, no epoch is run again
    code, _, err = run_cli(args + ["-o", str(tmp_path / "b"), "--resume", "--lat", "5ms"],
                           capsys)
    assert code == 0, err
    assert _report(tmp_path / "b")["customization"]["epochs_this_session"] == 0
    # a checkpoint of another run is refused in one line
    code, _, err = run_cli(["baseline", "retrain", "--bundle", str(bundle), "--task",
                            "only-four,odd", "--epochs", "2", "--checkpoint-dir", str(ckpt),
                            "--resume", "-o", str(tmp_path / "c")], capsys)
    assert code == 2 and "belongs to another run" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("importance", ["magnitude", "taylor"])
def test_pruning_loop_meets_budget_and_equals_gated_supernet(bundle, importance):
    from nnfc.baselines.context import open_context
    from nnfc.baselines.pruning import Budget, gated_roots, prune_to_budget
    from nnfc.baselines.prune_tune import load_supernet
    from nnfc.baselines import task_data

    ctx = open_context(bundle, ["has", "0"], "desktop")
    net = load_supernet(ctx, ctx.cfg)
    reference = load_supernet(ctx, ctx.cfg)
    full_lat, full_mem = (float(v[0]) for v in ctx.predictor.predict(
        {f"gate.{g.name}": np.ones(g.size, np.float32) for g in net.gate_layers()}))
    budget = Budget(None, 0.6 * full_mem, ctx.predictor.margins)
    batch = task_data.rows(task_data.sample_batch(ctx.family, ctx.task, 64,
                                                  np.random.default_rng(0)), np.arange(64))
    result = prune_to_budget(net, ctx.image_shape, ctx.predictor, budget, importance=importance,
                             taylor_batch=lambda: batch,
                             loss_fn=lambda n, b: task_data.batch_loss(n, ctx.family, b),
                             progress=False)
    lat, mem = (float(v[0]) for v in ctx.predictor.predict(result.gates))
    assert budget.holds(lat, mem)
    assert not budget.holds(result.trace[-2]["latency_ms"], result.trace[-2]["memory_mb"])
    # torch-pruning removed channels: smaller weights, exactly the kept ones
    sizes = {g.name: g.size for g in net.gate_layers()}
    modules = dict(net.named_modules())
    for module, (layer, size) in gated_roots(net).items():
        assert modules[module].weight.shape[0] == len(result.kept[module]) <= size
    assert sum(map(len, result.kept.values())) < sum(sizes.values())
    # ... and the pruned network computes what the gated supernet computes with those gates,
    # on every output
    xt = torch.from_numpy(task_data.sample_batch(ctx.family, ctx.task, 16,
                                                 np.random.default_rng(1))["image"])
    with torch.no_grad():
        want = reference(xt, {k[len("gate."):]: torch.from_numpy(v)
                              for k, v in result.gates.items()})
        got = net.eval()(xt)
    assert list(got) == list(want) == task_data.output_names(ctx.family)
    for name in want:
        np.testing.assert_allclose(got[name].numpy(), want[name].numpy(), atol=1e-5)


def test_prune_tune_end_to_end_and_resume(bundle, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    args = ["baseline", "prune-tune", "--bundle", str(bundle), "--task", "has,0",
            "--mem", "15KB", "--epochs", "2", "--quiet", "--checkpoint-dir", str(ckpt),
            "-o", str(tmp_path / "pt")]
    code, _, err = run_cli(args + ["--stop-after", "1"], capsys)
    assert code == 0, err
    assert not (tmp_path / "pt").exists()
    code, _, err = run_cli(args + ["--resume"], capsys)
    assert code == 0, err
    assert "pruning restored" in err  # the pruning was not redone
    r = _report(tmp_path / "pt")
    assert r["method"] == "prune-tune" and r["request"]["mem_mb"] == 0.015
    c = r["customization"]
    assert c["epochs_this_session"] == 1 and len(c["history"]) == 2
    assert {"pruning", "fine-tuning"} <= set(c["parts_s"])
    # within budget by the predictor (with its margin) and as measured
    assert r["predicted"]["memory_mb"] * (1 + c["safety_margin"]["memory"]) <= 0.015
    assert r["within_budget"] is True and r["measured"]["memory_mb"] <= 0.015
    assert 0 < r["activation_ratio"] < 1 and 0.5 <= r["accuracy"]["value"] <= 1
    # the exported model is the gated subnet of the kept channels, structurally
    pruning = json.loads((tmp_path / "pt" / "pruning.json").read_text())
    assert pruning["history"] and pruning["trace"][-1]["pruned_ratio"] == c["pruned_ratio"]
    from nnfc.baselines.context import open_context
    from nnfc.baselines.prune_tune import load_supernet
    from nnfc.baselines.pruning import gated_roots, gates_from_kept
    ctx = open_context(bundle, ["has", "0"], "desktop")
    gates = gates_from_kept(pruning["kept"], gated_roots(load_supernet(ctx, ctx.cfg)))
    assert graph_stats(onnx.load(str(tmp_path / "pt" / "model.onnx"))).params == \
        _gated_subnet_stats(bundle, gates).params


@pytest.mark.parametrize("args,needle", [
    (["--task", "has,eleven", "--mem", "15KB"], "unknown attribute(s) 'eleven'"),
    (["--task", "has,0", "--lat", "1us"], "no pruning of the gated channels reaches this budget"),
    (["--task", "has,0", "--mem", "15KB", "--target", "android"],
     "make it with: nnfc profile --bundle"),
    (["--task", "has,0"], "give a budget"),
])
def test_prune_tune_errors_are_one_line(bundle, tmp_path, capsys, args, needle):
    out = tmp_path / "out"
    code, _, err = run_cli(["baseline", "prune-tune", "--bundle", str(bundle), "--quiet",
                            "-o", str(out)] + args, capsys)
    assert code == 2
    assert needle in err and err.startswith("nnfc: error:") and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "out.ckpt").exists()


def test_retrain_bad_input_before_any_training(bundle, tmp_path, capsys):
    existing = tmp_path / "file"
    existing.write_text("not nnfc's")
    for args, needle in ((["--task", "has,0", "-o", str(existing)], str(existing)),
                         (["--task", "has", "-o", str(tmp_path / "o")], "not a NumVQA task"),
                         (["--task", "has,0", "--target", "gpu9", "-o", str(tmp_path / "o")],
                          "gpu9")):
        code, _, err = run_cli(["baseline", "retrain", "--bundle", str(bundle), "--quiet"] + args,
                               capsys)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert existing.read_text() == "not nnfc's" and not (tmp_path / "o.ckpt").exists()
