"""Where ONNX shape inference stops, the passes compute the missing shapes (onnxruntime's symbolic
shape inference, else one probe run) or refuse — they never silently prune nothing."""

import numpy as np
import onnx_ir as ir
import pytest

from nnfc.passes import (BindGatesPass, FoldGateConstantsPass, PruneError,
                         PruneGatedChannelsPass)
from nnfc.passes.shapes import complete_shapes
from onnx_text import check_pruned, model_from_text, weight_shapes

#: a Reshape whose target is computed at run time (another exporter's way of writing a flatten
#: or a view): ONNX shape inference gives no shape after it, even with data propagation
RUNTIME_RESHAPE = '<ir_version: 7, opset_import: ["" : OPSET]>\n' + """
    g (float[1,4,8,8] x, float[6] gate_a, float[6,4,3,3] W1, float[6] B1, float[5,6,1,1] W2)
      => (float[1,5,8,8] y) {
        s = Shape (x)
        sf = Cast <to = 1> (s)
        si = Cast <to = 7> (sf)
        st = Constant <value = int64[1] {0}> ()
        en = Constant <value = int64[1] {2}> ()
        head = Slice (si, st, en)
        tail = Constant <value = int64[2] {8, 8}> ()
        target = Concat <axis = 0> (head, tail)
        xr = Reshape (x, target)
        c1 = Conv <pads = [1,1,1,1]> (xr, W1, B1)
        r = Relu (c1)
        shape = Constant <value = int64[4] {1,-1,1,1}> ()
        ga = Reshape (gate_a, shape)
        m = Mul (r, ga)
        y = Conv (m, W2)
    }"""


@pytest.mark.parametrize("opset", [11, 12, 18])
def test_a_run_time_reshape_does_not_stop_pruning(opset):
    model = model_from_text(RUNTIME_RESHAPE.replace("OPSET", str(opset)))
    dims = {v.name: v.type.tensor_type.shape.dim for v in model.graph.value_info}.get("c1", [])
    assert len(dims) < 4 or not dims[3].HasField("dim_value"), "ONNX inference stops here"
    pruned, reports = check_pruned(model, {"gate.a": [1, 0, 1, 0, 1, 1]})
    assert weight_shapes(pruned)["c1"] == (4, 4, 3, 3) and weight_shapes(pruned)["y"] == (5, 4, 1, 1)
    assert reports["gate.a"].kept == 4 and not reports["gate.a"].notes


def test_shapes_come_from_a_probe_run_when_symbolic_inference_fails(monkeypatch):
    import onnxruntime.tools.symbolic_shape_infer as symbolic

    def refuse(*args, **kwargs):
        raise RuntimeError("unsupported")

    monkeypatch.setattr(symbolic.SymbolicShapeInference, "infer_shapes", refuse)
    model = model_from_text(RUNTIME_RESHAPE.replace("OPSET", "12"))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in complete_shapes(model).graph.value_info}
    assert shapes["xr"] == [1, 4, 8, 8] and shapes["m"] == [1, 6, 8, 8]
    pruned, reports = check_pruned(model, {"gate.a": [1, 0, 1, 0, 1, 1]})
    assert reports["gate.a"].kept == 4


def test_a_model_without_shapes_is_refused_not_half_pruned():
    model = model_from_text(RUNTIME_RESHAPE.replace("OPSET", "12"))
    graph_model = ir.from_proto(model)  # shapes after the Reshape unknown
    BindGatesPass({"gate.a": np.array([1, 0, 1, 0, 1, 1], np.float32)})(graph_model)
    FoldGateConstantsPass()(graph_model)
    with pytest.raises(PruneError, match=r"tensor 'xr' \(output of Reshape .*without a shape"):
        PruneGatedChannelsPass()(graph_model)
