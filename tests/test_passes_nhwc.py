"""NHWC graphs (tf2onnx's Keras exports): the gate ``Mul`` sits between ``Transpose``s and ``Pad``
comes before stride-2 convs; channels are followed through both, so such graphs prune as fully as
torch's NCHW exports."""

import numpy as np
import pytest

from onnx_text import check_pruned, keras_export, model_from_text, weight_shapes

NHWC = '<ir_version: 8, opset_import: ["" : 18]>\n' + """
    g (float[1,8,8,4] x, float[6] gate_a, float[5] gate_b, float[6,4,3,3] W1, float[6] B1,
       float[5,6,3,3] W2, float[5] B2, float[3,5,1,1] W3) => (float[1,3,3,3] y) {
        xt = Transpose <perm = [0,3,1,2]> (x)
        c1 = Conv <pads = [1,1,1,1]> (xt, W1, B1)
        t1 = Transpose <perm = [0,2,3,1]> (c1)
        r1 = Relu (t1)
        m1 = Mul (r1, gate_a)
        pads = Constant <value = int64[8] {0,1,1,0,0,0,0,0}> ()
        p1 = Pad (m1, pads)
        t2 = Transpose <perm = [0,3,1,2]> (p1)
        c2 = Conv <strides = [2,2]> (t2, W2, B2)
        t3 = Transpose <perm = [0,2,3,1]> (c2)
        m2 = Mul (t3, gate_b)
        s2 = Sigmoid (m2)
        t4 = Transpose <perm = [0,3,1,2]> (s2)
        c3 = Conv (t4, W3)
        y = Transpose <perm = [0,2,3,1]> (c3)
    }"""


def test_transposes_and_pad_are_followed():
    pruned, reports = check_pruned(model_from_text(NHWC), {"gate.a": [1, 0, 1, 0, 0, 1],
                                                           "gate.b": [0, 1, 1, 0, 1]})
    shapes = weight_shapes(pruned)
    assert shapes["c1"] == (3, 4, 3, 3) and shapes["c2"] == (3, 3, 3, 3)
    assert shapes["c3"] == (3, 3, 1, 1)      # sigmoid(0) = 0.5 folded into c3's bias
    assert reports["gate.a"].kept == 3 and reports["gate.b"].kept == 3


def test_pad_of_a_constant_non_zero_channel_keeps_it():
    text = NHWC.replace("r1 = Relu (t1)\n        m1 = Mul (r1, gate_a)",
                        "m0 = Mul (t1, gate_a)\n        m1 = Sigmoid (m0)")
    pruned, reports = check_pruned(model_from_text(text), {"gate.a": [1, 0, 1, 0, 0, 1],
                                                           "gate.b": [1] * 5})
    # sigmoid(0) = 0.5 padded with 0 is not uniform: the off channels stay, and say why
    assert weight_shapes(pruned)["c1"] == (6, 4, 3, 3)
    assert "padded" in reports["gate.a"].notes[0] or "data" in reports["gate.a"].notes[0]


@pytest.mark.android
@pytest.mark.slow
def test_keras_model_exported_by_tf2onnx_prunes_exactly():
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    keras = tf.keras
    rng = np.random.default_rng(0)
    x_in = keras.Input((16, 16, 3), batch_size=1, name="x")
    sizes = {"gate_stem": 8, "gate_b1": 12, "gate_b2": 16}
    gates_in = {n: keras.Input((s,), batch_size=1, name=n) for n, s in sizes.items()}

    def gated(t, name):  # the gate is a [1, C] input broadcast over the channel axis (NHWC)
        return keras.layers.Multiply()([t, keras.layers.Reshape((1, 1, sizes[name]))(
            gates_in[name])])

    h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(x_in)
    h = keras.layers.BatchNormalization()(h)
    h = gated(keras.layers.ReLU()(h), "gate_stem")
    h = keras.layers.ZeroPadding2D(1)(h)
    h = keras.layers.Conv2D(12, 3, strides=2)(h)
    h = gated(keras.layers.ReLU()(h), "gate_b1")
    h = keras.layers.DepthwiseConv2D(3, padding="same")(h)
    h = keras.layers.Conv2D(16, 1)(h)
    h = gated(keras.layers.Activation("swish")(h), "gate_b2")
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(5)(h)
    model = keras.Model([x_in, *gates_in.values()], out)
    proto = keras_export(model, sizes, opset=17, rng=rng)
    gates = {"gate.stem": [1, 0, 1, 0, 0, 1, 1, 0], "gate.b1": [0, 1] * 6,
             "gate.b2": [1, 0, 0, 1] * 4}
    pruned, reports = check_pruned(proto, gates, atol=1e-4)
    for r in reports.values():
        assert r.kept == r.active, r   # as fully as the NCHW export would
