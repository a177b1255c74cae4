"""Detection-head ops after a gated conv: Resize, ConvTranspose, Split, Slice of the channel axis
and the merge (Add) of two gated tensors prune exactly (structure + ORT equality on every
output)."""

import numpy as np
import pytest

from onnx_text import check_pruned, model_from_text, weight_shapes

HEADER = '<ir_version: 8, opset_import: ["" : 18]>\n'


def test_resize_upsample_passes_channels():
    model = model_from_text(HEADER + """
    g (float[1,4,8,8] x, float[6] gate_a, float[6,4,3,3] W1, float[6] B1, float[5,6,3,3] W2)
      => (float[1,5,16,16] y) {
        c1 = Conv <pads = [1,1,1,1]> (x, W1, B1)
        r1 = Relu (c1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m1 = Mul (r1, ga)
        roi = Constant <value = float[0] {}> ()
        scales = Constant <value = float[4] {1.0, 1.0, 2.0, 2.0}> ()
        up = Resize <mode = "nearest"> (m1, roi, scales)
        y = Conv <pads = [1,1,1,1]> (up, W2)
    }""")
    pruned, reports = check_pruned(model, {"gate.a": [1, 0, 1, 0, 0, 1]})
    shapes = weight_shapes(pruned)
    assert shapes["c1"] == (3, 4, 3, 3) and shapes["y"] == (5, 3, 3, 3)
    assert reports["gate.a"].kept == 3


def test_resize_with_sizes_and_linear_mode_folds_bias():
    model = model_from_text(HEADER + """
    g (float[1,4,8,8] x, float[6] gate_a, float[6,4,1,1] W1, float[6] B1, float[5,6,1,1] W2)
      => (float[1,5,16,16] y) {
        c1 = Conv (x, W1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m1 = Mul (c1, ga)
        bshape = Constant <value = int64[4] {1,6,1,1}> ()
        b = Reshape (B1, bshape)
        a1 = Add (m1, b)
        sizes = Constant <value = int64[4] {1, 6, 16, 16}> ()
        up = Resize <mode = "linear"> (a1, , , sizes)
        y = Conv (up, W2)
    }""")
    pruned, _ = check_pruned(model, {"gate.a": [0, 1, 1, 0, 0, 1]})
    shapes = weight_shapes(pruned)
    assert shapes["c1"] == (3, 4, 1, 1) and shapes["y"] == (5, 3, 1, 1)


def test_conv_transpose_as_sink_and_source():
    model = model_from_text(HEADER + """
    g (float[1,4,8,8] x, float[6] gate_a, float[5] gate_b, float[6,4,3,3] W1,
       float[6,5,2,2] WT, float[5] BT, float[3,5,1,1] W3) => (float[1,3,16,16] y) {
        c1 = Conv <pads = [1,1,1,1]> (x, W1)
        r1 = Relu (c1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m1 = Mul (r1, ga)
        t = ConvTranspose <strides = [2,2]> (m1, WT, BT)
        gb = Reshape (gate_b, shape)
        m2 = Mul (t, gb)
        r2 = Relu (m2)
        y = Conv (r2, W3)
    }""")
    pruned, _ = check_pruned(model, {"gate.a": [1, 0, 0, 1, 1, 0], "gate.b": [0, 1, 1, 0, 0]})
    shapes = weight_shapes(pruned)
    assert shapes["c1"] == (3, 4, 3, 3)
    assert shapes["t"] == (3, 2, 2, 2)    # input rows and output columns both sliced
    assert shapes["y"] == (3, 2, 1, 1)


SPLIT = HEADER + """
    g (float[1,4,8,8] x, float[8] gate_a, float[8,4,3,3] W1, float[8] B1, float[2,3,1,1] W2,
       float[4,5,1,1] W3) => (float[1,2,8,8] heat, float[1,4,8,8] box) {
        c1 = Conv <pads = [1,1,1,1]> (x, W1, B1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m1 = Mul (c1, ga)
        r1 = Relu (m1)
        SPLIT_LINE
        heat = Conv (s1, W2)
        box = Conv (s2, W3)
    }"""


@pytest.mark.parametrize("opset, split", [
    (18, "split = Constant <value = int64[2] {3, 5}> ()\n s1, s2 = Split <axis = 1> (r1, split)"),
    (11, "s1, s2 = Split <axis = 1, split = [3, 5]> (r1)")])
def test_split_of_the_channel_axis(opset, split):
    text = SPLIT.replace("SPLIT_LINE", split).replace('"" : 18', f'"" : {opset}')
    model = model_from_text(text)
    gates = {"gate.a": [1, 0, 1, 0, 1, 1, 0, 0]}
    pruned, reports = check_pruned(model, gates)
    shapes = weight_shapes(pruned)
    assert shapes["c1"] == (4, 4, 3, 3)
    assert shapes["heat"] == (2, 2, 1, 1) and shapes["box"] == (4, 2, 1, 1)
    assert reports["gate.a"].kept == 4


def test_split_part_never_becomes_empty():
    model = model_from_text(SPLIT.replace(
        "SPLIT_LINE", "split = Constant <value = int64[2] {3, 5}> ()\n"
                      " s1, s2 = Split <axis = 1> (r1, split)"))
    pruned, _ = check_pruned(model, {"gate.a": [0, 0, 0, 1, 1, 0, 1, 0]})
    shapes = weight_shapes(pruned)
    assert shapes["box"] == (4, 3, 1, 1) and shapes["heat"][1] >= 1


def test_split_equal_parts_opset18():
    model = model_from_text(SPLIT.replace("float[2,3,1,1] W2", "float[2,4,1,1] W2")
                            .replace("float[4,5,1,1] W3", "float[4,4,1,1] W3").replace(
        "SPLIT_LINE", "s1, s2 = Split <axis = 1, num_outputs = 2> (r1)"))
    pruned, _ = check_pruned(model, {"gate.a": [1, 0, 0, 0, 1, 1, 1, 0]})
    shapes = weight_shapes(pruned)
    assert shapes["heat"] == (2, 1, 1, 1) and shapes["box"] == (4, 3, 1, 1)


def test_slice_of_the_channel_axis():
    model = model_from_text(HEADER + """
    g (float[1,4,8,8] x, float[8] gate_a, float[8,4,3,3] W1, float[8] B1, float[3,4,1,1] W2,
       float[2,8,1,1] W3) => (float[1,3,8,8] y, float[1,2,8,8] z) {
        c1 = Conv <pads = [1,1,1,1]> (x, W1, B1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m1 = Mul (c1, ga)
        r1 = Relu (m1)
        starts = Constant <value = int64[1] {2}> ()
        ends = Constant <value = int64[1] {6}> ()
        axes = Constant <value = int64[1] {1}> ()
        s = Slice (r1, starts, ends, axes)
        y = Conv (s, W2)
        z = Conv (r1, W3)
    }""")
    pruned, _ = check_pruned(model, {"gate.a": [1, 0, 0, 1, 1, 0, 1, 1]})
    shapes = weight_shapes(pruned)
    assert shapes["c1"] == (5, 4, 3, 3)
    assert shapes["y"] == (3, 2, 1, 1) and shapes["z"] == (2, 5, 1, 1)


FPN = HEADER + """
    g (float[1,4,16,16] x, float[6] gate_lat, float[6] gate_top, float[4,4,3,3] Wb,
       float[6,4,1,1] Wl, float[6] Bl, float[6,4,3,3] Wt, float[6] Bt, float[3,6,3,3] Wh)
      => (float[1,3,16,16] y) {
        b = Conv <pads = [1,1,1,1]> (x, Wb)
        rb = Relu (b)
        lat = Conv (rb, Wl, Bl)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        gl = Reshape (gate_lat, shape)
        ml = Mul (lat, gl)
        top = Conv <pads = [1,1,1,1], strides = [2,2]> (rb, Wt, Bt)
        gt = Reshape (gate_top, shape)
        mt = Mul (top, gt)
        roi = Constant <value = float[0] {}> ()
        scales = Constant <value = float[4] {1.0, 1.0, 2.0, 2.0}> ()
        up = Resize <mode = "nearest"> (mt, roi, scales)
        merged = Add (ml, up)
        y = Conv <pads = [1,1,1,1]> (merged, Wh)
    }"""


def test_add_of_two_gated_tensors_removes_channels_off_in_both():
    model = model_from_text(FPN)
    gates = {"gate.lat": [1, 0, 0, 1, 0, 1], "gate.top": [0, 0, 1, 1, 0, 0]}
    pruned, reports = check_pruned(model, gates)
    shapes = weight_shapes(pruned)
    # channels 1 and 4 are off in both operands (0 + upsampled 0): they go from both sources
    assert shapes["lat"] == (4, 4, 1, 1) and shapes["top"] == (4, 4, 3, 3)
    assert shapes["y"] == (3, 4, 3, 3)
    assert reports["gate.lat"].kept == reports["gate.top"].kept == shapes["y"][1]


def test_fpn_merge_carrying_a_constant_folds_into_the_head():
    model = model_from_text(FPN.replace("float[3,6,3,3] Wh", "float[3,6,1,1] Wh").replace(
        "y = Conv <pads = [1,1,1,1]> (merged, Wh)", "s = Sigmoid (merged)\n y = Conv (s, Wh)"))
    gates = {"gate.lat": [1, 0, 0, 1, 0, 1], "gate.top": [0, 0, 1, 1, 0, 0]}
    pruned, reports = check_pruned(model, gates)
    shapes = weight_shapes(pruned)
    assert shapes["lat"] == (4, 4, 1, 1) and shapes["top"] == (4, 4, 3, 3)
    assert shapes["y"] == (3, 4, 1, 1)       # sigmoid(0) = 0.5 folded into the head's bias
    assert reports["gate.lat"].kept == reports["gate.top"].kept == 4


def test_residual_add_of_an_ungated_path_is_still_a_cut():
    model = model_from_text(HEADER + """
    g (float[1,4,8,8] x, float[4] gate_a, float[4,4,3,3] W1, float[3,4,1,1] W2)
      => (float[1,4,8,8] res, float[1,3,8,8] y) {
        c1 = Conv <pads = [1,1,1,1]> (x, W1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m1 = Mul (c1, ga)
        res = Add (m1, x)
        y = Conv (m1, W2)
    }""")
    pruned, reports = check_pruned(model, {"gate.a": [1, 0, 0, 1]})
    shapes = weight_shapes(pruned)
    assert shapes["c1"] == (4, 4, 3, 3) and shapes["y"] == (3, 2, 1, 1)
    assert reports["gate.a"].kept == 4 and reports["gate.a"].notes


def test_kept_counts_all_channels_of_a_region_without_sinks():
    model = model_from_text(HEADER + """
    g (float[1,4,8,8] x, float[5] gate_a, float[5,4,3,3] W1) => (float[1,5,8,8] y) {
        c1 = Conv <pads = [1,1,1,1]> (x, W1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m1 = Mul (c1, ga)
        y = Relu (m1)
    }""")
    _, reports = check_pruned(model, {"gate.a": [1, 1, 1, 1, 1]})
    assert reports["gate.a"].kept == 5
    _, reports = check_pruned(model, {"gate.a": [0, 1, 0, 1, 1]})
    assert reports["gate.a"].kept == 5 and reports["gate.a"].active == 3


@pytest.mark.parametrize("seed", range(4))
def test_heads_random_gates(seed):
    rng = np.random.default_rng(seed)
    model = model_from_text(FPN, seed)
    gates = {g: (rng.random(6) < 0.5).astype(np.float32).tolist() for g in
             ("gate.lat", "gate.top")}
    check_pruned(model, gates, seed)


def test_kept_zero_channels_fold_into_the_producing_conv():
    """A channel off in one FPN operand and on in the other stays; its zero gate goes into the
    lateral conv's filter and bias (through the Relu), so no gate Mul is left."""
    model = model_from_text(FPN.replace("ml = Mul (lat, gl)", "rl = Relu (lat)\n ml = Mul (rl, gl)"))
    gates = {"gate.lat": [1, 0, 0, 1, 0, 1], "gate.top": [0, 0, 1, 1, 0, 0]}
    pruned, _ = check_pruned(model, gates)
    assert not [n for n in pruned.graph.node if n.op_type == "Mul"]
    weights = {i.name: i for i in pruned.graph.initializer}
    lat = next(n for n in pruned.graph.node if n.output[0] == "lat")
    from onnx import numpy_helper
    w, b = (numpy_helper.to_array(weights[name]) for name in lat.input[1:3])
    # kept channels 0, 2, 3, 5; channel 2 is off in gate.lat: its filter and bias are zeros
    assert np.all(w[1] == 0) and b[1] == 0 and np.any(w[0] != 0)


def test_a_conv_output_read_twice_keeps_its_gate_mul():
    """The unmultiplied channels are also read elsewhere: zeroing the filters would change
    that reader, so the gate Mul stays."""
    model = model_from_text(FPN.replace("=> (float[1,3,16,16] y)",
                                        "=> (float[1,3,16,16] y, float[1,6,16,16] lat)"))
    gates = {"gate.lat": [1, 0, 0, 1, 0, 1], "gate.top": [0, 0, 1, 1, 0, 0]}
    pruned, _ = check_pruned(model, gates)
    assert [n for n in pruned.graph.node if n.op_type == "Mul"]
