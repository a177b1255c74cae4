"""nnfc's passes as onnx-ir passes inside other pass sequences (onnxscript's optimizer between
binding and pruning), gate identification that survives rewrites, and loud failures."""

import numpy as np
import onnx_ir as ir
import onnxscript.optimizer
import pytest
from onnx_ir.passes import PassManager
from onnx_ir.passes.common import RemoveUnusedNodesPass

from nnfc.passes import (BindGatesPass, FoldGateConstantsPass, PruneError,
                         PruneGatedChannelsPass, RemoveIdentityGatesPass, apply_gates)
from nnfc.passes.graph_utils import GATE_TAG
from onnx_text import model_from_text, run_all, weight_shapes
from test_passes_foreign import GATES, foreign_model

HEADER = '<ir_version: 8, opset_import: ["" : 18]>\n'


def _gates():
    return {k: np.asarray(v, np.float32) for k, v in GATES.items()}


class _OptimizeIr(RemoveUnusedNodesPass):
    """onnxscript's optimizer as one pass of a PassManager."""

    def call(self, model):
        onnxscript.optimizer.optimize_ir(model)
        return ir.passes.PassResult(model, modified=True)


def _run_pipeline(passes):
    model = foreign_model()
    graph_model = ir.from_proto(model)
    PassManager(passes)(graph_model)
    return model, ir.to_proto(graph_model)


def test_optimize_ir_between_bind_and_prune_still_prunes_fully():
    prune = PruneGatedChannelsPass()
    model, out = _run_pipeline([BindGatesPass(_gates()), _OptimizeIr(), prune,
                                RemoveIdentityGatesPass(), _OptimizeIr()])
    x = np.random.default_rng(0).standard_normal((2, 4, 8, 8)).astype(np.float32)
    for got, ref in zip(run_all(out, {"x": x}), run_all(model, {"x": x, **_gates()})):
        np.testing.assert_allclose(got, ref, atol=1e-5)
    # the same structure as nnfc's own pipeline gives
    reference = apply_gates(foreign_model(), _gates())
    assert sorted(weight_shapes(out).values()) == sorted(weight_shapes(reference).values())
    assert {r.gate: r.kept for r in prune.reports}["gate.g_a"] == 3


def test_gate_folded_by_an_optimizer_loses_its_tag_but_is_found_by_name():
    graph_model = ir.from_proto(foreign_model())
    PassManager([BindGatesPass(_gates()), FoldGateConstantsPass()])(graph_model)
    for value in graph_model.graph.initializers.values():
        value.metadata_props.pop(GATE_TAG, None)  # what a rewriting optimizer leaves
    prune = PruneGatedChannelsPass()
    assert prune(graph_model).modified
    assert {r.gate for r in prune.reports} == set(GATES)


def test_a_gate_fused_away_fails_loudly():
    graph_model = ir.from_proto(foreign_model())
    PassManager([BindGatesPass(_gates()), FoldGateConstantsPass()])(graph_model)
    for node in list(graph_model.graph):  # fuse gate.g_a's Mul away (as a Conv-fusing pass might)
        tagged = [v for v in node.inputs if v is not None and
                  v.metadata_props.get(GATE_TAG) == "gate.g_a"]
        if node.op_type == "Mul" and tagged:
            data = next(v for v in node.inputs if v is not tagged[0])
            node.outputs[0].replace_all_uses_with(data)
            graph_model.graph.remove(node, safe=True)
    with pytest.raises(PruneError, match="gate.g_a"):
        PruneGatedChannelsPass().requires(graph_model)


def test_bind_gates_pass_contract():
    graph_model = ir.from_proto(foreign_model())
    result = BindGatesPass(_gates())(graph_model)
    assert result.modified and result.model is graph_model
    assert not [v for v in graph_model.graph.inputs if v.name.startswith("gate.")]
    assert "nnfc.gates" in graph_model.metadata_props
    with pytest.raises(Exception, match="no gate input"):
        BindGatesPass({"gate.nope": np.ones(3)})(graph_model)


def test_no_stale_name_cache_between_passes():
    graph_model = ir.from_proto(foreign_model())
    BindGatesPass(_gates())(graph_model)
    assert "nnfc.names" not in graph_model.graph.meta


GROUPED = HEADER + """
    g (float[1,8,8,8] x, float[8] gate_a, float[12] gate_b, float[8,8,1,1] W1,
       float[12,2,3,3] W2, float[12] B2, float[5,12,1,1] W3) => (float[1,5,8,8] y) {
        c1 = Conv (x, W1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m1 = Mul (c1, ga)
        r1 = Relu (m1)
        c2 = Conv <group = 4, pads = [1,1,1,1]> (r1, W2, B2)
        gb = Reshape (gate_b, shape)
        m2 = Mul (c2, gb)
        r2 = Relu (m2)
        y = Conv (r2, W3)
    }"""


def test_grouped_conv_removes_equal_counts_per_group():
    from onnx_text import check_pruned
    model = model_from_text(GROUPED)
    # groups of 2 input channels: group 0 {0,1}, 1 {2,3}, 2 {4,5}, 3 {6,7}
    gates = {"gate.a": [1, 0, 0, 1, 1, 0, 0, 1],        # one off in every group -> all go
             "gate.b": [1, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 1]}  # groups of 3: off 1,1,2,1 -> 1
    pruned, reports = check_pruned(model, gates)
    shapes = weight_shapes(pruned)
    assert shapes["c1"] == (4, 8, 1, 1)
    assert shapes["c2"] == (8, 1, 3, 3)        # 4 groups x (2 - 1) inputs, 4 x (3 - 1) outputs
    assert shapes["y"] == (5, 8, 1, 1)
    assert reports["gate.b"].kept == 8 and "equal counts per group" in reports["gate.b"].notes[-1]


@pytest.mark.parametrize("seed", range(4))
def test_grouped_conv_random_gates(seed):
    from onnx_text import check_pruned
    rng = np.random.default_rng(seed)
    gates = {"gate.a": (rng.random(8) < 0.5).astype(np.float32).tolist(),
             "gate.b": (rng.random(12) < 0.5).astype(np.float32).tolist()}
    check_pruned(model_from_text(GROUPED, seed), gates, seed)


GHOST = HEADER + """
    g (float[1,4,8,8] x, float[8] gate_a, float[4,4,1,1] W1, float[4,1,3,3] Wd, float[4] Bd,
       float[3,8,1,1] W3) => (float[1,3,8,8] y) {
        c1 = Conv (x, W1)
        r1 = Relu (c1)
        d = Conv <group = 4, pads = [1,1,1,1]> (r1, Wd, Bd)
        rd = Relu (d)
        cat = Concat <axis = 1> (r1, rd)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m = Mul (cat, ga)
        y = Conv (m, W3)
    }"""


@pytest.mark.parametrize("gate", [[1] * 8, [0] * 8, [1, 0, 1, 0, 0, 1, 1, 0],
                                  [1, 0, 1, 0, 1, 0, 1, 0]])
def test_gate_on_a_ghost_concat_is_exact_and_never_crashes(gate):
    from onnx_text import check_pruned
    pruned, reports = check_pruned(model_from_text(GHOST), {"gate.a": gate})
    # channel c of r1 reaches the Concat twice (at c, and through the depthwise op at 4 + c):
    # the two are coupled, and go when both are off (Torch-Pruning's dependency group)
    pairs = max(1, sum(gate[c] or gate[4 + c] for c in range(4)))
    shapes = weight_shapes(pruned)
    assert shapes["c1"] == (pairs, 4, 1, 1) and shapes["y"] == (3, 2 * pairs, 1, 1)
    if any(gate[c] != gate[4 + c] for c in range(4)):
        assert "data from another operand" in " ".join(reports["gate.a"].notes)


def test_concat_entered_backwards_prunes_its_producers():
    from onnx_text import check_pruned
    model = model_from_text(HEADER + """
    g (float[1,4,8,8] x, float[8] gate_a, float[3,4,1,1] W1, float[5,4,3,3] W2,
       float[2,8,1,1] W3) => (float[1,2,8,8] y) {
        c1 = Conv (x, W1)
        c2 = Conv <pads = [1,1,1,1]> (x, W2)
        cat = Concat <axis = 1> (c1, c2)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m = Mul (cat, ga)
        r = Relu (m)
        y = Conv (r, W3)
    }""")
    pruned, reports = check_pruned(model, {"gate.a": [1, 0, 1, 0, 0, 1, 1, 0]})
    shapes = weight_shapes(pruned)
    assert shapes["c1"] == (2, 4, 1, 1) and shapes["c2"] == (2, 4, 3, 3)
    assert shapes["y"] == (2, 4, 1, 1) and reports["gate.a"].kept == 4


def test_an_internal_failure_is_one_prune_error_naming_the_op(monkeypatch):
    from nnfc.passes.rules.conv import ConvRule

    def broken(self, slicer, node, layout):
        raise ValueError("weights in an unexpected layout")

    monkeypatch.setattr(ConvRule, "slice_sink", broken)
    with pytest.raises(PruneError, match=r"gate\.g_a at Conv node .*unexpected layout"):
        apply_gates(foreign_model(), _gates())


def test_cli_prune_of_a_ghost_graph_and_a_failure_are_one_line(tmp_path, monkeypatch, capsys):
    import json

    from cli_runner import run_cli
    from nnfc.onnx_io import save_onnx
    path = save_onnx(model_from_text(GHOST), tmp_path / "ghost.onnx")
    (tmp_path / "g.json").write_text(json.dumps({"gate.a": [1, 0, 1, 0, 0, 1, 1, 0]}))
    args = ["prune", str(path), "--gates", str(tmp_path / "g.json"), "-o", str(tmp_path / "o.onnx")]
    code, out, err = run_cli(args, capsys)
    assert code == 0 and "gated-off channel(s) kept" in out, err
    from nnfc.passes import plan
    monkeypatch.setattr(plan, "find_region", lambda *a: 1 / 0)
    code, out, err = run_cli(args[:-1] + [str(tmp_path / "o2.onnx")], capsys)
    assert code == 2 and err.startswith("nnfc: error: cannot prune around gate gate.a")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o2.onnx").exists()


def test_a_failure_in_any_pass_is_one_prune_error(monkeypatch):
    import importlib
    fold_module = importlib.import_module("nnfc.passes.fold_constants")

    monkeypatch.setattr(fold_module, "fold_node", lambda graph, node, rules: 1 / 0)
    with pytest.raises(PruneError, match="in FoldGateConstantsPass: ZeroDivisionError"):
        apply_gates(foreign_model(), _gates())
