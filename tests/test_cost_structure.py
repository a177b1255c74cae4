"""The predictor's cost structure is the passes' own analysis: for every test graph (our backbones,
the detection head, hand-built foreign graphs, unnamed nodes, an NHWC graph, one graph per op
rule, real timm architectures) and many gate vectors, the predicted parameters, parameter bytes,
FLOPs and largest tensor equal ``graph_stats`` of the graph ``apply_gates`` actually prunes."""

import json

import numpy as np
import pytest

from nnfc.compiler.cost_analysis import analyse
from nnfc.compiler.cost_structure import CostStructure
from nnfc.compiler.graph_stats import graph_stats
from nnfc.passes import apply_gates, gate_inputs
from onnx_text import model_from_text

HEADER = '<ir_version: 8, opset_import: ["" : 18]>\n'

CONV_GATE_CONV = HEADER + """
    g (float[1,4,8,8] x, float[6] gate_a, float[6,4,3,3] W1, float[5,6,1,1] W2)
      => (float[1,5,8,8] y) {
        c1 = Conv <pads = [1,1,1,1]> (x, W1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m = Mul (c1, ga)
        r = Relu (m)
        y = Conv (r, W2)
    }"""

#: a gate before a BN + sigmoid: the off channels carry sigmoid(bias) into a 1x1 conv without a
#: bias (folding makes one) and into a padded 3x3 conv (kept) — costs depend on the constants
CARRY = HEADER + """
    g (float[1,4,8,8] x, float[6] gate_a, float[6,4,3,3] W1, float[6] s, float[6] bb,
       float[6] mu, float[6] var, float[5,6,1,1] W2, float[3,6,3,3] W3)
      => (float[1,5,8,8] y, float[1,3,8,8] z) {
        c1 = Conv <pads = [1,1,1,1]> (x, W1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m = Mul (c1, ga)
        b = BatchNormalization (m, s, bb, mu, var)
        a = Sigmoid (b)
        y = Conv (a, W2)
        z = Conv <pads = [1,1,1,1]> (m, W3)
    }"""

MATMUL_HEAD = HEADER + """
    g (float[1,4,8,8] x, float[6] gate_a, float[6,4,3,3] W1, float[6] B1, float[96,10] Wf)
      => (float[1,10] y) {
        c1 = Conv <pads = [1,1,1,1], strides = [2,2]> (x, W1, B1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m = Mul (c1, ga)
        s = Sigmoid (m)
        f = Flatten (s)
        y = MatMul (f, Wf)
    }"""

RESIDUAL = HEADER + """
    g (float[1,4,8,8] x, float[4] gate_s, float[6] gate_a, float[4,4,3,3] W0, float[6,4,1,1] W1,
       float[4,6,1,1] W2) => (float[1,4,8,8] y) {
        c0 = Conv <pads = [1,1,1,1]> (x, W0)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        gs = Reshape (gate_s, shape)
        stream = Mul (c0, gs)
        c1 = Conv (stream, W1)
        ga = Reshape (gate_a, shape)
        m = Mul (c1, ga)
        r = Relu (m)
        c2 = Conv (r, W2)
        y = Add (stream, c2)
    }"""

#: a gate on a residual branch's output: all off, the branch goes (y + 0 = y); ``UNGATED``: the
#: stream itself is not gated
BRANCH = HEADER + """
    g (float[1,4,8,8] x, float[4] gate_s, float[6] gate_a, float[4] gate_b, float[4,4,3,3] W0,
       float[6,4,1,1] W1, float[4,6,3,3] W2, float[4] B2, float[3,4,1,1] W3)
      => (float[1,3,8,8] y) {
        c0 = Conv <pads = [1,1,1,1]> (x, W0)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        gs = Reshape (gate_s, shape)
        stream = Mul (c0, gs)
        c1 = Conv (stream, W1)
        ga = Reshape (gate_a, shape)
        m = Mul (c1, ga)
        r = Relu (m)
        c2 = Conv <pads = [1,1,1,1]> (r, W2, B2)
        gb = Reshape (gate_b, shape)
        m2 = Mul (c2, gb)
        s2 = Add (stream, m2)
        y = Conv (s2, W3)
    }"""

GROUPED = HEADER + """
    g (float[1,4,8,8] x, float[8] gate_a, float[8,4,1,1] W1, float[8,2,3,3] W2, float[8] B2,
       float[8] gate_b, float[3,8,1,1] W3) => (float[1,3,8,8] y) {
        c1 = Conv (x, W1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m1 = Mul (c1, ga)
        c2 = Conv <group = 4, pads = [1,1,1,1]> (m1, W2, B2)
        gb = Reshape (gate_b, shape)
        m2 = Mul (c2, gb)
        y = Conv (m2, W3)
    }"""


def _text_graphs():
    from test_op_rules import TEMPLATE, UNARY_LINES
    from test_passes_heads import FPN, SPLIT
    from test_passes_nhwc import NHWC
    from test_passes_pipeline import GHOST
    graphs = {"conv-gate-conv": CONV_GATE_CONV, "carry": CARRY, "matmul-head": MATMUL_HEAD,
              "residual": RESIDUAL, "grouped": GROUPED, "branch": BRANCH,
              "branch-ungated-stream": BRANCH.replace("stream = Mul (c0, gs)", "stream = Relu (c0)")
              .replace("float[4] gate_s, ", "").replace("gs = Reshape (gate_s, shape)", ""), "fpn": FPN, "nhwc": NHWC, "ghost": GHOST,
              "split": SPLIT.replace("SPLIT_LINE", "split = Constant <value = int64[2] {3, 5}> ()"
                                     "\n s1, s2 = Split <axis = 1> (r1, split)")}
    from test_passes_exporters import PATTERNS, header
    graphs.update({f"exporter-{name}": header(12) + body
                   for name, (body, _, _) in PATTERNS.items()})
    for op, line in {"relu": "b = Relu (a)", "clip": UNARY_LINES["Clip"],
                     "mul-k": "b = Mul (a, K)", "add-k": "b = Add (a, K)",
                     "maxpool": "b = MaxPool <kernel_shape = [3,3], pads = [1,1,1,1]> (a)"
                     }.items():
        graphs[f"rule-{op}"] = TEMPLATE.replace("OP_LINE", line).replace("OPSET", "18")
    return graphs


def _gate_vectors(model, n: int = 6, seed: int = 0):
    sizes = gate_inputs(model)
    rng = np.random.default_rng(seed)
    yield {k: np.ones(s, np.float32) for k, s in sizes.items()}
    for name in sizes:  # one layer all off
        gates = {k: np.ones(s, np.float32) for k, s in sizes.items()}
        gates[name][:] = 0
        yield gates
    for i in range(n):
        p = (0.5, 0.25, 0.1)[i % 3]
        yield {k: (rng.random(s) < p).astype(np.float32) for k, s in sizes.items()}


def assert_predictions_exact(model, n: int = 6, seed: int = 0, unnamed: bool = False):
    if unnamed:
        for node in model.graph.node:
            node.name = ""
    structure = CostStructure.from_json(json.loads(json.dumps(analyse(model).to_json())))
    for gates in _gate_vectors(model, n, seed):
        real = graph_stats(apply_gates(model, gates))
        got = structure.graph_terms(gates)
        figures = {k: int(got[k][0]) for k in ("params", "param_bytes", "flops", "peak_bytes")}
        want = {"params": real.params, "param_bytes": real.param_bytes, "flops": real.flops,
                "peak_bytes": real.peak_tensor_bytes}
        assert figures == want, {k: v.tolist() for k, v in gates.items()}
        terms = structure.memory_terms(gates)
        assert terms["param_bytes"][0] == real.param_bytes


@pytest.mark.parametrize("name", sorted(_text_graphs()))
@pytest.mark.parametrize("unnamed", [False, True], ids=["named", "unnamed"])
def test_text_graphs(name, unnamed):
    assert_predictions_exact(model_from_text(_text_graphs()[name]), unnamed=unnamed)


def test_unnamed_nodes_do_not_collide():
    """Every node unnamed (legal ONNX): one Conv->gate->Conv graph predicted exactly."""
    model = model_from_text(CONV_GATE_CONV)
    for node in model.graph.node:
        node.name = ""
    gates = {"gate.a": np.asarray([1, 0, 1, 0, 0, 1], np.float32)}
    real = graph_stats(apply_gates(model, gates))
    got = analyse(model).graph_terms(gates)
    assert got["param_bytes"][0] == real.param_bytes == 4 * (3 * 4 * 9 + 5 * 3)


def test_an_all_off_residual_branch_is_removed():
    from onnx_text import check_pruned
    model = model_from_text(BRANCH)
    pruned, reports = check_pruned(model, {"gate.s": [1, 1, 0, 1], "gate.a": [1, 0, 1, 1, 0, 1],
                                           "gate.b": [0, 0, 0, 0]})
    assert [n.op_type for n in pruned.graph.node] == ["Conv", "Conv"]  # c0 and y: no Mul left
    assert "residual stream" in " ".join(reports["gate.b"].notes)


def test_foreign_graph():
    from test_passes_foreign import foreign_model
    assert_predictions_exact(foreign_model(), n=8)
    assert_predictions_exact(foreign_model(), n=3, unnamed=True)


@pytest.mark.parametrize("preset", ["resnet-tiny", "resnet-tiny-bottleneck", "mobilenet-tiny",
                                    "efficientnet-tiny", "vit-tiny"])
def test_backbones(preset):
    from supernets import supernet
    assert_predictions_exact(supernet(preset)[1], n=4)


def test_detection_head():
    from test_passes_detection import exported
    assert_predictions_exact(exported(False), n=4)


def test_legacy_structure_still_loads():
    """A structure saved before version 2 (gate tags) loads and gives its old figures."""
    legacy = {"gates": ["gate.a"], "sizes": [4], "tags": [["gate.a"]],
              "layers": [{"name": "c1", "op": "Conv", "in_tag": -1, "out_tag": 0,
                          "in_channels": 3, "out_channels": 4, "depthwise": False,
                          "spatial": 64, "kernel": 9, "bias": True},
                         {"name": "c2", "op": "Conv", "in_tag": 0, "out_tag": -1,
                          "in_channels": 4, "out_channels": 2, "depthwise": False,
                          "spatial": 64, "kernel": 1, "bias": False}],
              "tensors": [[-1, 3, 768], [0, 4, 1024]], "fixed_param_bytes": 100}
    from nnfc.compiler.cost_legacy import structure_from_json
    structure = structure_from_json(legacy)
    gates = {"gate.a": np.array([[1, 0, 1, 1], [0, 0, 0, 0]], np.float32)}
    terms = structure.layer_terms(gates)
    np.testing.assert_allclose(terms["macs"][:, 0], [3 * 3 * 9 * 64, 3 * 1 * 9 * 64])
    np.testing.assert_allclose(terms["params"][:, 1], [3 * 2, 1 * 2])
    mem = structure.memory_terms(gates)
    np.testing.assert_allclose(mem["param_bytes"], [100 + 4 * (3 * 3 * 9 + 3 + 3 * 2),
                                                    100 + 4 * (3 * 9 + 1 + 2)])
    np.testing.assert_allclose(mem["peak_bytes"], [768, 768])
    np.testing.assert_allclose(structure.set_counts(gates)[:, 0], [3, 1])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet18", "ghostnet_050", "regnetx_002"])
def test_real_architectures(arch):
    import real_archs
    model = real_archs.export(real_archs.build(arch), dynamo=True)
    assert_predictions_exact(model, n=3)
