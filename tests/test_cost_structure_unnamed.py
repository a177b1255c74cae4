"""The predictor's cost structure on a graph whose nodes have no names (legal ONNX, and what
other exporters emit): compute nodes are keyed by their output, so predicted parameters, FLOPs and
peak memory equal those of the pruned graph."""

import numpy as np
import pytest

from nnfc.compiler.cost_structure import analyse
from nnfc.compiler.graph_stats import graph_stats
from nnfc.passes import apply_gates
from onnx_text import model_from_text

GRAPH = '<ir_version: 8, opset_import: ["" : 18]>\n' + """
    g (float[1,4,8,8] x, float[6] gate_a, float[6,4,3,3] W1, float[5,6,1,1] W2)
      => (float[1,5,8,8] y) {
        c1 = Conv <pads = [1,1,1,1]> (x, W1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m = Mul (c1, ga)
        r = Relu (m)
        y = Conv (r, W2)
    }"""


@pytest.mark.parametrize("gate", [[1, 0, 1, 0, 0, 1], [1] * 6, [0, 0, 0, 0, 1, 0]])
def test_unnamed_conv_gate_conv_predictions_equal_the_pruned_graph(gate):
    model = model_from_text(GRAPH)
    for node in model.graph.node:
        node.name = ""
    gates = {"gate.a": np.asarray(gate, np.float32)}
    structure = analyse(model)
    batch = {k: v[None] for k, v in gates.items()}
    real = graph_stats(apply_gates(model, gates))
    assert structure.memory_terms(batch)["param_bytes"][0] == real.param_bytes
    assert 2 * structure.layer_terms(batch)["macs"].sum() == real.flops
    assert structure.memory_terms(batch)["peak_bytes"][0] == real.peak_tensor_bytes
