"""``SqueezeRule``: a gated conv's channels pass ``Squeeze`` / ``Unsqueeze`` of other axes (a
CTC-style head: ``Conv → Relu → gate → Squeeze(axis 2) → Transpose → MatMul``)."""

import pytest

from onnx_text import check_pruned, model_from_text, weight_shapes

CTC = '<ir_version: 8, opset_import: ["" : OPSET]>\n' + """
    g (float[1,4,1,16] x, float[6] gate_a, float[6,4,1,3] W1, float[6] B1, float[6,5] Wm)
      => (float[1,16,5] y) {
        c1 = Conv <pads = [0,1,0,1]> (x, W1, B1)
        r = Relu (c1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m = Mul (r, ga)
        SQUEEZE
        t = Transpose <perm = [0,2,1]> (s)
        y = MatMul (t, Wm)
    }"""

SQUEEZES = {
    13: "ax = Constant <value = int64[1] {2}> ()\n s = Squeeze (m, ax)",
    11: "s = Squeeze <axes = [2]> (m)",
}


@pytest.mark.parametrize("opset", sorted(SQUEEZES))
def test_squeeze_then_matmul_prunes_the_ctc_head(opset):
    text = CTC.replace("OPSET", str(opset)).replace("SQUEEZE", SQUEEZES[opset])
    pruned, reports = check_pruned(model_from_text(text), {"gate.a": [1, 0, 1, 1, 0, 0]})
    shapes = weight_shapes(pruned)
    matmul = next(n.output[0] for n in pruned.graph.node if n.op_type == "MatMul")
    assert shapes["c1"] == (3, 4, 1, 3) and shapes[matmul] == (3, 5), shapes
    assert reports["gate.a"].kept == 3 and not reports["gate.a"].notes
    assert not [n for n in pruned.graph.node if n.op_type == "Mul"], "no gate Mul left"


def test_unsqueeze_before_a_conv():
    text = '<ir_version: 8, opset_import: ["" : 13]>\n' + """
    g (float[1,4,16] x, float[6] gate_a, float[6,4,3] W1, float[5,6,1,1] W2)
      => (float[1,5,1,16] y) {
        c1 = Conv <pads = [1,1]> (x, W1)
        shape = Constant <value = int64[3] {1,-1,1}> ()
        ga = Reshape (gate_a, shape)
        m = Mul (c1, ga)
        ax = Constant <value = int64[1] {2}> ()
        u = Unsqueeze (m, ax)
        y = Conv (u, W2)
    }"""
    pruned, reports = check_pruned(model_from_text(text), {"gate.a": [0, 1, 1, 0, 1, 0]})
    shapes = weight_shapes(pruned)
    assert shapes["c1"] == (3, 4, 3) and shapes["y"] == (5, 3, 1, 1), shapes


def test_squeezing_the_channel_axis_keeps_the_channels():
    text = CTC.replace("OPSET", "13").replace(
        "SQUEEZE", "ax = Constant <value = int64[1] {1}> ()\n s = Squeeze (m, ax)").replace(
        "float[6,4,1,3] W1", "float[1,4,1,3] W1").replace("float[6] B1", "float[1] B1").replace(
        "float[6] gate_a", "float[1] gate_a")
    text = text.replace("y = MatMul (t, Wm)", "y = Identity (t)").replace(
        "float[6,5] Wm", "float[1,5] Wm").replace("float[1,16,5] y", "float[16,1,1] y")
    pruned, reports = check_pruned(model_from_text(text), {"gate.a": [0]})
    assert reports["gate.a"].kept == 1
