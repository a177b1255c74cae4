"""Graphs in the style of another framework's ONNX exporter, one per pattern found in real
detection / recognition / classification models: weights as ``Constant`` nodes, opset 11-12,
unfused BatchNormalization, HardSwish / Swish / LayerNorm written as several nodes, a run-time
``Reshape``, a ``Squeeze`` CTC head, a gate on a GhostNet module's output, two gates on one
channel set, a gate before squeeze-excite. Each is exact against the gated model in ORT, removes
every channel an exact pruner can (counted by hand per pattern), and leaves no gate ``Mul``."""

import numpy as np
import onnx
import pytest
from onnx import helper

from onnx_text import check_pruned, keras_export, model_from_text, weight_shapes


def as_constant_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """The exporter's way: every initializer becomes a ``Constant`` node."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = [helper.make_node("Constant", [], [i.name], value=i) for i in out.graph.initializer]
    del out.graph.initializer[:]
    old = list(out.graph.node)
    del out.graph.node[:]
    out.graph.node.extend(nodes + old)
    return out


def zero_gate_muls(model: onnx.ModelProto) -> list[str]:
    """Mul nodes that still multiply by a 0/1 constant with zeros (a gate left in the graph)."""
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    found = []
    for node in model.graph.node:
        for name in node.input if node.op_type == "Mul" else []:
            arr = consts.get(name)
            if arr is not None and arr.size > 1 and np.isin(arr, (0, 1)).all() and (arr == 0).any():
                found.append(node.output[0])
    return found


def header(opset: int) -> str:
    return f'<ir_version: 7, opset_import: ["" : {opset}]>\n'


GATE = "shape = Constant <value = int64[4] {1,-1,1,1}> ()\n ga = Reshape (gate_a, shape)\n"

#: pattern -> (graph body, gate, kept channels of the gated conv "c1")
PATTERNS = {
    # conv -> gate -> BN -> HardSwish as Add/Clip/Mul/Div -> 1x1 conv
    "bn_hardswish": ("""
    g (float[1,4,8,8] x, float[6] gate_a, float[6,4,3,3] W1, float[6] s, float[6] bb,
       float[6] mu, float[6] var, float[5,6,1,1] W2) => (float[1,5,8,8] y) {
        c1 = Conv <pads = [1,1,1,1]> (x, W1)
        """ + GATE + """
        m = Mul (c1, ga)
        b = BatchNormalization (m, s, bb, mu, var)
        three = Constant <value = float {3.0}> ()
        lo = Constant <value = float {0.0}> ()
        hi = Constant <value = float {6.0}> ()
        six = Constant <value = float {6.0}> ()
        a = Add (b, three)
        cl = Clip (a, lo, hi)
        p = Mul (b, cl)
        h = Div (p, six)
        y = Conv (h, W2)
    }""", [1, 0, 1, 0, 0, 1], 3),
    # conv -> BN -> gate -> Swish (x * sigmoid(x)) -> 3x3 padded conv
    "swish": ("""
    g (float[1,4,8,8] x, float[6] gate_a, float[6,4,3,3] W1, float[6] s, float[6] bb,
       float[6] mu, float[6] var, float[5,6,3,3] W2) => (float[1,5,8,8] y) {
        c1 = Conv <pads = [1,1,1,1]> (x, W1)
        b = BatchNormalization (c1, s, bb, mu, var)
        """ + GATE + """
        m = Mul (b, ga)
        sg = Sigmoid (m)
        w = Mul (m, sg)
        y = Conv <pads = [1,1,1,1]> (w, W2)
    }""", [0, 0, 1, 1, 1, 0], 3),
    # a gated conv feeding a LayerNorm over the channels written out (ReduceMean, Sub, Pow,
    # ReduceMean, Add, Sqrt, Div): the mean over channels needs every channel (none removable
    # exactly), but the gate goes into the conv's filters
    "layernorm": ("""
    g (float[1,4,8,8] x, float[6] gate_a, float[6,4,3,3] W1, float[5,6,1,1] W2)
      => (float[1,5,8,8] y) {
        c1 = Conv <pads = [1,1,1,1]> (x, W1)
        """ + GATE + """
        m = Mul (c1, ga)
        mean = ReduceMean <axes = [1]> (m)
        d = Sub (m, mean)
        two = Constant <value = float {2.0}> ()
        sq = Pow (d, two)
        v = ReduceMean <axes = [1]> (sq)
        eps = Constant <value = float {1e-5}> ()
        ve = Add (v, eps)
        sd = Sqrt (ve)
        n = Div (d, sd)
        y = Conv (n, W2)
    }""", [1, 1, 0, 1, 0, 1], 6),
    # GhostNet module gated at its output (after the Concat of the primary and cheap halves):
    # a pair goes when both halves are off; a half that is off alone is read as zeros by the
    # consumer's weights (no Mul stays)
    "ghost_output_gate": ("""
    g (float[1,4,8,8] x, float[8] gate_a, float[4,4,1,1] W1, float[4,1,3,3] Wd, float[4] Bd,
       float[3,8,1,1] W3) => (float[1,3,8,8] y) {
        c1 = Conv (x, W1)
        r1 = Relu (c1)
        d = Conv <group = 4, pads = [1,1,1,1]> (r1, Wd, Bd)
        rd = Relu (d)
        cat = Concat <axis = 1> (r1, rd)
        """ + GATE + """
        m = Mul (cat, ga)
        y = Conv (m, W3)
    }""", [1, 0, 0, 0, 0, 1, 0, 0], 2),
    # two gates on one channel set: a gated conv feeds a conv and a gated depthwise branch
    # (depthwise -> BN -> gate): b's zeros go into the BN's scale and bias
    "two_gates": ("""
    g (float[1,4,8,8] x, float[6] gate_a, float[6] gate_b, float[6,4,1,1] W1,
       float[6,1,3,3] Wd, float[6] s, float[6] bb, float[6] mu, float[6] var,
       float[5,6,1,1] W2, float[5,6,1,1] W3) => (float[1,5,8,8] y) {
        c1 = Conv (x, W1)
        r1 = Relu (c1)
        """ + GATE + """
        m1 = Mul (r1, ga)
        y1 = Conv (m1, W2)
        d = Conv <group = 6, pads = [1,1,1,1]> (m1, Wd)
        bd = BatchNormalization (d, s, bb, mu, var)
        gb = Reshape (gate_b, shape)
        m2 = Mul (bd, gb)
        r2 = Relu (m2)
        y2 = Conv (r2, W3)
        y = Add (y1, y2)
    }""", [1, 0, 1, 0, 1, 0], 3),
    # a gate in front of a squeeze-excite block (BN and ReLU between conv and gate) and one
    # after it: a channel on in a and off in b stays for the squeeze; b's zeros go into the
    # reading conv's weights
    "gate_before_se": ("""
    g (float[1,4,8,8] x, float[6] gate_a, float[6] gate_b, float[6,4,3,3] W1, float[6] s,
       float[6] bb,
       float[6] mu, float[6] var, float[2,6,1,1] Ws1, float[2] Bs1, float[6,2,1,1] Ws2,
       float[6] Bs2, float[5,6,1,1] W2) => (float[1,5,8,8] y) {
        c1 = Conv <pads = [1,1,1,1]> (x, W1)
        b = BatchNormalization (c1, s, bb, mu, var)
        r = Relu (b)
        """ + GATE + """
        m = Mul (r, ga)
        p = GlobalAveragePool (m)
        e1 = Conv (p, Ws1, Bs1)
        e2 = Relu (e1)
        e3 = Conv (e2, Ws2, Bs2)
        e4 = Sigmoid (e3)
        se = Mul (m, e4)
        gb = Reshape (gate_b, shape)
        mb = Mul (se, gb)
        y = Conv (mb, W2)
    }""", [0, 1, 1, 0, 1, 1], 4),
}


@pytest.mark.parametrize("opset", [11, 12])
@pytest.mark.parametrize("constant_nodes", [False, True])
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_exporter_pattern_is_exact_complete_and_leaves_no_gate(pattern, opset, constant_nodes):
    body, gate, kept = PATTERNS[pattern]
    model = model_from_text(header(opset) + body)
    if constant_nodes:
        model = as_constant_nodes(model)
    gates = {"gate.a": gate}
    if "gate_b" in body:
        gates["gate.b"] = [1, 1, 0, 0, 1, 0]
    pruned, reports = check_pruned(model, gates)
    assert weight_shapes(pruned)["c1"][0] == kept, weight_shapes(pruned)
    assert not zero_gate_muls(pruned), zero_gate_muls(pruned)
    assert not [i for i in pruned.graph.input if i.name.startswith("gate.")]


def test_two_gates_keep_what_either_needs_and_zero_the_rest():
    body, gate, _ = PATTERNS["two_gates"]
    model = model_from_text(header(12) + body)
    # channel 1: off in a, on in b -> m1 is 0 there, d reads 0: the channel goes; channel 5:
    # on in a (y1 reads it), off in b -> kept for y1, b's zero read as zeros by y2's weights
    pruned, _ = check_pruned(model, {"gate.a": [1, 0, 1, 0, 1, 1], "gate.b": [1, 1, 1, 0, 1, 0]})
    assert weight_shapes(pruned)["c1"][0] == 4 and not zero_gate_muls(pruned)


@pytest.mark.android
@pytest.mark.slow
def test_keras_patterns_exported_by_tf2onnx():
    """The second exporter: a Keras model (NHWC, tf2onnx) with a GhostNet module gated at its
    output, a gate before and after squeeze-excite, hard-swish and swish activations."""
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    keras = tf.keras
    layers = keras.layers
    rng = np.random.default_rng(0)
    sizes = {"gate_ghost": 8, "gate_se_in": 8, "gate_se_out": 8}
    x_in = keras.Input((16, 16, 3), batch_size=1, name="x")
    gates_in = {n: keras.Input((s,), batch_size=1, name=n) for n, s in sizes.items()}

    def gated(t, name):
        return layers.Multiply()([t, layers.Reshape((1, 1, sizes[name]))(gates_in[name])])

    primary = layers.ReLU()(layers.Conv2D(4, 1)(x_in))
    cheap = layers.ReLU()(layers.DepthwiseConv2D(3, padding="same")(primary))
    h = gated(layers.Concatenate()([primary, cheap]), "gate_ghost")
    h = layers.Conv2D(8, 3, padding="same", use_bias=False)(h)
    h = layers.BatchNormalization()(h)
    h = gated(layers.Activation("hard_swish")(h), "gate_se_in")
    s = layers.GlobalAveragePooling2D(keepdims=True)(h)
    s = layers.Conv2D(2, 1, activation="relu")(s)
    s = layers.Conv2D(8, 1, activation="sigmoid")(s)
    h = gated(layers.Multiply()([h, s]), "gate_se_out")
    h = layers.Conv2D(6, 1, activation="swish")(h)
    out = layers.Dense(5)(layers.GlobalAveragePooling2D()(h))
    model = keras.Model([x_in, *gates_in.values()], out)
    proto = keras_export(model, sizes, opset=13, rng=rng)
    gates = {"gate.ghost": [1, 0, 0, 0, 0, 1, 0, 0], "gate.se_in": [0, 1, 1, 0, 1, 1, 0, 1],
             "gate.se_out": [1, 1, 0, 0, 1, 0, 0, 1]}
    pruned, reports = check_pruned(proto, gates, atol=1e-4)
    assert reports["gate.ghost"].kept == 4      # 2 pairs, each at 2 positions of the Concat
    assert reports["gate.se_in"].kept == 5      # what the squeeze reads stays
    assert not zero_gate_muls(pruned), zero_gate_muls(pruned)
