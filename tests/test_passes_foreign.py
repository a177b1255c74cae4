"""The passes on a hand-built ONNX graph (another exporter's style: unfused BatchNormalization,
gates before the activation, bias-carrying depthwise conv, a gated tensor on a residual path).
Structure is found from the graph, so names mean nothing here."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnfc.passes import apply_gates_with_report
from supernets import run

RNG = np.random.default_rng(7)


def _w(name, *shape):
    return numpy_helper.from_array((RNG.standard_normal(shape) * 0.5).astype(np.float32), name)


def _gate_reshape(gate, size, out):  # noqa: ARG001 - size documents the gate length
    return [helper.make_node("Reshape", [gate, "shape4"], [out])]


def foreign_model() -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.array([1, -1, 1, 1], np.int64), "shape4"),
             _w("W1", 6, 4, 3, 3), _w("B1", 6),
             _w("bn_s", 6), _w("bn_b", 6), _w("bn_m", 6),
             numpy_helper.from_array(RNG.uniform(0.5, 1.5, 6).astype(np.float32), "bn_v"),
             _w("W2", 5, 6, 1, 1),
             _w("W3", 7, 4, 1, 1), _w("W4", 7, 1, 3, 3), _w("B4", 7), _w("W5", 5, 7, 1, 1),
             _w("B5", 5),
             _w("W6", 4, 4, 3, 3), _w("W7", 5, 4, 1, 1),
             _w("W8", 6, 4, 3, 3), _w("W9", 5, 6, 3, 3),
             _w("Wfc", 3, 5), _w("Bfc", 3),
             _w("W10", 3, 4, 1, 1), _w("W11", 5, 7, 1, 1), _w("W12", 3, 4, 3, 3), _w("B12", 3),
             _w("Wfc2", 3, 12)]
    nodes = [
        # branch 1: conv -> BN -> gate -> Sigmoid -> 1x1 conv (gated-off channels carry 0.5)
        helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn1"]),
        *_gate_reshape("g_a", 6, "ga"),
        helper.make_node("Mul", ["bn1", "ga"], ["m1"]),
        helper.make_node("Sigmoid", ["m1"], ["s1"]),
        helper.make_node("Conv", ["s1", "W2"], ["y1"]),
        # branch 2: 1x1 -> Relu -> gate -> depthwise (bias) -> Relu -> 1x1 (bias carried)
        helper.make_node("Conv", ["x", "W3"], ["c3"]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        *_gate_reshape("g_b", 7, "gb"),
        helper.make_node("Mul", ["r3", "gb"], ["m3"]),
        helper.make_node("Conv", ["m3", "W4", "B4"], ["d4"], group=7, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["d4"], ["r4"]),
        helper.make_node("Conv", ["r4", "W5", "B5"], ["y2"]),
        # branch 3: gated tensor that also feeds a residual add
        helper.make_node("Conv", ["x", "W6"], ["c6"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c6"], ["r6"]),
        *_gate_reshape("g_c", 4, "gc"),
        helper.make_node("Mul", ["r6", "gc"], ["m6"]),
        helper.make_node("Add", ["m6", "x"], ["res"]),
        helper.make_node("Conv", ["m6", "W7"], ["y3"]),
        # branch 4: gate before Sigmoid into a padded 3x3 conv (0.5 is not foldable there)
        helper.make_node("Conv", ["x", "W8"], ["c8"], pads=[1, 1, 1, 1]),
        *_gate_reshape("g_d", 6, "gd"),
        helper.make_node("Mul", ["c8", "gd"], ["m8"]),
        helper.make_node("Sigmoid", ["m8"], ["s8"]),
        helper.make_node("Conv", ["s8", "W9"], ["y4"], pads=[1, 1, 1, 1]),
        # branch 5: gated tensor concatenated after x (its channels sit at offset 4)
        helper.make_node("Conv", ["x", "W10"], ["c10"]),
        helper.make_node("Relu", ["c10"], ["r10"]),
        *_gate_reshape("g_e", 3, "ge"),
        helper.make_node("Mul", ["r10", "ge"], ["m10"]),
        helper.make_node("Concat", ["x", "m10"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "W11"], ["y5"]),
        helper.make_node("Sum", ["y1", "y2", "y3", "y4", "y5"], ["y"]),
        helper.make_node("GlobalAveragePool", ["y"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "Wfc", "Bfc"], ["head1"], transB=1),
        # branch 6: gate before Sigmoid, Flatten [N,3,2,2] -> Gemm (each channel = 4 features)
        helper.make_node("Conv", ["x", "W12", "B12"], ["c12"], pads=[1, 1, 1, 1], strides=[4, 4]),
        *_gate_reshape("g_f", 3, "gf"),
        helper.make_node("Mul", ["c12", "gf"], ["m12"]),
        helper.make_node("Sigmoid", ["m12"], ["s12"]),
        helper.make_node("Flatten", ["s12"], ["f12"]),
        helper.make_node("Gemm", ["f12", "Wfc2"], ["head2"], transB=1),
        helper.make_node("Add", ["head1", "head2"], ["logits"]),
    ]
    gate_in = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [s])
               for n, s in (("g_a", 6), ("g_b", 7), ("g_c", 4), ("g_d", 6), ("g_e", 3),
                            ("g_f", 3))]
    graph = helper.make_graph(
        nodes, "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])] + gate_in,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("res", TensorProto.FLOAT, ["N", 4, 8, 8])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    # the gate contract names gate inputs gate.<layer>
    for inp in model.graph.input[1:]:
        old = inp.name
        inp.name = f"gate.{old}"
        for node in model.graph.node:
            node.input[:] = [f"gate.{old}" if i == old else i for i in node.input]
    return model


GATES = {"gate.g_a": [1, 0, 1, 0, 0, 1], "gate.g_b": [0, 1, 0, 0, 1, 1, 0],
         "gate.g_c": [1, 0, 0, 1], "gate.g_d": [1, 1, 0, 1, 0, 0], "gate.g_e": [0, 1, 1],
         "gate.g_f": [1, 0, 1]}


@pytest.fixture(scope="module")
def pruned():
    model = foreign_model()
    gates = {k: np.asarray(v, np.float32) for k, v in GATES.items()}
    out, reports = apply_gates_with_report(model, gates)
    return model, gates, out, {r.gate: r for r in reports}


def _weight_shapes(model):
    inits = {i.name: tuple(i.dims) for i in model.graph.initializer}
    return {n.output[0]: inits.get(n.input[1]) for n in model.graph.node if n.op_type == "Conv"}


def test_foreign_graph_outputs_are_exact(pruned):
    model, gates, out, _ = pruned
    x = RNG.standard_normal((2, 4, 8, 8)).astype(np.float32)
    sess_ref = run(model, {"x": x, **gates})
    np.testing.assert_allclose(run(out, {"x": x}), sess_ref, atol=1e-5)


def test_foreign_graph_structure(pruned):
    _, _, out, reports = pruned
    shapes = _weight_shapes(out)
    assert shapes["c1"] == (3, 4, 3, 3)       # gate before Sigmoid: 0.5 folded into W2's bias
    assert shapes["y1"] == (5, 3, 1, 1)
    assert shapes["c3"] == (3, 4, 1, 1)
    assert shapes["d4"] == (3, 1, 3, 3)       # depthwise groups follow; its bias folded into W5
    assert shapes["y2"] == (5, 3, 1, 1)
    assert shapes["c6"] == (4, 4, 3, 3)       # feeds the residual: keeps its channels there...
    assert shapes["y3"] == (5, 2, 1, 1)       # ...and is pruned where it can be (via Gather)
    assert shapes["c8"] == (6, 4, 3, 3)       # sigmoid(0)=0.5 into a padded conv: kept
    assert reports["gate.g_d"].kept == 6 and reports["gate.g_c"].notes
    assert shapes["c10"] == (2, 4, 1, 1)      # Concat: the gated channels sit at offset 4...
    assert shapes["y5"] == (5, 4 + 2, 1, 1)   # ...so the consumer drops input channel 4 only
    assert shapes["c12"] == (2, 4, 3, 3)      # Flatten -> Gemm: channel 1 = features 4..7,
    inits = {i.name: tuple(i.dims) for i in out.graph.initializer}
    gemm2 = next(n for n in out.graph.node if n.output[0] == "head2")
    assert inits[gemm2.input[1]] == (3, 8)    # dropped from the Gemm, sigmoid(0) folded to C
    assert len(gemm2.input) == 3
    assert sum(n.op_type == "Gather" for n in out.graph.node) == 1
    assert not [i.name for i in out.graph.input if i.name.startswith("gate.")]


@pytest.mark.parametrize("seed", range(6))
def test_foreign_graph_random_gates(seed):
    model = foreign_model()
    rng = np.random.default_rng(seed)
    gates = {k: (rng.random(len(v)) < 0.5).astype(np.float32) for k, v in GATES.items()}
    out, _ = apply_gates_with_report(model, gates)
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    for got, ref in zip(_run_all(out, {"x": x}), _run_all(model, {"x": x, **gates})):
        np.testing.assert_allclose(got, ref, atol=1e-5)


def _run_all(model, feeds):
    import onnxruntime as ort
    return ort.InferenceSession(model.SerializeToString()).run(None, feeds)
