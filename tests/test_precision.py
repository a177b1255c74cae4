"""Precision (nnfc.precision): int8 QDQ models with onnxruntime's quantizer, the accuracy
control that returns layers to float, and ``nnfc compile --precision`` on the default factory."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cli_runner import run_cli
from nnfc.errors import NnfcError
from nnfc.precision import check_precision
from nnfc.precision import ort_quantize as oq
from nnfc.precision.accuracy import control, drop_points
from nnfc.precision.calibration import Calibration
from nnfc.precision.stage import precision_name
from nnfc.targets.onnxruntime import open_reference_session


def conv_net(seed: int = 0) -> onnx.ModelProto:
    """input [1,3,16,16] -> conv/relu -> conv/relu -> conv ``raw`` -> Sigmoid ``out`` (a
    post-network op, as a detector's decode graph), nodes unnamed, opset listed twice."""
    rng = np.random.default_rng(seed)
    inits, nodes, prev, c = [], [], "input", 3
    for i, width in enumerate((8, 8, 4)):
        w = rng.standard_normal((width, c, 3, 3)).astype(np.float32) * 0.3
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array(rng.standard_normal(width).astype(np.float32) * 0.1,
                                          f"b{i}")]
        out = "raw" if i == 2 else f"c{i}"
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [out], pads=[1] * 4))
        if i < 2:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"]))
            out = f"r{i}"
        prev, c = out, width
    nodes.append(helper.make_node("Sigmoid", ["raw"], ["out"]))
    graph = helper.make_graph(nodes, "net",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                             [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 16, 16])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


def calibration(n: int = 16) -> Calibration:
    images = np.random.default_rng(1).random((n, 3, 16, 16), dtype=np.float32)
    return Calibration("input", images, "test images")


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return open_reference_session(model.SerializeToString()).run(None, {"input": x})[0]


def test_prepared_lists_each_domain_once_and_names_every_node():
    model = conv_net()
    prepared = oq.prepared(model)
    assert [(o.domain, o.version) for o in prepared.opset_import] == [("", 18)]
    names = [n.name for n in prepared.graph.node]
    assert all(names) and len(set(names)) == len(names)
    assert len(model.opset_import) == 2  # the input is left alone


def test_int8_model_quantizes_the_network_only_and_stays_close_to_float():
    model = oq.prepared(conv_net())
    nodes = oq.network_nodes(model, ["raw"])
    assert "Sigmoid_6" not in nodes and len(nodes) == 5
    q = oq.quantize_qdq(model, calibration(), nodes)
    ops = [n.op_type for n in q.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # int8 weights stored per output channel
    weights = [i for i in q.graph.initializer if i.data_type == TensorProto.INT8]
    assert weights and any(len(i.dims) == 4 for i in weights)
    # the tail after the network stays float: nothing quantizes the Sigmoid's output
    assert not [n for n in q.graph.node if "out" in n.input]
    x = calibration(4).images[:1]
    want, got = run(model, x), run(q, x)
    assert np.all(np.isfinite(got))
    assert float(np.max(np.abs(got - want))) < 0.05  # sigmoid outputs in [0, 1]
    assert float(np.max(np.abs(got - want))) > 0  # it is quantized


def test_kept_float_layers_are_not_quantized():
    model = oq.prepared(conv_net())
    nodes = oq.network_nodes(model, ["raw"])
    first = nodes[0]
    q = oq.quantize_qdq(model, calibration(), nodes, exclude=[first])
    conv = next(n for n in q.graph.node if n.name == first)
    assert conv.input[1] == "w0"  # its float weight, not a dequantized one


def test_sensitivity_ranks_every_quantized_layer_with_finite_figures():
    model = oq.prepared(conv_net())
    nodes = oq.network_nodes(model, ["raw"])
    q = oq.quantize_qdq(model, calibration(), nodes)
    ranked = oq.sensitivity(model, q, calibration(), nodes, samples=4)
    assert ranked and all(np.isfinite(db) for _, db in ranked)
    assert [db for _, db in ranked] == sorted((db for _, db in ranked), reverse=True)
    assert {n for group, _ in ranked for n in group} <= set(nodes)


def test_quantizer_error_is_one_clear_line():
    model = oq.prepared(conv_net())
    bad = Calibration("nope", calibration().images, "wrong input name")
    with pytest.raises(NnfcError, match="could not quantize"):
        oq.quantize_qdq(model, bad, oq.network_nodes(model, ["raw"]))


def test_control_returns_layers_to_float_in_rank_order_until_within():
    metrics = {(): 0.90, ("a",): 0.93, ("a", "b"): 0.948}
    builds = []

    def build(kept):
        builds.append(tuple(kept))
        return Path("/".join(kept) or "none")

    result = control(build, lambda art: metrics[builds[-1]], 0.95,
                     lambda: [(("a",), 9.0), (("b",), 5.0), (("c",), 1.0)], max_drop=1.0)
    assert builds == [(), ("a",), ("a", "b")]
    assert result.within() and result.best.kept_float == ["a", "b"]
    assert drop_points(0.95, 0.948) == pytest.approx(0.2)


def test_control_gives_up_after_the_ranking_and_says_so():
    result = control(lambda kept: Path("x"), lambda art: 0.5, 0.95,
                     lambda: [(("a",), 1.0)], max_drop=1.0)
    assert not result.within() and len(result.attempts) == 2


def test_control_does_not_rank_when_the_first_build_is_within():
    ranked = []
    result = control(lambda kept: Path("x"), lambda art: 0.949, 0.95,
                     lambda: ranked.append(1) or [], max_drop=1.0)
    assert result.within() and not ranked


def test_precision_names_and_refusals():
    assert precision_name("model.ort.onnx", "int8") == "model.int8.ort.onnx"
    assert precision_name("model.tflite.json", "int8") == "model.int8.tflite.json"
    assert precision_name("build_engine.sh", "int8") == "int8.build_engine.sh"
    with pytest.raises(NnfcError, match="does not build fp16: slow; it builds fp32, int8"):
        check_precision("fp16", "desktop", ("fp32", "int8"), {"fp16": "slow"})
    with pytest.raises(NnfcError, match="unknown precision"):
        check_precision("int4", "desktop", ("fp32",))


@pytest.mark.slow
def test_compile_int8_on_the_default_factory(tmp_path, capsys):
    prof, out = tmp_path / "prof" / "desktop.json", tmp_path / "int8"
    code, stdout, report = _profile_and_compile_int8(prof, out, capsys)
    prec = report["precision"]
    assert prec["requested"] == "int8" and prec["built"] == "int8"
    assert report["artifact"] == "model.int8.ort.onnx"
    assert {"model.onnx", "model.ort.onnx", "model.int8.onnx", "model.int8.ort.onnx"} <= \
        {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.is_dir()]
    m = prec["metric"]
    assert m["name"] == "map50" and 0 < m["quantized"] <= 1 and 0 < m["float"] <= 1
    assert (code == 3) == (m["drop_points"] > 1.0)
    assert prec["memory_mb"] < report["params"] * 4 / 1e6 + 1  # int8 weights counted
    assert "int8: map50" in stdout
    # fp16 on desktop: one clear refusal, nothing written
    code, _, err = run_cli(["compile", "--task", "red,car", "--lat", "1s", "--profile",
                            str(prof), "--precision", "fp16", "-o", str(tmp_path / "h")], capsys)
    assert code == 2 and "does not build fp16" in err and not (tmp_path / "h").exists()


def test_bench_side_by_side_compares_each_artifact_with_the_first_of_its_task():
    from nnfc.benchmarking.side_by_side import side_by_side, side_by_side_lines

    def entry(name, rounds, value, precision, task=("red", "car")):
        return {"name": name, "task": list(task), "target": "desktop", "precision": precision,
                "latency_ms": {"rounds": rounds},
                "eval": {"metric": "map50", "value": value}}
    rows = side_by_side([entry("fp32", [4.0, 4.4, 8.0], 0.93, "fp32"),
                         entry("int8", [2.0, 2.0, 2.0], 0.925, "int8"),
                         entry("other", [1.0, 1.0, 1.0], 0.5, "fp32", ("blue", "car"))])
    assert len(rows) == 1 and rows[0]["against"] == "fp32"
    assert rows[0]["speedup"] == pytest.approx(2.2)  # median of 2.0, 2.2, 4.0
    assert rows[0]["metric_points"] == pytest.approx(-0.5)
    assert side_by_side_lines(rows)[0].startswith("int8 vs fp32 (int8 vs fp32): 2.20x")


def test_tflite_denylist_keeps_the_raw_output_layers_and_what_follows_float():
    from nnfc.targets.tflite_int8_convert import denylist, signature_names
    # conv (4 ch) -> conv "head" (1 ch) -> logistic -> maxpool ; another branch untouched
    ops = [{"op_name": "CONV_2D", "inputs": [0], "outputs": [1]},
           {"op_name": "CONV_2D", "inputs": [1], "outputs": [2]},
           {"op_name": "LOGISTIC", "inputs": [2], "outputs": [3]},
           {"op_name": "MAX_POOL_2D", "inputs": [3], "outputs": [4]},
           {"op_name": "CONV_2D", "inputs": [1], "outputs": [5]}]
    names = {i: f"t{i}" for i in range(6)}
    shapes = {0: [1, 8, 8, 3], 1: [1, 8, 8, 4], 2: [1, 8, 8, 1], 3: [1, 8, 8, 1],
              4: [1, 8, 8, 1], 5: [1, 8, 8, 2]}
    # the ONNX (NCHW) shape of the raw output finds the head in the NHWC graph
    assert denylist(ops, names, shapes, [[1, 1, 8, 8]]) == ["t2", "t3", "t4"]
    assert denylist(ops, names, shapes, []) == []
    assert signature_names(["boxes", "scores"], ["output_0", "output_1"]) == \
        {"boxes": "output_0", "scores": "output_1"}
    assert signature_names(["boxes"], ["boxes"]) == {"boxes": "boxes"}


def test_tflite_int8_io_is_quantized_and_dequantized_at_the_boundary():
    from nnfc.targets.tflite_int8 import dequantize_output, quantize_input
    detail = {"dtype": np.int8, "quantization": (0.5, -10)}
    q = quantize_input(np.array([0.0, 1.0, 1000.0], np.float32), detail)
    assert q.dtype == np.int8 and q.tolist() == [-10, -8, 127]
    assert dequantize_output(q, detail).tolist() == [0.0, 1.0, 68.5]
    flt = {"dtype": np.float32, "quantization": (0.0, 0)}
    assert quantize_input(np.array([0.25]), flt).dtype == np.float32


def test_jetson_int8_is_an_explicitly_quantized_onnx_built_with_int8(tmp_path, capsys):
    from nnfc.targets import get_target
    model = oq.prepared(conv_net())
    q = oq.quantize_qdq(model, calibration(), oq.network_nodes(model, ["raw"]), symmetric=True)
    target = get_target("jetson")
    art = target.lower(q.SerializeToString(), tmp_path / "int8")
    recipe = (tmp_path / "int8" / "build_engine.sh").read_text()
    assert "--int8" in recipe and "--fp16" not in recipe
    # without TensorRT the QDQ ONNX runs in onnxruntime: the file the engine is built from
    x = calibration(2).images[:1]
    got = target.run(art, {"input": x})[0]
    assert float(np.max(np.abs(got - run(model, x)))) < 0.05
    half = target.lower_fp16(model.SerializeToString(), tmp_path / "fp16")
    assert "--fp16" in (tmp_path / "fp16" / "build_engine.sh").read_text()
    assert half.name == "model.trt.onnx"
    # the precision stage renames the files and the recipe follows them
    from nnfc.precision.stage import PrecisionStage
    stage = PrecisionStage(None, ["x"], target, None, tmp_path)
    final = stage._settle(art, "int8")
    assert final.name == "model.int8.trt.onnx"
    script = (tmp_path / "int8.build_engine.sh").read_text()
    assert "--onnx=model.int8.trt.onnx" in script and "model.int8.engine" in script
    # uint8 activations (zero point 128) are no TensorRT Q/DQ: one clear refusal
    asym = oq.quantize_qdq(model, calibration(), oq.network_nodes(model, ["raw"]))
    with pytest.raises(NnfcError, match="zero point 0"):
        target.lower(asym.SerializeToString(), tmp_path / "bad")


def test_precision_target_builds_int8_and_keeps_the_float_lowering(tmp_path):
    from nnfc.precision.target import PrecisionTarget
    from nnfc.targets import get_target
    inner = get_target("desktop", threads=1)
    target = PrecisionTarget(inner, "int8", calibration(), ["raw"])
    art = target.lower(conv_net().SerializeToString(), tmp_path)
    assert art.parent == tmp_path and target.name == "desktop"  # forwarded
    lowered = onnx.load(str(art))
    assert any("Quant" in n.op_type or n.op_type.startswith("QLinear")
               for n in lowered.graph.node)
    flt = target.float_artifact(art)
    assert flt is not None and flt.is_file() and flt != art
    x = calibration(2).images[:1]
    want = run(conv_net(), x)
    assert np.allclose(target.run(flt, {"input": x})[0], want, atol=1e-5)
    assert float(np.max(np.abs(target.run(art, {"input": x})[0] - want))) < 0.05


@pytest.mark.slow
def test_profile_per_precision_drives_the_compile(tmp_path, capsys):
    prof = tmp_path / "desktop-int8.json"
    out = tmp_path / "int8"
    _, _, report = _profile_and_compile_int8(prof, out, capsys, "--precision", "int8")
    assert json.loads(prof.read_text())["precision"] == "int8"
    assert report["precision"]["profile_precision"] == "int8"
    assert report["precision"]["built"] == "int8"
    assert report["max_abs_diff_vs_supernet"] is not None  # the float twin was verified
    assert {"model.ort.onnx", "model.int8.ort.onnx"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.is_dir()]


def test_memory_counts_weights_at_the_precision_size():
    from nnfc.precision import memory_mb
    assert memory_mb(4_000_000, 500_000, "fp32") == pytest.approx(4.5)
    assert memory_mb(4_000_000, 500_000, "int8") == pytest.approx(1.5)
    assert memory_mb(4_000_000, 500_000, "fp16") == pytest.approx(2.5)


def test_tflite_fallback_ranks_layers_by_rmse_over_scale():
    from nnfc.targets.tflite_int8_convert import noisiest_layers

    class Debugger:  # what QuantizationDebugger.layer_statistics_dump writes
        ran = False

        def run(self):
            self.ran = True

        def layer_statistics_dump(self, buf):
            buf.write("op_name,tensor_idx,mean_squared_error,scale,zero_point,tensor_name\n"
                      "CONV_2D,1,0.04,0.1,0,a\nCONV_2D,2,0.01,0.01,0,b\n"
                      "ADD,3,nan,0.1,0,c\nCONV_2D,4,0.0,0.5,0,d\n")
    d = Debugger()
    assert noisiest_layers(d, 2) == ["b", "a"]  # rmse/scale 10 and 2
    assert d.ran and noisiest_layers(Debugger(), 0) == []


def test_tflite_convolutions_with_a_near_zero_channel_stay_float():
    from nnfc.targets.tflite_int8_convert import near_zero_channel_convs
    weights = {1: np.ones((2, 3, 3, 4), np.float32),                      # fine
               2: np.stack([np.ones((3, 3, 4)), np.full((3, 3, 4), 1e-9)]).astype(np.float32)}

    class Interp:
        def get_tensor(self, i):
            if i not in weights:
                raise ValueError("not a constant")
            return weights[i]
    ops = [{"op_name": "CONV_2D", "inputs": [0, 1], "outputs": [10]},
           {"op_name": "CONV_2D", "inputs": [10, 2], "outputs": [11]},
           {"op_name": "ADD", "inputs": [11, 11], "outputs": [12]},
           {"op_name": "CONV_2D", "inputs": [12, 99], "outputs": [13]}]
    assert near_zero_channel_convs(Interp(), ops, {10: "a", 11: "b", 12: "c", 13: "d"}) == ["b"]


def _profile_and_compile_int8(prof, out, capsys, *profile_args: str) -> tuple[int, str, dict]:
    """Profile the default factory on desktop into ``prof`` (``profile_args``: e.g. a
    precision), compile red,car in int8 with it into ``out``: exit code, stdout, report."""
    code, _, err = run_cli(["profile", "--target", "desktop", *profile_args, "--subnets", "10",
                            "--runs", "3", "--rounds", "2", "-o", str(prof)], capsys)
    assert code == 0, err
    code, stdout, err = run_cli(["compile", "--task", "red,car", "--lat", "1s", "--profile",
                                 str(prof), "--precision", "int8", "--runs", "3", "--rounds",
                                 "1", "-o", str(out)], capsys)
    assert code in (0, 3), err
    return code, stdout, json.loads((out / "report.json").read_text())
