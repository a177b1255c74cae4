"""nnfc eval: pruned ONNX models (apply_gates + ORT) compute what the gated torch supernet
computes; table and --json output; clear errors."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from factory_fixtures import train_tiny
from nnfc.bundle import read_bundle
from nnfc.bundle_weights import torch_state
from nnfc.cli import cli, main
from nnfc.passes import apply_gates
from nnfc.evaluation import (EvalRow, activation_ratio, evaluate_bundle, run_assembler,
                             task_family_of, unseen_gaps)
from nnfc.training.config import config_from_dict
from nnfc.training.trainer import build_models


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return read_bundle(train_tiny(tmp_path_factory.mktemp("factory") / "tiny"))


def test_pruned_models_equal_torch_supernet(bundle):
    family = task_family_of(bundle)
    net, _ = build_models(config_from_dict(bundle.manifest["training"]["config"]), family)
    net.load_state_dict(torch_state(bundle.root / "supernet.safetensors"))
    net.eval()
    names = [o["name"] for o in bundle.output_spec]
    x, _, _ = family.sample([("has", "0")], 8, "test", np.random.default_rng(0))
    tasks = [["has", "0"], ["has", "0"], ["has", "1"]]
    gates = run_assembler(bundle, tasks, [0.05, 1.0, 0.5])
    supernet = onnx.load(str(bundle.supernet_path))
    for i in range(3):
        g = {k: v[i] for k, v in gates.items()}
        pruned = apply_gates(supernet, g)
        assert not any(inp.name.startswith("gate.") for inp in pruned.graph.input)
        outs = ort.InferenceSession(pruned.SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(names, {"input": x})
        with torch.no_grad():
            ref = net(torch.from_numpy(x), {k[5:]: torch.from_numpy(v) for k, v in g.items()})
        assert list(ref) == names
        for out, name in zip(outs, names):
            assert np.allclose(out, ref[name].numpy(), atol=1e-4)
        assert 0.0 <= activation_ratio(g) <= 1.0


def test_evaluate_bundle_rows(bundle):
    rows = evaluate_bundle(bundle, [["has", "0"], ["has", "1"]], [0.5, 1.0], samples=40)
    assert [(r.task, r.limit, r.seen) for r in rows] == [
        (["has", "0"], 0.5, True), (["has", "0"], 1.0, True),
        (["has", "1"], 0.5, False), (["has", "1"], 1.0, False)]
    assert all(r.activation_ratio <= r.limit + 0.01 for r in rows)
    # the tiny factory learned its seen task (chance = 0.5)
    assert all(r.metric == "accuracy" for r in rows)
    assert max(r.value for r in rows[:2]) >= 0.7


def test_evaluation_keeps_a_bounded_number_of_sessions(bundle, monkeypatch):
    """Each pruned model's session holds its weights and arena: evaluating many (task, limit)
    pairs must not keep them all (a 52-task detection eval grew past 20 GB)."""
    import gc
    import weakref

    import nnfc.evaluation as evaluation
    live = weakref.WeakSet()
    opened = []

    class Counted(ort.InferenceSession):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            live.add(self)
            gc.collect()
            opened.append(len(live))

    monkeypatch.setattr(ort, "InferenceSession", Counted)
    monkeypatch.setattr(evaluation, "KEPT_SESSIONS", 2)
    limits = [0.2, 0.4, 0.6, 0.8, 1.0]
    evaluate_bundle(bundle, [["has", "0"], ["has", "1"]], limits, samples=2)
    assert len(opened) >= 5  # distinct gates: a session each
    assert max(opened) <= 2 + 1  # the kept ones (+ the assembler's, released after its call)


def test_cli_json_and_table(bundle):
    runner = CliRunner()
    res = runner.invoke(cli, ["eval", "--bundle", str(bundle.root), "--task", "only-four,odd",
                               "--limit", "0.5,1", "--samples", "20", "--json"],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert len(rows) == 2
    assert set(rows[0]) == {"task", "limit", "metric", "value", "accuracy", "activation_ratio",
                            "seen"}
    assert rows[0]["metric"] == "accuracy" and rows[0]["value"] == rows[0]["accuracy"]
    assert rows[0]["task"] == ["only-four", "odd"] and rows[0]["seen"] is True
    res = runner.invoke(cli, ["eval", "--bundle", str(bundle.root), "--samples", "10",
                               "--limit", "1"], catch_exceptions=False)
    assert res.exit_code == 0
    assert "{has, 1}" in res.output and "unseen" in res.output and "seen" in res.output
    assert "unseen tasks trail seen ones by" in res.output and "100%: " in res.output


def test_unseen_gaps():
    rows = [EvalRow(["a"], 1.0, "map50", v, 0.1, True) for v in (0.9, 0.8)] + \
        [EvalRow(["b"], 1.0, "map50", v, 0.1, False) for v in (0.7, 0.5)] + \
        [EvalRow(["a"], 0.5, "map50", 0.9, 0.1, True)]  # no unseen row at 50 %: no gap
    (gap,) = unseen_gaps(rows)
    assert gap["limit"] == 1.0 and gap["gap"] == pytest.approx(0.25)
    assert gap["unseen_sem"] == pytest.approx(0.1)  # std 0.1414 / sqrt(2)
    (one,) = unseen_gaps(rows[:3])
    assert one["gap"] == pytest.approx(0.15) and one["unseen_sem"] is None


@pytest.mark.parametrize("args, message", [
    (["--task", "has,purple"], "unknown attribute"),
    (["--task", "has,odd,even"], "not a NumVQA task"),
    (["--limit", "1.5"], "must lie in (0, 1]"),
    (["--limit", "abc"], "--limit"),
])
def test_cli_errors(bundle, args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--bundle", str(bundle.root), "--samples", "4", *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
