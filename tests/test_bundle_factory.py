"""Factory bundle export: the manifest's documented keys, ONNX graphs' interfaces, clear errors on a
broken bundle."""

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from factory_fixtures import train_tiny
from nnfc.bundle import read_bundle
from nnfc.errors import NnfcError


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("factory") / "tiny")


def test_manifest_follows_design(bundle_dir):
    b = read_bundle(bundle_dir)
    m = b.manifest
    assert m["format_version"] == 1
    assert m["backbone"]["family"] == "resnet" and m["backbone"]["config"]["widths"] == [8, 16]
    assert m["input"] == {"name": "input", "shape": [1, 1, 16, 16], "dtype": "float32",
                          "preprocessing": m["input"]["preprocessing"]}
    assert m["output"] == [{"name": "logits", "shape": [1, 2], "classes": ["no", "yes"]}]
    assert m["task_family"]["family"] == "numvqa"
    assert m["task_family"]["config"]["seen"] == [["has", "0"], ["only-four", "odd"]]
    assert m["attributes"][:2] == ["has", "only-one"] and len(m["attributes"]) == 17
    assert m["tasks"] == {"seen": [["has", "0"], ["only-four", "odd"]], "unseen": [["has", "1"]]}
    assert m["limit_encoding"]["in_graph"] is True
    assert m["training"]["seed"] == 0 and "metrics" in m["training"]
    assert m["training"]["config"]["backbone"]["family"] == "resnet"
    assert set(m["files"]) == {"supernet.onnx", "assembler.onnx", "supernet.safetensors",
                               "assembler.safetensors"}
    for layer in m["gate_layers"]:
        assert set(layer) == {"name", "size", "kind"} and layer["kind"] == "conv"


def test_graph_interfaces_match_manifest(bundle_dir):
    b = read_bundle(bundle_dir)
    layers = b.gate_layers
    sup = onnx.load(b.supernet_path)
    assert [i.name for i in sup.graph.input] == ["input"] + [f"gate.{g['name']}" for g in layers]
    asm = onnx.load(b.assembler_path)
    assert [i.name for i in asm.graph.input] == ["task", "limit"]
    assert [o.name for o in asm.graph.output] == [f"gate.{g['name']}" for g in layers]
    sess = ort.InferenceSession(str(b.assembler_path), providers=["CPUExecutionProvider"])
    task = np.asarray([b.encode_task(["has", "0"])] * 3, np.float32)
    outs = sess.run(None, {"task": task, "limit": np.asarray([0.05, 0.5, 1.0], np.float32)})
    for o, g in zip(outs, layers):
        assert o.shape == (3, g["size"]) and set(np.unique(o)) <= {0.0, 1.0}


def _copy(bundle_dir, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(bundle_dir, dst)
    return dst


def test_broken_bundles_say_what_is_wrong(bundle_dir, tmp_path):
    d = _copy(bundle_dir, tmp_path)
    with open(d / "assembler.onnx", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(NnfcError, match="assembler.onnx does not match its sha256"):
        read_bundle(d)
    shutil.rmtree(d)
    d = _copy(bundle_dir, tmp_path)
    (d / "supernet.onnx").unlink()
    with pytest.raises(NnfcError, match="supernet.onnx is listed in the manifest but missing"):
        read_bundle(d)
    shutil.rmtree(d)
    d = _copy(bundle_dir, tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    m["format_version"] = 99
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(NnfcError, match="format version 99 is not supported"):
        read_bundle(d)


def test_export_checkpoint_rewrites_same_bundle(bundle_dir, tmp_path):
    from nnfc.cli import main

    main(["export", "--checkpoint", str(bundle_dir) + ".ckpt", "--out", str(tmp_path / "re")])
    a, b = read_bundle(bundle_dir), read_bundle(tmp_path / "re")
    for name in ("supernet.safetensors", "assembler.safetensors"):
        assert a.manifest["files"][name] == b.manifest["files"][name]
    assert a.manifest["training"]["metrics"]["seen"] == b.manifest["training"]["metrics"]["seen"]


def test_export_errors(tmp_path, capsys):
    from nnfc.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "neither a training checkpoint" in capsys.readouterr().err


def test_reexport_from_bundle(bundle_dir, tmp_path):
    from nnfc.training.trainer import export_checkpoint

    b = read_bundle(export_checkpoint(bundle_dir, tmp_path / "re"))
    a = read_bundle(bundle_dir)
    assert b.manifest["files"]["supernet.safetensors"] == a.manifest["files"]["supernet.safetensors"]
    assert b.manifest["training"]["metrics"] == a.manifest["training"]["metrics"]
