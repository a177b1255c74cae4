"""The desktop (ONNX Runtime) target: lower, run, benchmark."""

import numpy as np
import pytest

from nnfc.errors import NnfcError
from nnfc.onnx_io import save_onnx
from nnfc.passes import apply_gates
from nnfc.targets import get_target
from supernets import IMAGE, run, supernet


@pytest.fixture(scope="module")
def pruned_path(tmp_path_factory):
    _, model = supernet("resnet-tiny")
    gates = {i.name: (np.arange(i.type.tensor_type.shape.dim[0].dim_value) % 3 == 0
                      ).astype(np.float32) for i in model.graph.input[1:]}
    pruned = apply_gates(model, gates)
    return save_onnx(pruned, tmp_path_factory.mktemp("desktop") / "model.onnx"), pruned


def test_lower_run_matches_the_pruned_model(pruned_path, tmp_path):
    path, pruned = pruned_path
    target = get_target("desktop")
    artifact = target.lower(path, tmp_path)
    assert artifact.is_file() and artifact.suffix == ".onnx"
    assert not list(tmp_path.glob(".*.tmp"))
    x = np.random.default_rng(0).standard_normal((1, 3, IMAGE, IMAGE)).astype(np.float32)
    (out,) = target.run(artifact, {"input": x})
    np.testing.assert_allclose(out, run(pruned, {"input": x}), atol=1e-5)


def test_lowers_a_serialized_model_as_it_lowers_the_file(pruned_path, tmp_path):
    path, pruned = pruned_path
    target = get_target("desktop")
    from_file = target.lower(path, tmp_path / "file")
    from_bytes = target.lower(pruned.SerializeToString(), tmp_path / "bytes")
    assert from_bytes.read_bytes() == from_file.read_bytes()


def test_benchmark_reports_latency_and_memory(pruned_path):
    result = get_target("desktop", threads=1).benchmark(pruned_path[0], runs=5, warmup=1)
    assert result.runs == 5
    assert 0 < result.median_ms <= result.p90_ms
    assert result.peak_memory_mb >= 0
    assert set(result.to_json()) >= {"latency_ms", "peak_memory_mb"}


def test_unknown_target_and_broken_model_are_clear_errors(tmp_path):
    with pytest.raises(NnfcError, match="unknown target 'phone'"):
        get_target("phone")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(NnfcError, match="onnxruntime cannot load"):
        get_target("desktop").lower(bad, tmp_path / "out")
    assert not (tmp_path / "out" / "model.ort.onnx").exists()


def test_load_onnx_reads_bytes_with_the_same_checks(pruned_path):
    from nnfc.onnx_io import load_onnx
    path, pruned = pruned_path
    assert load_onnx(pruned.SerializeToString()) == load_onnx(path)
    with pytest.raises(NnfcError, match="<model bytes> is not a valid ONNX model"):
        load_onnx(b"not a model")
