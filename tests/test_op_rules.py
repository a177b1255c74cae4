"""One ONNX-text test per registered op rule: a gated conv feeds the op, a 1x1 conv reads it;
the pruned weights have the expected shapes and every output equals the gated model's in ORT.
Plus a rule registered by a user for an op nnfc does not know."""

import numpy as np
import pytest

from nnfc.passes.rules import default_rules
from nnfc.passes.rules.elementwise import BINARY, UNARY, UnaryRule
from onnx_text import check_pruned, model_from_text, weight_shapes

GATE = [1, 0, 1, 1, 0, 0]     # 3 of 6 channels on

TEMPLATE = '<ir_version: 8, opset_import: ["" : OPSET]>\n' + """
    g (float[1,4,8,8] x, float[6] gate_a, float[6,4,3,3] W1, float[6] B1, float[3,6,1,1] W2,
       float[1,6,1,1] K) => (float[1,3,8,8] y) {
        c1 = Conv <pads = [1,1,1,1]> (x, W1, B1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m = Mul (c1, ga)
        one = Constant <value = float {1.0}> ()
        a = Add (m, one)
        OP_LINE
        y = Conv (b, W2)
    }"""


def _check(op_line: str, opset: int = 18, gate=GATE, removed: bool = True, extra: str = "",
           rules=None):
    text = TEMPLATE.replace("OP_LINE", op_line).replace("OPSET", str(opset))
    if extra:
        text = text.replace("float[1,6,1,1] K)", f"float[1,6,1,1] K, {extra})")
    pruned, reports = check_pruned(model_from_text(text), {"gate.a": gate}, rules=rules)
    shapes = weight_shapes(pruned)
    kept = sum(gate) if removed else len(gate)
    assert shapes["c1"] == (kept, 4, 3, 3) and shapes["y"] == (3, kept, 1, 1), shapes
    return pruned, reports


UNARY_LINES = {
    "Clip": "lo = Constant <value = float {0.5}> ()\n hi = Constant <value = float {1.5}> ()\n"
            " b = Clip (a, lo, hi)",
    "Dropout": "b = Dropout (a)",
    "LeakyRelu": "b = LeakyRelu <alpha = 0.1> (a)",
    "HardSigmoid": "b = HardSigmoid <alpha = 0.2, beta = 0.4> (a)",
    "Elu": "b = Elu <alpha = 0.7> (a)",
}


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_rule(op):
    line = UNARY_LINES.get(op, f"b = {op} (a)")
    _check(line, opset=20 if op == "Gelu" else 18)


@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_rule_with_a_per_channel_constant(op):
    # K is [1,6,1,1]: sliced with the channels (Pow/Div read a positive one)
    line = f"b = {op} (a, varK)" if op in ("Pow", "Div") else f"b = {op} (a, K)"
    pruned, _ = _check(line, extra="float[1,6,1,1] varK")
    sliced = [tuple(i.dims) for i in pruned.graph.initializer if tuple(i.dims) == (1, 3, 1, 1)]
    assert sliced, "the per-channel constant follows the kept channels"


def test_batchnorm_rule():
    text = TEMPLATE.replace("float[1,6,1,1] K", "float[6] s, float[6] bb, float[6] mu, "
                            "float[6] var").replace("OPSET", "18").replace(
        "OP_LINE", "b = BatchNormalization (a, s, bb, mu, var)")
    pruned, _ = check_pruned(model_from_text(text), {"gate.a": GATE})
    assert weight_shapes(pruned)["y"] == (3, 3, 1, 1)
    assert sum(tuple(i.dims) == (3,) for i in pruned.graph.initializer) >= 4


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool_rule(op):
    text = TEMPLATE.replace("OP_LINE", f"b = {op} (a)").replace("OPSET", "18").replace(
        "float[1,3,8,8] y", "float[1,3,1,1] y")
    pruned, _ = check_pruned(model_from_text(text), {"gate.a": GATE})
    assert weight_shapes(pruned)["y"] == (3, 3, 1, 1)


@pytest.mark.parametrize("line", [
    "b = MaxPool <kernel_shape = [2,2], strides = [2,2]> (a)",
    "b = AveragePool <kernel_shape = [3,3], pads = [1,1,1,1]> (a)",
    "axes = Constant <value = int64[1] {2}> ()\n b = ReduceMean <keepdims = 1> (a, axes)",
    "axes = Constant <value = int64[1] {3}> ()\n b = ReduceMax <keepdims = 1> (a, axes)",
])
def test_spatial_pool_rules(line):
    text = TEMPLATE.replace("OP_LINE", line).replace("OPSET", "18").replace(
        "float[1,3,8,8] y", "float[1,3,?,?] y")
    pruned, _ = check_pruned(model_from_text(text), {"gate.a": GATE})
    assert weight_shapes(pruned)["y"] == (3, 3, 1, 1)


def test_depthwise_conv_rule():
    text = TEMPLATE.replace("float[1,6,1,1] K", "float[6,1,3,3] Wd, float[6] Bd").replace(
        "OPSET", "18").replace("OP_LINE", "b = Conv <group = 6, pads = [1,1,1,1]> (a, Wd, Bd)")
    pruned, _ = check_pruned(model_from_text(text), {"gate.a": GATE})
    shapes = weight_shapes(pruned)
    # a = 0 + 1 on the off channels, padded 3x3 depthwise: not uniform, so they stay
    assert shapes["b"] == (6, 1, 3, 3) and shapes["y"] == (3, 6, 1, 1)


def test_concat_rule_offsets_channels():
    text = TEMPLATE.replace("float[3,6,1,1] W2", "float[3,10,1,1] W2").replace(
        "OPSET", "18").replace("OP_LINE", "b = Concat <axis = 1> (x, a)")
    pruned, _ = check_pruned(model_from_text(text), {"gate.a": GATE})
    assert weight_shapes(pruned)["y"] == (3, 7, 1, 1)


def test_flatten_rule_maps_each_channel_to_its_features():
    text = TEMPLATE.replace("float[3,6,1,1] W2", "float[384,3] W2").replace(
        "float[1,3,8,8] y", "float[1,3] y").replace("OPSET", "18").replace(
        "OP_LINE", "b = Flatten (a)").replace("y = Conv (b, W2)", "y = MatMul (b, W2)")
    pruned, _ = check_pruned(model_from_text(text), {"gate.a": GATE})
    matmul = next(n for n in pruned.graph.node if n.op_type == "MatMul")
    assert weight_shapes(pruned)[matmul.output[0]] == (192, 3)   # 3 channels x 8·8 features


def test_a_user_registered_rule_lets_the_region_through():
    line = "b = Softsign (a)"
    rules = default_rules()
    assert rules.lookup("", "Softsign", 18) is None
    _check(line, removed=False, rules=rules)  # no rule: Softsign cuts, every channel stays

    # an activation: one function gives the channel map and the constant carry
    rules.add("Softsign", UnaryRule(lambda node, x: x / (1 + np.abs(x))))
    _check(line, rules=rules)
    assert default_rules().lookup("", "Softsign", 18) is None, "other rule sets unchanged"
