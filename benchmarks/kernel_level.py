"""nn-Meter-style kernel-level latency prediction vs nnfc's whole-subnet layer-wise model.

Kernel level: every compute layer of the supernet (Conv + its ReLU, or Gemm) is measured alone
(ONNX Runtime, one thread, inference-thread CPU time, median of ``--runs``) on a grid of active
input/output channel counts; a subnet's latency is the sum over its layers of the linearly
interpolated kernel latencies, then ``a + b · sum`` fitted on the training folds (non-kernel ops
and overheads). Scored with the same 5 folds as the profile's own model.

    .venv/bin/python benchmarks/kernel_level.py --bundle B \
        --measurements profiles/resnet18-128-desktop.measurements.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def conv_model(node, in_shape, cin, cout, init):
    """A one-layer ONNX model: the node's Conv (weights sliced to cin/cout) + ReLU."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.to_array(init[node.input[1]])
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    w = np.ascontiguousarray(w[:cout, : (cin if group == 1 else 1)])
    inits = [numpy_helper.from_array(w, "w")]
    inputs = ["x", "w"]
    if len(node.input) > 2 and node.input[2]:
        inits.append(numpy_helper.from_array(numpy_helper.to_array(init[node.input[2]])[:cout],
                                             "b"))
        inputs.append("b")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    nodes = [helper.make_node("Conv", inputs, ["y"], **attrs),
             helper.make_node("Relu", ["y"], ["z"])]
    shape = [1, cin, *in_shape[2:]]
    graph = helper.make_graph(nodes, "kernel", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info("z", TensorProto.FLOAT,
                                                                        None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model, shape


def time_model(model, shape, runs):
    import onnxruntime as ort
    from nnfc.targets.onnxruntime import session_options
    sess = ort.InferenceSession(model.SerializeToString(), session_options(1),
                                providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(3):
        sess.run(None, {"x": x})
    t = []
    for _ in range(runs):
        c0 = time.thread_time()
        sess.run(None, {"x": x})
        t.append((time.thread_time() - c0) * 1e3)
    return float(np.median(t))


def main(argv: list[str] | None = None) -> int:
    import onnx

    from nnfc.bundle import read_bundle
    from nnfc.compiler.cost_analysis import analyse
    from nnfc.compiler.graph_stats import infer_shapes
    from nnfc.compiler.predictor import (LinearModel, error_shares, feature_matrix,
                                         kfold_predictions, unpack_gates)
    from nnfc.compiler.profiler import apply_reference

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--measurements", required=True)
    ap.add_argument("--grid", type=int, default=6, help="channel counts per gated dimension")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)

    bundle = read_bundle(args.bundle)
    supernet = onnx.load(str(bundle.supernet_path))
    structure = analyse(supernet)
    shapes = infer_shapes(supernet, 1)
    init = {i.name: i for i in supernet.graph.initializer}
    nodes = {n.name: n for n in supernet.graph.node}
    data = json.loads(Path(args.measurements).read_text())
    apply_reference(data)
    rows = data["rows"]
    y = np.array([r["latency_ms"] for r in rows])
    gates = {g: np.stack([unpack_gates(r["gates"])[g] for r in rows]) for g in structure.gates}
    terms = structure.layer_terms(gates)

    t0 = time.perf_counter()
    c0 = time.process_time()
    kernel_sum = np.zeros(len(rows))
    measured = 0
    for j, lay in enumerate(structure.layers):
        node = nodes[lay.name]
        if node.op_type != "Conv":
            continue  # the classifier Gemm is constant here: absorbed by the intercept
        in_shape = shapes[node.input[0]][0]
        var_in, var_out = lay.in_dim >= 0, lay.out_dim >= 0
        full = lay.in_channels if var_in else lay.out_channels
        grid = np.unique(np.round(np.linspace(1, full, args.grid)).astype(int)) \
            if (var_in or var_out) else np.array([full])
        lat = []
        for c in grid:
            cin = int(c) if var_in else lay.in_channels
            cout = int(c) if var_out else lay.out_channels
            model, shape = conv_model(node, in_shape, cin, cout, init)
            lat.append(time_model(model, shape, args.runs))
            measured += 1
        active = terms["active_in"][:, j] if var_in else terms["active_out"][:, j]
        kernel_sum += np.interp(active, grid, lat) if len(grid) > 1 else lat[0]
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0

    x = kernel_sum[:, None]
    pred_kernel = kfold_predictions(x, y, 1)
    raw = error_shares(kernel_sum, y)
    k = error_shares(pred_kernel, y)
    xl, n_pos = feature_matrix("layer-align", structure, gates)
    ours = error_shares(kfold_predictions(xl, y, n_pos, 1e-4), y)
    print(f"{len(rows)} profiled subnets of {bundle.root}; {measured} single-layer "
          f"measurements ({secs:.0f} s wall, {cpu:.1f} s CPU)")
    print(f"{'model':44s} {'1-MAPE':>7s} {'±5%':>6s} {'±10%':>6s}")
    for name, s in (("kernel sum, uncorrected", raw), ("kernel sum, a + b·sum (5-fold CV)", k),
                    ("per-layer whole-subnet model (5-fold CV)", ours)):
        print(f"{name:44s} {s['accuracy']:7.2%} {s['within_5']:6.1%} {s['within_10']:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
