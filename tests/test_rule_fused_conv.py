"""``FusedConvRule``: onnxruntime's ``com.microsoft.FusedConv`` (Conv + activation, what its
extended graph optimizations write) creates and consumes channels like a ``Conv``."""

import numpy as np
import onnx
import onnxruntime as ort

from onnx_text import check_pruned, model_from_text, weight_shapes

FUSED = '<ir_version: 8, opset_import: ["" : 18, "com.microsoft" : 1]>\n' + """
    g (float[1,4,8,8] x, float[6] gate_a, float[6,4,3,3] W1, float[6] B1, float[5,6,1,1] W2,
       float[5] B2) => (float[1,5,8,8] y) {
        c1 = com.microsoft.FusedConv <activation = "Relu", pads = [1,1,1,1]> (x, W1, B1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m = Mul (c1, ga)
        s = Sigmoid (m)
        y = com.microsoft.FusedConv <activation = "LeakyRelu", activation_params = [0.1]>
            (s, W2, B2)
    }"""


def test_fused_conv_creates_and_consumes_channels():
    # the off channels carry sigmoid(0) = 0.5 into the 1x1 FusedConv: folded into its bias
    pruned, reports = check_pruned(model_from_text(FUSED), {"gate.a": [1, 0, 1, 1, 0, 0]})
    shapes = weight_shapes(_as_conv(pruned))
    assert shapes["c1"] == (3, 4, 3, 3) and shapes["y"] == (5, 3, 1, 1), shapes
    assert reports["gate.a"].kept == 3 and not reports["gate.a"].notes


def _as_conv(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose FusedConv nodes read as Conv for ``weight_shapes``."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        if node.op_type == "FusedConv":
            node.op_type = "Conv"
    return copy


def test_a_model_optimized_by_onnxruntime_prunes_like_the_original(tmp_path):
    text = FUSED.replace("com.microsoft.FusedConv <activation = \"Relu\", pads = [1,1,1,1]>",
                         "Conv <pads = [1,1,1,1]>").replace(
        "c1 = Conv <pads = [1,1,1,1]> (x, W1, B1)",
        "c0 = Conv <pads = [1,1,1,1]> (x, W1, B1)\n c1 = Relu (c0)").replace(
        "y = com.microsoft.FusedConv <activation = \"LeakyRelu\", activation_params = [0.1]>\n"
        "            (s, W2, B2)", "y = Conv (s, W2, B2)")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(model_from_text(text).SerializeToString(), options,
                         providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "opt.onnx"))
    assert any(n.op_type == "FusedConv" for n in optimized.graph.node)
    gates = {"gate.a": [0, 1, 1, 0, 1, 0]}
    pruned, reports = check_pruned(optimized, gates)
    weights = {tuple(i.dims) for i in pruned.graph.initializer}
    assert (3, 4, 3, 3) in weights and (5, 3, 1, 1) in weights, weights
    assert reports["gate.a"].kept == 3
    np.testing.assert_equal(reports["gate.a"].notes, [])
