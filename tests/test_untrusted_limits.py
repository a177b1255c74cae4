"""Size checks before allocation and errors that name the cause (issue #21): each hostile input
has one outcome, found without reading or allocating what the file only claims."""

from __future__ import annotations

import errno
import gzip
import json
import os
import struct

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnfc.errors import NnfcError


def test_a_1_gib_baseline_is_refused_before_reading(tmp_path):
    from nnfc.benchmarking.record import load_run
    path = tmp_path / "base.json"
    with open(path, "wb") as fh:
        fh.truncate(1 << 30)
    with pytest.raises(NnfcError, match="1,073,741,824 bytes, more than"):
        load_run(path)


def _idx(dims, payload: bytes) -> bytes:
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


@pytest.mark.parametrize("data, needle", [
    (_idx([1 << 16, 1 << 16], b"\0" * 10), "at most"),            # declares 4 GiB
    (_idx([2, 2], b"\0" * 4 + b"\0" * 10_000), "more than values"),  # holds more than declared
    (_idx([2, 2], b"\0" * 3), "holds 3 values"),
    (b"PK\3\4 not idx", "not an unsigned-byte IDX file"),
])
def test_mnist_idx_reads_stop_at_the_declared_size(tmp_path, data, needle):
    from nnfc.families.numvqa import _read_idx
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(data))
    with pytest.raises(NnfcError, match=needle):
        _read_idx(path)


def test_mnist_idx_within_bounds_loads(tmp_path):
    from nnfc.families.numvqa import _read_idx
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(_idx([2, 3], bytes(range(6)))))
    assert _read_idx(path).tolist() == [[0, 1, 2], [3, 4, 5]]


def _expand_model(elements: int) -> onnx.ModelProto:
    shape = numpy_helper.from_array(np.array([elements], np.int64), "shape")
    one = numpy_helper.from_array(np.array([1.0], np.float32), "one")
    nodes = [helper.make_node("Expand", ["one", "shape"], ["big"]),
             helper.make_node("ReduceSum", ["big"], ["y"], keepdims=0)]
    graph = helper.make_graph(nodes, "bomb", [], [helper.make_tensor_value_info(
        "y", TensorProto.FLOAT, [])], [one, shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_constant_folding_does_not_materialise_a_bomb():
    import onnx_ir as ir
    from nnfc.passes.fold_constants import FoldGateConstantsPass
    model = ir.serde.deserialize_model(_expand_model(1 << 29))  # 2 GiB of float32
    FoldGateConstantsPass()(model)
    assert "Expand" in [n.op_type for n in model.graph]  # left to the runtime
    small = ir.serde.deserialize_model(_expand_model(8))
    FoldGateConstantsPass()(small)
    assert "Expand" not in [n.op_type for n in small.graph]


def test_prune_of_a_model_declaring_more_than_it_holds(tmp_path, capsys):
    from cli_runner import run_cli
    w = numpy_helper.from_array(np.zeros(288, np.float32), "w")
    del w.dims[:]
    w.dims.extend([1 << 25, 1 << 25])
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    path = tmp_path / "m.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    (tmp_path / "g.json").write_text("{}")
    code, _, err = run_cli(["prune", str(path), "--gates", str(tmp_path / "g.json"), "-o",
                            str(tmp_path / "o.onnx")], capsys)
    assert code == 2 and "declares 1,125,899,906,842,624 elements" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o.onnx").exists()


def test_recorded_gates_metadata_is_checked_before_the_cast():
    import onnx_ir as ir
    from nnfc.passes.errors import PruneError
    from nnfc.passes.gate_tags import GATES_KEY, recorded_gates
    model = ir.serde.deserialize_model(_expand_model(8))
    model.metadata_props[GATES_KEY] = json.dumps({"gate.a": [1e-46, 1]})
    with pytest.raises(PruneError, match="only 0 and 1"):
        recorded_gates(model)
    model.metadata_props[GATES_KEY] = '{"gate.a": [1], "gate.a": [0]}'
    with pytest.raises(PruneError, match="appears twice"):
        recorded_gates(model)


def test_full_disk_during_ort_lowering_is_named(tmp_path, monkeypatch):
    import nnfc.targets.onnxruntime as ortt
    from nnfc.atomic import write_failure_cause

    class Full:
        f_bavail, f_frsize = 0, 4096
    monkeypatch.setattr(ortt.ort, "InferenceSession", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("Protobuf serialization failed")))
    monkeypatch.setattr(os, "statvfs", lambda _p: Full())
    assert write_failure_cause(tmp_path) == os.strerror(errno.ENOSPC)
    with pytest.raises(NnfcError, match="model.ort.onnx: No space left on device"):
        ortt.OnnxRuntimeTarget().lower(_expand_model(8).SerializeToString(), tmp_path)
    assert os.listdir(tmp_path) == []


def test_predictor_and_plot_are_replaced_together(tmp_path, monkeypatch):
    from compile_fixtures import profiled_bundle
    from nnfc.bundle import read_bundle
    from nnfc.compiler import fitting
    from nnfc.compiler.predictor import Predictor
    bundle = read_bundle(profiled_bundle())
    data = json.loads((bundle.root / "profiles" / "desktop.measurements.json").read_text())
    data["_path"] = str(bundle.root / "profiles" / "desktop.measurements.json")
    pred, png = tmp_path / "p.json", tmp_path / "p.png"
    pred.write_text('{"format": "nnfc-predictor", "old": 1}')
    png.write_bytes(b"old plot")

    def full(self, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    monkeypatch.setattr(Predictor, "save", full)
    with pytest.raises(OSError):
        fitting.fit_and_save(bundle, "desktop", data, pred, png)
    assert png.read_bytes() == b"old plot" and "old" in pred.read_text()
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temp file left


def test_tampered_android_template_is_not_used(tmp_path):
    from nnfc.targets.tflite_templates import HASHES, TemplateStore, topology_key
    model = _expand_model(8)
    store = TemplateStore(tmp_path / "desktop.templates")
    onnx_path, tflite_path, info_path = store._paths("float32", model)
    onnx_path.parent.mkdir()
    onnx.save_model(model, str(onnx_path))
    tflite_path.write_bytes(b"TFL3 hostile flatbuffer")
    info_path.write_text(json.dumps({HASHES: {"onnx": "0" * 64, "tflite": "0" * 64}}))
    store._load(("float32", topology_key(model)), onnx_path, tflite_path, info_path)
    assert store.templates == {}


@pytest.mark.parametrize("loader", ["pipeline", "config"])
@pytest.mark.parametrize("content, needle", [
    ("a = " + "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("FIFO", "not a regular file"),
    ("BIG", "more than the"),
])
def test_toml_files_are_read_like_json_files(tmp_path, loader, content, needle):
    from nnfc.pipeline_file import load_pipeline
    from nnfc.training.config import load_config
    path = tmp_path / "f.toml"
    if content == "FIFO":
        os.mkfifo(path)
    elif content == "BIG":
        with open(path, "wb") as fh:
            fh.truncate(1 << 30)
    else:
        path.write_text(content)
    with pytest.raises(NnfcError, match=needle):
        (load_pipeline if loader == "pipeline" else load_config)(path)


@pytest.mark.parametrize("line, needle", [
    ("runs = -3", "runs: must be >= 1"),
    ("rounds = 'many'", "rounds: must be an integer"),
    ("margin = nan", "margin: must be finite"),
    ("step = 0", "step: must be > 0"),
])
def test_pipeline_scenario_numbers_are_validated(tmp_path, line, needle):
    from nnfc.pipeline_file import load_pipeline
    path = tmp_path / "p.toml"
    path.write_text(f'[[scenario]]\ntask = "odd"\nlatency = "5ms"\n{line}\n')
    with pytest.raises(NnfcError, match=needle):
        load_pipeline(path)


def test_pipeline_bench_numbers_are_validated(tmp_path):
    from nnfc.pipeline_file import load_pipeline
    path = tmp_path / "p.toml"
    path.write_text('[[scenario]]\ntask = "odd"\nlatency = "5ms"\n[bench]\nconfidence = 2.0\n')
    with pytest.raises(NnfcError, match=r"\[bench\]: confidence: must be <= 0.9999"):
        load_pipeline(path)


@pytest.mark.parametrize("location, needle", [
    ("../../../etc/passwd", "points outside the directory"),
    ("/etc/passwd", "absolute path"),
    ("missing.bin", "not regular file"),
    ("link.bin", "symbolic link"),
])
def test_prune_of_hostile_external_data_is_one_line(tmp_path, capsys, location, needle):
    """ONNX's own external-data guard holds; its ValidationError is one line, not a traceback."""
    from cli_runner import run_cli
    os.symlink("/etc/passwd", tmp_path / "link.bin")
    w = numpy_helper.from_array(np.zeros(300, np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value=location)
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    (tmp_path / "m.onnx").write_bytes(helper.make_model(graph).SerializeToString())
    (tmp_path / "g.json").write_text("{}")
    code, _, err = run_cli(["prune", str(tmp_path / "m.onnx"), "--gates",
                            str(tmp_path / "g.json"), "-o", str(tmp_path / "o.onnx")], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_device_log_from_a_special_file_is_refused(tmp_path, special):
    from nnfc.targets.tensorrt.device_profiling import parse_device_measurements
    path = special
    if special == "fifo":
        path = tmp_path / "trt_measurements.log"
        os.mkfifo(path)
    with pytest.raises(NnfcError, match="not a regular file"):
        parse_device_measurements(path)
