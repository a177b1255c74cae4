"""Test helper: small ONNX graphs written in the ONNX text format, checked by ORT.

Every graph input other than ``x`` and ``gate_*`` becomes a random float32 initializer of its
declared shape (weights), ``gate_<name>`` inputs are renamed to the gate contract's
``gate.<name>``, and :func:`check_pruned` compares every output of the gated model with the
pruned one."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import onnxruntime as ort
from onnx import numpy_helper

from nnfc.passes import apply_gates_with_report


def model_from_text(text: str, seed: int = 0) -> onnx.ModelProto:
    """Parse ``text`` (an ONNX text model) into a checked model with random weights."""
    rng = np.random.default_rng(seed)
    model = onnx.parser.parse_model(text)
    graph = model.graph
    keep = []
    for inp in list(graph.input):
        if inp.name == "x" or inp.name.startswith("gate_"):
            keep.append(inp)
            continue
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        arr = rng.standard_normal(dims).astype(np.float32) * 0.5
        if inp.name.startswith("var"):  # BN variances stay positive
            arr = np.abs(arr) + 0.5
        graph.initializer.append(numpy_helper.from_array(arr, inp.name))
    del graph.input[:]
    graph.input.extend(keep)
    for inp in graph.input:
        if inp.name.startswith("gate_"):
            old, new = inp.name, "gate." + inp.name[len("gate_"):]
            inp.name = new
            for node in graph.node:
                node.input[:] = [new if i == old else i for i in node.input]
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


def run_all(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})


def x_shape(model: onnx.ModelProto) -> list[int]:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value or 2 for d in dims]


def check_pruned(model: onnx.ModelProto, gates: dict[str, list[float]], seed: int = 0,
                 atol: float = 1e-5, rules=None):
    """Prune ``model`` with ``gates`` (and op ``rules``); assert every output equals the gated
    model's; return (pruned model, {gate: report})."""
    gates = {k: np.asarray(v, np.float32) for k, v in gates.items()}
    pruned, reports = apply_gates_with_report(model, gates, rules=rules)
    onnx.checker.check_model(pruned)
    x = np.random.default_rng(seed).standard_normal(x_shape(model)).astype(np.float32)
    got, ref = run_all(pruned, {"x": x}), run_all(model, {"x": x, **gates})
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=atol, rtol=1e-5)
    return pruned, {r.gate: r for r in reports}


def weight_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Output name of each Conv/ConvTranspose/Gemm/MatMul -> its weight's shape."""
    inits = {i.name: tuple(i.dims) for i in model.graph.initializer}
    return {n.output[0]: inits.get(n.input[1]) for n in model.graph.node
            if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")}


def gate_contract(model: onnx.ModelProto, names) -> onnx.ModelProto:
    """A Keras/tf2onnx export made to follow the gate contract: inputs ``gate_<layer>`` of shape
    ``[1, C]`` become ``gate.<layer>`` of shape ``[C]``; shapes inferred again."""
    renamed = {n: "gate." + n[len("gate_"):] for n in names}
    for inp in model.graph.input:
        if inp.name in renamed:
            inp.type.tensor_type.shape.dim.pop(0)
            inp.name = renamed[inp.name]
    for node in model.graph.node:
        node.input[:] = [renamed.get(i, i) for i in node.input]
    return onnx.shape_inference.infer_shapes(model)


def keras_export(model, sizes, opset: int, rng) -> onnx.ModelProto:
    """A Keras model with inputs ``x`` ``[1,16,16,3]`` and one ``gate_<layer>`` ``[1, C]`` per
    entry of ``sizes``: random weights (BatchNorm variances near 1), exported by tf2onnx and
    made to follow the gate contract."""
    import tensorflow as tf
    import tf2onnx
    for w in model.weights:
        w.assign(rng.standard_normal(w.shape).astype(np.float32) * 0.3 + (
            1.0 if "variance" in w.name else 0.0))
    spec = [tf.TensorSpec((1, 16, 16, 3), tf.float32, name="x")] + [
        tf.TensorSpec((1, s), tf.float32, name=n) for n, s in sizes.items()]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    return gate_contract(proto, sizes)
