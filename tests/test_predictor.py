"""Graph figures, cost structure and the layer-wise predictor."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compile_fixtures import profiled_bundle
from nnfc.bundle import read_bundle
from nnfc.compiler.cost_analysis import analyse
from nnfc.compiler.cost_structure import CostStructure
from nnfc.compiler.graph_stats import graph_stats
from nnfc.compiler.predictor import (ALIGN_BLOCKS, LinearModel, Predictor, fit_predictor, mape_accuracy,
                                     pack_gates, plot_accuracy, unpack_gates)
from nnfc.compiler.profiler import random_gates
from nnfc.errors import NnfcError
from nnfc.passes import apply_gates


def test_graph_stats_conv_and_gemm():
    w = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")
    fc = numpy_helper.from_array(np.ones((8 * 4 * 4, 5), np.float32), "fc")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
         helper.make_node("Flatten", ["c"], ["f"]),
         helper.make_node("MatMul", ["f", "fc"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], [w, fc])
    stats = graph_stats(helper.make_model(graph))
    assert stats.params == 8 * 27 + 128 * 5
    assert stats.param_bytes == 4 * stats.params
    # conv: 2·Cout·Cin·k²·Hout·Wout; matmul: 2·M·K·N
    assert stats.flops == 2 * 8 * 27 * 16 + 2 * 128 * 5
    assert stats.peak_tensor_bytes == 3 * 8 * 8 * 4  # the input image is the largest tensor
    assert stats.memory_mb == pytest.approx((stats.param_bytes + 768) / 1e6)


@pytest.fixture(scope="module")
def supernet():
    return onnx.load(str(read_bundle(profiled_bundle()).supernet_path))


def test_structure_matches_pruned_graphs(supernet):
    structure = CostStructure.from_json(json.loads(json.dumps(analyse(supernet).to_json())))
    assert structure.gates == ["gate.layer1.0.conv1", "gate.layer2.0.conv1"]
    for gates in random_gates(structure.gates, structure.sizes, 8, seed=3):
        stats = graph_stats(apply_gates(supernet, gates))
        mem = structure.memory_terms(gates)
        macs = structure.layer_terms(gates)["macs"].sum()
        assert 2 * macs == pytest.approx(stats.flops, rel=1e-6)
        assert mem["peak_bytes"][0] == stats.peak_tensor_bytes
        assert mem["param_bytes"][0] == stats.param_bytes


def test_random_gates_cover_the_range():
    names, sizes = ["gate.a", "gate.b"], [32, 64]
    plan = random_gates(names, sizes, 200, seed=0)
    ratios = np.array([sum(g.sum() for g in p.values()) / 96 for p in plan])
    assert ratios[0] == 1.0 and ratios.min() < 0.06 and np.mean(ratios < 0.3) > 0.15
    assert all(g.sum() >= 1 for p in plan for g in p.values())
    assert random_gates(names, sizes, 5, seed=1)[3]["gate.a"].tolist() == \
        random_gates(names, sizes, 5, seed=1)[3]["gate.a"].tolist()


def test_alignment_classes_split_macs(supernet):
    structure = analyse(supernet)
    gates = {g: np.ones(s, np.float32) for g, s in zip(structure.gates, structure.sizes)}
    gates["gate.layer1.0.conv1"][:3] = 0  # 5 of 8 channels: no alignment class
    from nnfc.compiler.predictor import cost_features
    x = cost_features(structure, gates)[0].reshape(len(ALIGN_BLOCKS) + 2, -1)
    macs = structure.layer_terms(gates)["macs"][0] / 1e6
    j = next(i for i, lay in enumerate(structure.layers) if lay.in_dim >= 0)
    assert x[-2, j] == pytest.approx(macs[j]) and not x[:-2, j].any()  # unaligned class
    assert x[:, j].sum() > 0
    aligned = [i for i, lay in enumerate(structure.layers) if lay.in_dim < 0
               and lay.in_channels % 16 == 0]
    for i in aligned:
        assert x[0, i] > 0  # 16-aligned inputs land in the first class


def test_pack_roundtrip():
    gates = {"gate.a": np.array([1, 0, 1], np.float32)}
    packed = pack_gates(gates)
    assert packed == {"gate.a": "101"}
    np.testing.assert_array_equal(unpack_gates(packed)["gate.a"], gates["gate.a"])
    np.testing.assert_array_equal(unpack_gates({"gate.a": [1, 0, 1]})["gate.a"], [1, 0, 1])


def test_fit_recovers_a_layerwise_linear_cost(supernet, tmp_path):
    structure = analyse(supernet)
    plan = random_gates(structure.gates, structure.sizes, 160, seed=1)
    from nnfc.compiler.predictor import latency_features, memory_features
    rows = []
    from nnfc.compiler.predictor import HINGES, n_cost_features
    width = latency_features(structure, plan[0]).shape[1]
    assert n_cost_features(structure) == (len(ALIGN_BLOCKS) + 2) * len(structure.layers)
    assert width == n_cost_features(structure) + len(structure.sets) * (len(ALIGN_BLOCKS)
                                                                         + len(HINGES))
    true_coef = np.linspace(0.5, 2.0, width)
    for g in plan:
        lat = 0.3 + float(latency_features(structure, g)[0] @ true_coef)
        mem = float(memory_features(structure, g)[0].sum())
        rows.append({"gates": pack_gates(g), "latency_ms": lat, "graph_memory_mb": mem})
    pred, held = fit_predictor(structure, "desktop", rows, meta={"host": {}})
    acc = pred.meta["accuracy"]
    assert acc["latency"]["n_test"] == 50 and acc["latency"]["accuracy"] > 0.999
    assert acc["latency_shape_terms"] is True
    assert acc["memory"]["accuracy"] > 0.999
    assert mape_accuracy(held["latency_pred"], held["latency_true"]) > 0.999
    path = pred.save(tmp_path / "p.json")
    back = Predictor.load(path)
    lat, mem = back.predict({k: np.stack([p[k] for p in plan[:4]]) for k in structure.gates})
    np.testing.assert_allclose(lat, [r["latency_ms"] for r in rows[:4]], rtol=1e-3)
    assert back.margins[0] < 0.01
    png = plot_accuracy(held, acc, tmp_path / "p.png")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_linear_model_bounds():
    x = np.random.default_rng(0).random((40, 3))
    y = 1.0 + x @ np.array([2.0, 0.0, 1.0])
    model = LinearModel.fit(x, y)
    assert min(model.coef) >= 0 and model.intercept == pytest.approx(1.0, abs=1e-6)
    # a free-sign tail: the last coefficient may go negative
    y2 = 5.0 + x @ np.array([2.0, 1.0, -1.5])
    free = LinearModel.fit(x, y2, n_positive=2)
    assert free.coef == pytest.approx([2.0, 1.0, -1.5], abs=1e-6)
    assert LinearModel.fit(x, y2).coef[2] >= 0


def test_predictor_load_errors(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text("{}")
    with pytest.raises(NnfcError, match="not an nnfc predictor"):
        Predictor.load(bad)
    with pytest.raises(NnfcError, match="predictor .* does not exist"):
        Predictor.load(tmp_path / "missing.json")


def test_random_gates_plan_is_prefix_stable():
    names, sizes = ["gate.a", "gate.b"], [16, 32]
    short, long = random_gates(names, sizes, 10, seed=2), random_gates(names, sizes, 40, seed=2)
    for a, b in zip(short, long):
        for k in names:
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("preset", ["resnet-tiny-bottleneck", "mobilenet-tiny",
                                    "efficientnet-tiny", "vit-tiny"])
def test_structure_matches_pruned_graphs_all_backbones(preset):
    from supernets import supernet as exported
    model = exported(preset)[1]
    structure = analyse(model)
    assert structure.layers and structure.sets
    for gates in random_gates(structure.gates, structure.sizes, 6, seed=5)[1:]:
        stats = graph_stats(apply_gates(model, gates))
        mem = structure.memory_terms(gates)
        assert mem["peak_bytes"][0] == stats.peak_tensor_bytes
        assert mem["param_bytes"][0] == stats.param_bytes
        if preset != "vit-tiny":  # ViT's attention matmuls are not weight layers (constant)
            macs = structure.layer_terms(gates)["macs"].sum()
            assert 2 * macs == pytest.approx(stats.flops, rel=1e-6)


def test_all_off_layer_keeps_a_placeholder_channel(supernet):
    structure = analyse(supernet)
    gates = {g: np.ones(s, np.float32) for g, s in zip(structure.gates, structure.sizes)}
    gates[structure.gates[0]][:] = 0
    stats = graph_stats(apply_gates(supernet, gates))
    mem = structure.memory_terms(gates)
    assert mem["param_bytes"][0] == stats.param_bytes
    assert 2 * structure.layer_terms(gates)["macs"].sum() == pytest.approx(stats.flops, rel=1e-6)
