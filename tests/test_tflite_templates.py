"""Android profiling derives each subnet's TFLite model from one onnx2tf conversion of a subnet
with the same graph (nnfc.targets.tflite_templates): the derived model must be the model onnx2tf
itself makes of that subnet (same operators, tensor shapes and weights), and compute what the
pruned ONNX model and the gated supernet compute (ORT)."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from nnfc.onnx_io import save_onnx
from nnfc.targets.tflite_templates import Template, TemplateCache, constants, topology_key

litert = importlib.util.find_spec("ai_edge_litert") is not None
converter = litert and importlib.util.find_spec("onnx2tf") is not None


def _conv_graph(out_channels: int, group_one: bool = True) -> onnx.ModelProto:
    rng = np.random.default_rng(out_channels)
    w = rng.standard_normal((out_channels, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(out_channels).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1],
                              group=1 if group_one else 3),
             helper.make_node("Relu", ["y"], ["out"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_topology_key_ignores_channel_counts_not_wiring():
    assert topology_key(_conv_graph(4)) == topology_key(_conv_graph(7))
    assert topology_key(_conv_graph(4)) != topology_key(_conv_graph(3, group_one=False))
    relu_first = _conv_graph(4)
    relu_first.graph.node[1].op_type = "Sigmoid"
    assert topology_key(relu_first) != topology_key(_conv_graph(4))
    found = constants(_conv_graph(5))
    assert sorted(found) == [(0, 1), (0, 2)] and found[(0, 1)].shape == (5, 3, 3, 3)


def test_a_template_without_links_derives_nothing():
    cache = TemplateCache()
    cache.templates[("float32", topology_key(_conv_graph(4)))] = [Template(b"")]
    assert list(cache.derive(_conv_graph(6))) == []
    assert list(cache.derive(_conv_graph(3, group_one=False))) == []  # no template at all


def _flatbuffer_without_names(path) -> dict:
    """Everything of a TFLite model but tensor names and metadata: operators (op codes,
    wiring, options), tensors (shape, type, bytes) and the subgraph's inputs/outputs."""
    from ai_edge_litert import schema_py_generated as S
    fb = S.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    graph = fb.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in fb.operatorCodes]

    def options(op):
        o = op.builtinOptions
        return None if o is None else (type(o).__name__, {
            k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(o).items()})
    return {
        "ops": [(codes[op.opcodeIndex], list(op.inputs), list(op.outputs), options(op))
                for op in graph.operators],
        "tensors": [(list(t.shape), t.type,
                     None if fb.buffers[t.buffer].data is None
                     else bytes(np.asarray(fb.buffers[t.buffer].data, np.uint8)))
                    for t in graph.tensors],
        "io": (list(graph.inputs), list(graph.outputs)),
    }


@pytest.mark.skipif(not converter, reason="android extra not installed (make install-android)")
def test_derived_subnet_is_onnx2tfs_model_and_matches_ort(tmp_path):
    from nnfc.passes import apply_gates, gate_inputs
    from nnfc.targets import get_target
    import onnxruntime as ort
    from supernets import supernet

    _, model = supernet("resnet-tiny")
    sizes = gate_inputs(model)
    rng = np.random.default_rng(7)

    def gates(ratio: float) -> dict[str, np.ndarray]:
        out = {}
        for name, size in sizes.items():
            g = (rng.random(size) < ratio).astype(np.float32)
            g[rng.integers(size)] = 1.0
            out[name] = g
        return out

    profiling = get_target("android", threads=1)
    profiling.prepare_profiling()
    first = save_onnx(apply_gates(model, gates(0.6)), tmp_path / "a.onnx")
    profiling.lower(first, tmp_path / "a")
    assert profiling.lowered == {"derived": 0, "converted": 1}

    chosen = gates(0.3)
    pruned = apply_gates(model, chosen)
    second = save_onnx(pruned, tmp_path / "b.onnx")
    derived = profiling.lower(second, tmp_path / "b")
    assert profiling.lowered == {"derived": 1, "converted": 1}  # no onnx2tf this time
    converted = get_target("android", threads=1).lower(second, tmp_path / "b-onnx2tf")

    assert _flatbuffer_without_names(derived) == _flatbuffer_without_names(converted)
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    got = profiling.run(derived, {"input": x})

    def ort_run(m, feeds):
        return ort.InferenceSession(m.SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, feeds)
    want_pruned = ort_run(pruned, {"input": x})
    want_gated = ort_run(model, {"input": x, **chosen})
    assert len(got) == len(want_pruned) == len(want_gated)
    for g, p, s in zip(got, want_pruned, want_gated):
        np.testing.assert_allclose(g, p, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(g, s, rtol=1e-4, atol=1e-4)
    # the profiler times it call by call against its reference with the target's runner
    from nnfc.compiler.measure import clock_for, measure_relative
    m = measure_relative(profiling.runner(derived), profiling.runner(converted), runs=3,
                         warmup=1, rounds=2, clock=clock_for(profiling))
    assert 0.8 < m.relative < 1.25  # the same model twice


@pytest.mark.skipif(not converter, reason="android extra not installed (make install-android)")
def test_template_store_serves_a_later_process(tmp_path):
    """A conversion kept in a TemplateStore directory (what ``nnfc compile --target android``
    keeps beside the profile) lets a fresh target — another process — derive a subnet of the
    same graph instead of converting; a damaged entry is converted again."""
    from nnfc.passes import apply_gates, gate_inputs
    from nnfc.targets import get_target
    from supernets import supernet

    _, model = supernet("resnet-tiny")
    sizes = gate_inputs(model)
    rng = np.random.default_rng(3)

    def subnet(ratio: float, name: str):
        gates = {k: (rng.random(n) < ratio).astype(np.float32) for k, n in sizes.items()}
        for g in gates.values():
            g[0] = 1.0
        return save_onnx(apply_gates(model, gates), tmp_path / f"{name}.onnx")

    store = tmp_path / "android.templates"
    first = get_target("android", threads=1)
    first.use_template_store(store)
    first.lower(subnet(0.6, "a"), tmp_path / "a")
    assert first.lowered == {"derived": 0, "converted": 1}
    assert sorted(p.suffix for p in store.iterdir()) == [".json", ".onnx", ".tflite"]

    later = get_target("android", threads=1)
    later.use_template_store(store)
    later.lower(subnet(0.3, "b"), tmp_path / "b")
    assert later.lowered == {"derived": 1, "converted": 0}

    for p in store.glob("*.tflite"):
        p.write_bytes(b"not a flatbuffer")
    damaged = get_target("android", threads=1)
    damaged.use_template_store(store)
    damaged.lower(subnet(0.4, "c"), tmp_path / "c")
    assert damaged.lowered == {"derived": 0, "converted": 1}
