"""The public Python API: nnfc.compile / nnfc.prune / nnfc.load_factory, NnfcError raised (never
an exit), budgets as the CLI's unit strings, the same task phrases as the CLI, a cheap import."""

import json
import subprocess
import sys

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest

import nnfc
from compile_fixtures import check_artifacts, profiled_bundle


def test_import_is_cheap_and_versioned():
    code = ("import sys, nnfc\nassert nnfc.__version__\n"
            "print(sorted(m for m in ('numpy', 'onnx', 'onnxruntime', 'click') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_compile_a_phrase_on_the_default_factory(tmp_path, monkeypatch, caplog):
    """The README's example with a phrase: a first compile profiles this machine, the report
    keeps the resolved task and the phrase, the result points at the artifact."""
    from nnfc.compiler import auto_profile
    monkeypatch.setattr(auto_profile, "affordable_subnets", lambda *a, **k: (12, 0.5))
    caplog.set_level("INFO", logger="nnfc")
    r = nnfc.compile("crimson cars", target="desktop", latency="20ms", output=tmp_path / "x")
    assert r.report["request"]["task"] == ["red", "car"]
    assert r.report["request"]["task_text"] == "crimson cars"
    assert r.artifact.is_file() and r.artifact.parent == tmp_path / "x"
    assert r.within_budget is True and r.report["within_budget"] is True
    assert json.loads((tmp_path / "x" / "report.json").read_text()) == r.report
    assert "crimson ≈ red" in caplog.text and "profiling 12 subnets" in caplog.text
    check_artifacts(r.output)
    # the detection model decodes any batch: batch 2 gives each image's detections as alone
    sess = ort.InferenceSession(str(r.artifact), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((2, 3, 160, 160)).astype(np.float32)
    both = sess.run(None, {"input": x})
    alone = sess.run(None, {"input": x[1:]})
    assert [o.shape[0] for o in both] == [2, 2]
    for a, b in zip(both, alone):
        np.testing.assert_allclose(a[1], b[0], rtol=1e-5, atol=1e-5)


def test_api_errors_raise_and_never_exit(tmp_path):
    bundle = profiled_bundle()
    with pytest.raises(nnfc.NnfcError, match="unit"):
        nnfc.compile("odd", latency=5, output=tmp_path / "a", bundle=bundle)
    with pytest.raises(nnfc.NnfcError, match="latency"):
        nnfc.compile("odd", latency="5 parsecs", output=tmp_path / "a", bundle=bundle)
    with pytest.raises(nnfc.NnfcError, match="'trucks'"):
        nnfc.compile("trucks", latency="5ms", output=tmp_path / "a", bundle=bundle)
    with pytest.raises(nnfc.NnfcError, match="nnfc.compile"):
        nnfc.compile("odd", latency="5ms", output=tmp_path / "a", bundle=bundle, colour="red")
    assert not (tmp_path / "a").exists()


def test_compile_result_on_a_fixture_factory(tmp_path):
    r = nnfc.compile(["odd"], latency="50ms", output=tmp_path / "o", bundle=profiled_bundle())
    assert r.report["request"]["task"] == ["odd"] and r.report["request"]["task_text"] == "odd"
    assert "startup" not in r.report["timings_s"]  # the caller's process age is not nnfc's


def test_prune_takes_and_returns_either_model_kind(tmp_path):
    bundle = nnfc.load_factory(profiled_bundle())
    assert "odd" in bundle.attributes and bundle.gate_layers and bundle.seen_tasks
    assert bundle.profiles()[0]["target"] == "desktop"
    supernet = onnx.load(str(bundle.bundle.supernet_path))
    rng = np.random.default_rng(0)
    gates = {f"gate.{g['name']}": (rng.random(g["size"]) > 0.5).astype(np.float32)
             for g in bundle.gate_layers}
    small = nnfc.prune(supernet, gates)
    assert isinstance(small, onnx.ModelProto)
    small_ir = nnfc.prune(ir.serde.deserialize_model(supernet), gates)
    assert isinstance(small_ir, ir.Model)
    x = rng.random(bundle.bundle.input_spec["shape"]).astype(np.float32)
    name = bundle.bundle.input_spec["name"]
    ref = ort.InferenceSession(supernet.SerializeToString()).run(None, {name: x, **gates})
    for model in (small, ir.serde.serialize_model(small_ir)):
        got = ort.InferenceSession(model.SerializeToString()).run(None, {name: x})
        for a, b in zip(ref, got):
            assert np.isfinite(b).all() and np.abs(a - b).max() < 1e-4
    (tmp_path / "g.json").write_text(json.dumps({k: v.tolist() for k, v in gates.items()}))
    assert isinstance(nnfc.prune(supernet, tmp_path / "g.json"), onnx.ModelProto)
    with pytest.raises(nnfc.NnfcError, match="gate"):
        nnfc.prune(supernet, {"gate.nope": np.ones(3, np.float32)})
    with pytest.raises(nnfc.NnfcError, match="ModelProto"):
        nnfc.prune(42, gates)


def test_readme_example_runs_as_written(tmp_path, monkeypatch):
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    code = re.search(r"### Python API\n```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["r"].within_budget is True and scope["r"].artifact.is_file()
    assert isinstance(scope["small"], onnx.ModelProto)


def test_a_missing_extra_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    """train without torch (a compiler-only install): one line saying which extra installs it."""
    from cli_runner import run_cli
    for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.")
                 or m.startswith("nnfc.training")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails as if not installed
    code, out, err = run_cli(["export", "--preset", "resnet18", "--out",
                              str(tmp_path / "r.onnx")], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "nnfc export needs torch, from the 'train' extra: pip install torch==2.13.0" in err
