"""``nnfc prune`` end to end through the console entry point."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from nnfc.onnx_io import save_onnx
from supernets import IMAGE, run, supernet


def nnfc(*args):
    return subprocess.run([sys.executable, "-m", "nnfc.cli", *args], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    _, model = supernet("resnet-tiny")
    return save_onnx(model, tmp_path_factory.mktemp("cli") / "supernet.onnx")


def test_prune_writes_an_equivalent_static_model(model_path, tmp_path):
    gates = {"gate.layer1.0.conv1": [1, 0, 0, 1, 0, 0, 0, 1], "gate.layer2.0.conv1": [1] * 16}
    gates_file = tmp_path / "gates.json"
    gates_file.write_text(json.dumps(gates))
    out = tmp_path / "pruned.onnx"
    proc = nnfc("prune", str(model_path), "--gates", str(gates_file), "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["params"]["after"] < summary["params"]["before"]
    pruned = onnx.load(str(out))
    assert [i.name for i in pruned.graph.input] == ["input"]
    x = np.random.default_rng(0).standard_normal((1, 3, IMAGE, IMAGE)).astype(np.float32)
    feeds = {k: np.asarray(v, np.float32) for k, v in gates.items()}
    np.testing.assert_allclose(run(pruned, {"input": x}),
                               run(onnx.load(str(model_path)), {"input": x, **feeds}), atol=1e-5)


@pytest.mark.parametrize("content, message", [
    ('{"gate.layer1.0.conv1": [1, 0]}', "has 2 values; the model expects 8"),
    ('{"gate.bogus": [1]}', "unknown gate 'gate.bogus'"),
    ('{"gate.layer1.0.conv1": [1,1,1,1,1,1,1,3], "gate.layer2.0.conv1": []}', "only 0 and 1"),
    ("[1, 2]", "must be an object"),
    ("{not json", "not valid JSON"),
])
def test_bad_gates_exit_nonzero_with_one_line(model_path, tmp_path, content, message):
    gates_file = tmp_path / "gates.json"
    gates_file.write_text(content)
    out = tmp_path / "pruned.onnx"
    proc = nnfc("prune", str(model_path), "--gates", str(gates_file), "-o", str(out))
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_malformed_onnx_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    gates_file = tmp_path / "gates.json"
    gates_file.write_text("{}")
    proc = nnfc("prune", str(bad), "--gates", str(gates_file), "-o", str(tmp_path / "o.onnx"))
    assert proc.returncode == 2 and "is not a valid ONNX model" in proc.stderr


def test_output_in_a_missing_directory_is_refused(model_path, tmp_path):
    """A typo in -o makes no directories: one error line, nothing created."""
    gates_file = tmp_path / "gates.json"
    gates_file.write_text(json.dumps({"gate.layer1.0.conv1": [1] * 8}))
    out = tmp_path / "no" / "such" / "x.onnx"
    proc = subprocess.run([sys.executable, "-m", "nnfc", "prune", str(model_path), "--gates",
                           str(gates_file), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert proc.stderr.startswith("nnfc: error:") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "no").exists()
