"""Issue #9's reproductions, one test each, through the ``nnfc`` command line: outputs never destroy
a user's files, every bad input is one ``nnfc: error:`` line, CI semantics. Each test asserts
the file system afterwards."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cli_runner import run_cli
from compile_fixtures import profiled_bundle
from factory_fixtures import tiny_config, toml_text
from nnfc.outputs import MARKER

FAST = ["--runs", "1", "--rounds", "1", "--warmup", "0", "--no-verify"]


@pytest.fixture(scope="module")
def bundle():
    return profiled_bundle()


def compile_args(bundle, out, task="odd", *extra):
    return ["compile", "--bundle", str(bundle), "--task", task, "--lat", "50ms", "-o",
            str(out), *FAST, *extra]


def one_error(err, needle):
    """stderr is exactly one ``nnfc: error:`` line containing ``needle`` (no traceback)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nnfc: error: "), err
    assert needle in lines[0], err
    assert "Traceback" not in err


def snapshot(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


# ---- 1. data loss --------------------------------------------------------------------------
def test_compile_refuses_a_foreign_directory_and_keeps_its_files(bundle, tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "keep").write_text("mine")
    code, _, err = run_cli(compile_args(bundle, d), capsys)
    assert code == 2
    one_error(err, "--force")
    assert snapshot(d) == {"keep": b"mine"} and sorted(os.listdir(tmp_path)) == ["d"]
    # --force adds nnfc's files beside the user's
    code, _, err = run_cli(compile_args(bundle, d, "odd", "--force"), capsys)
    assert code == 0, err
    assert (d / "keep").read_text() == "mine" and (d / "model.onnx").is_file()
    assert json.loads((d / MARKER).read_text())["kind"] == "compile"


def test_compile_refuses_the_working_directory(bundle, tmp_path, capsys, monkeypatch):
    (tmp_path / "project.txt").write_text("work")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(compile_args(bundle, str(tmp_path)), capsys)
    assert code == 2
    one_error(err, "not an nnfc output")
    assert snapshot(tmp_path) == {"project.txt": b"work"}


def test_compile_never_writes_into_or_over_its_bundle(bundle, tmp_path, capsys):
    copy = tmp_path / "x" / "fac"
    shutil.copytree(bundle, copy)
    before = snapshot(tmp_path / "x")
    for out in (tmp_path / "x", copy, copy / "out"):
        code, _, err = run_cli(compile_args(copy, out, "odd", "--force"), capsys)
        assert code == 2
        one_error(err, "the input")
    assert snapshot(tmp_path / "x") == before


def test_compile_replaces_its_own_output(bundle, tmp_path, capsys):
    out = tmp_path / "out"
    for task in ("odd", "only-two,even"):
        code, _, err = run_cli(compile_args(bundle, out, task), capsys)
        assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["request"]["task"] == ["only-two", "even"]
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temp dirs, old outputs or locks


def test_train_and_export_refuse_foreign_directories_before_any_work(bundle, tmp_path,
                                                                      capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(toml_text(tiny_config()))
    d = tmp_path / "d"
    d.mkdir()
    (d / "keep").write_text("mine")
    code, _, err = run_cli(["train", "--config", str(cfg), "--out", str(d)], capsys)
    assert code == 2
    one_error(err, "--force")
    code, _, err = run_cli(["export", "--checkpoint", str(bundle), "--out", str(d)], capsys)
    assert code == 2
    one_error(err, "--force")
    assert snapshot(d) == {"keep": b"mine"}
    assert sorted(os.listdir(tmp_path)) == ["d", "tiny.toml"]  # no checkpoint started


def test_export_never_writes_over_its_source(bundle, tmp_path, capsys):
    src = tmp_path / "fac"
    shutil.copytree(bundle, src)
    before = snapshot(src)
    for out in (src, src / "sub", tmp_path):
        code, _, err = run_cli(["export", "--checkpoint", str(src), "--out", str(out)],
                               capsys)
        assert code == 2
        one_error(err, "the input")
    assert snapshot(src) == before


# ---- 4. config validation after overrides -------------------------------------------------
@pytest.mark.parametrize("train,cli,needles", [
    ({}, ["--epochs", "-1"], ["train.epochs must be >= 1"]),
    ({}, ["--epochs", "0"], ["train.epochs must be >= 1"]),
    ({"epochs": 1.5}, [], ["train.epochs must be an integer (got 1.5)"]),
    ({"threads": -2}, [], ["train.threads must be >= 0"]),
    ({"eval_per_task": 0}, [], ["train.eval_per_task must be >= 1"]),
    ({"eval_per_task": 0, "threads": -2, "batch_size": 1}, [],
     ["train.eval_per_task must be >= 1", "train.threads must be >= 0",
      "train.batch_size must be >= 2"]),
])
def test_train_validates_the_final_config_once(tmp_path, capsys, train, cli, needles):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(toml_text(tiny_config(**train)))
    code, _, err = run_cli(["train", "--config", str(cfg), "--out", str(tmp_path / "f"),
                            *cli], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == len(needles) and "Traceback" not in err, err
    assert all(line.startswith("nnfc: error: ") for line in lines)
    for needle in needles:
        assert sum(needle in line for line in lines) == 1, err
    assert sorted(os.listdir(tmp_path)) == ["tiny.toml"]


def test_train_rejects_zero_widths(tmp_path, capsys):
    raw = tiny_config()
    raw["backbone"]["widths"] = [0, 16]
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(toml_text(raw))
    code, _, err = run_cli(["train", "--config", str(cfg), "--out", str(tmp_path / "f")],
                           capsys)
    assert code == 2
    one_error(err, "backbone.widths must hold positive integers")
    assert sorted(os.listdir(tmp_path)) == ["tiny.toml"]


# ---- 5. one line instead of a traceback ---------------------------------------------------
def test_bad_output_paths(bundle, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out, needle in ((tmp_path / "file" / "sub", "is not a directory"),
                        ("", "empty string"), (tmp_path / "file", "not a directory")):
        code, _, err = run_cli(compile_args(bundle, out), capsys)
        assert code == 2
        one_error(err, needle)
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_full_disk_keeps_the_previous_output(bundle, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert run_cli(compile_args(bundle, out), capsys)[0] == 0
    before = snapshot(out)
    from pathlib import Path

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(Path, "write_bytes", full)  # compile writes model.onnx with it
    code, _, err = run_cli(compile_args(bundle, out, "only-two,even"), capsys)
    assert code == 2
    one_error(err, "No space left on device")
    assert snapshot(out) == before and sorted(os.listdir(tmp_path)) == ["out"]


def test_read_only_output_parent(bundle, tmp_path, capsys, monkeypatch):
    import nnfc.outputs as outputs

    def denied(*a, **k):
        raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path))
    monkeypatch.setattr(outputs.tempfile, "mkdtemp", denied)
    code, _, err = run_cli(compile_args(bundle, tmp_path / "out"), capsys)
    assert code == 2
    one_error(err, "Read-only file system")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("key,value,needle", [
    ("files", ["supernet.onnx"], "'files' must map file names"),
    ("gate_layers", None, "'gate_layers' must be a list"),
    ("attributes", "odd", "'attributes' must be a non-empty list of strings"),
    ("attributes", ["odd", "odd"], "lists an attribute twice"),
])
def test_malformed_manifest(bundle, tmp_path, capsys, key, value, needle):
    copy = tmp_path / "fac"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest[key] = value
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(compile_args(copy, tmp_path / "out"), capsys)
    assert code == 2
    one_error(err, needle)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 1-epoch checkpoint of the tiny factory (training stopped before the bundle)."""
    from factory_fixtures import tiny_config
    from nnfc.training.config import config_from_dict
    from nnfc.training.trainer import train_factory
    root = tmp_path_factory.mktemp("ckpt")
    raw = tiny_config(epochs=2, samples_per_epoch=256)
    (root / "tiny.toml").write_text(toml_text(raw))
    train_factory(config_from_dict(raw), root / "f", progress=False, log=lambda m: None,
                  stop_after=1)
    return root


@pytest.mark.parametrize("damage,needle", [
    (lambda c: (c / "optimizer.safetensors").write_bytes(
        (c / "optimizer.safetensors").read_bytes()[:100]), "optimizer.safetensors is unreadable"),
    (lambda c: (c / "optimizer.safetensors").unlink(), "optimizer.safetensors is missing"),
    (lambda c: (c / "state.json").write_text("[1, 2]"), "state.json must hold an object"),
    (lambda c: (c / "state.json").write_text("{"), "state.json is unreadable"),
    (lambda c: (c / "model.safetensors").write_bytes(b"\0" * 10), "model.safetensors is "
                                                                   "unreadable"),
])
def test_resume_from_a_damaged_checkpoint(checkpoint, tmp_path, capsys, damage, needle):
    work = tmp_path / "w"
    shutil.copytree(checkpoint, work)
    damage(work / "f.ckpt")
    before = snapshot(work)
    code, _, err = run_cli(["train", "--config", str(work / "tiny.toml"), "--out",
                            str(work / "f"), "--resume", "--no-progress"], capsys)
    assert code == 2
    one_error(err, needle)
    assert snapshot(work) == before


@pytest.mark.parametrize("content,needle", [
    ([], "has no measurement rows"),
    ({"rows": [{"latency_ms": 1.0}]}, "rows[0].gates: is missing"),
    ({"rows": []}, "has no measurement rows"),
])
def test_profile_fit_rejects_bad_measurements(bundle, tmp_path, capsys, content, needle):
    meas = tmp_path / "m.json"
    meas.write_text(json.dumps(content))
    code, _, err = run_cli(["profile", "--bundle", str(bundle), "-o", str(tmp_path / "p.json"),
                            "fit", "--measurements", str(meas)], capsys)
    assert code == 2
    one_error(err, needle)
    assert sorted(os.listdir(tmp_path)) == ["m.json"]


@pytest.mark.parametrize("content,needle", [
    ([], "has no measurement rows"),
    ({"format": "nnfc-profile-measurements", "rows": [{"index": 0, "latency_ms": 1.0}]},
     "rows[0].gates: is missing"),
    ("{", "not valid JSON"),
])
def test_profile_resume_rejects_bad_measurements(bundle, tmp_path, capsys, content, needle):
    pred = tmp_path / "p.json"
    meas = tmp_path / "p.measurements.json"
    meas.write_text(content if isinstance(content, str) else json.dumps(content))
    code, _, err = run_cli(["profile", "--bundle", str(bundle), "-o", str(pred),
                            "--subnets", "10", "--json"], capsys)
    assert code == 2
    one_error(err, needle)
    assert "--fresh" in err
    assert sorted(os.listdir(tmp_path)) == ["p.measurements.json"]


# ---- 6. gates that cannot be applied are reported -----------------------------------------
def _gate_into_add_model():
    """x [1,4,2,2] -> Conv -> (+ gate.a) -> Relu -> Conv; gate.b multiplies normally."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "w2")
    shape = numpy_helper.from_array(np.array([1, 4, 1, 1], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
        helper.make_node("Reshape", ["gate.a", "shape"], ["ga"], name="reshape_a"),
        helper.make_node("Add", ["c1", "ga"], ["added"], name="add_gate"),
        helper.make_node("Relu", ["added"], ["r"], name="relu"),
        helper.make_node("Reshape", ["gate.b", "shape"], ["gb"], name="reshape_b"),
        helper.make_node("Mul", ["r", "gb"], ["m"], name="mul_gate"),
        helper.make_node("Conv", ["m", "w2"], ["y"], name="conv2"),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2]),
         helper.make_tensor_value_info("gate.a", TensorProto.FLOAT, [4]),
         helper.make_tensor_value_info("gate.b", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 2, 2])],
        [w1, w2, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


def test_gate_not_feeding_a_mul_is_reported(tmp_path, capsys):
    """A gate with zeros that feeds an Add is never silently left unpruned: one error line
    names the gate and the op, and nothing is written."""
    model = tmp_path / "m.onnx"
    onnx.save(_gate_into_add_model(), str(model))
    gates = tmp_path / "g.json"
    gates.write_text(json.dumps({"gate.a": [1, 0, 1, 0], "gate.b": [1, 1, 0, 0]}))
    code, out, err = run_cli(["prune", str(model), "--gates", str(gates), "-o",
                              str(tmp_path / "s.onnx")], capsys)
    assert code == 2
    one_error(err, "gate gate.a cannot be applied: it feeds Add 'add_gate', not a Mul")
    assert sorted(os.listdir(tmp_path)) == ["g.json", "m.onnx"]
    # all-ones on that gate: nothing to remove there; the activation counts every gate
    gates.write_text(json.dumps({"gate.a": [1, 1, 1, 1], "gate.b": [1, 1, 0, 0]}))
    code, out, err = run_cli(["prune", str(model), "--gates", str(gates), "-o",
                              str(tmp_path / "s.onnx"), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["activation_ratio"] == pytest.approx(6 / 8)


# ---- 7. CI semantics: compile over budget exits 3 -----------------------------------------
def test_compile_over_budget_exits_3_and_still_writes(bundle, tmp_path, capsys, monkeypatch):
    import nnfc.compiler.measured_rounds as rounds
    from nnfc.errors import EXIT_OVER_BUDGET

    monkeypatch.setattr(rounds.Meter, "__call__", lambda self, artifact, decides=(): rounds.Measured(
        999.0, 999.0, 1.0, [999.0], 1, 0.0, {}, "test stand-in"))
    out = tmp_path / "out"
    code, stdout, err = run_cli(compile_args(bundle, out), capsys)
    assert code == EXIT_OVER_BUDGET == 3
    assert "OVER BUDGET" in stdout and "misses its budget" in err
    report = json.loads((out / "report.json").read_text())
    assert report["within_budget"] is False and (out / "model.ort.onnx").is_file()


# ---- 8. smaller ones ----------------------------------------------------------------------
def test_bench_keeps_the_report_artifact_inside_the_directory(bundle, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(compile_args(bundle, out), capsys)[0] == 0
    outside = tmp_path / "outside.onnx"
    shutil.copy(out / "model.onnx", outside)
    report = json.loads((out / "report.json").read_text())
    for artifact in ("../outside.onnx", str(outside)):
        report["artifact"] = artifact
        (out / "report.json").write_text(json.dumps(report))
        code, _, err = run_cli(["bench", str(out), "--runs", "1", "--warmup", "0"], capsys)
        assert code == 2
        one_error(err, "must be a file name inside")


def test_outputs_follow_the_umask_and_keep_the_mode_they_replace(bundle, tmp_path, capsys):
    from compile_fixtures import make_bundle
    old = os.umask(0o022)
    try:
        fac = make_bundle(tmp_path / "fac").root
        out = tmp_path / "out"
        assert run_cli(compile_args(bundle, out), capsys)[0] == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(fac.stat().st_mode) == 0o755  # bundles were 0700
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "report.json").stat().st_mode) == 0o644
    out.chmod(0o750)
    assert run_cli(compile_args(bundle, out, "only-two,even"), capsys)[0] == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o750


def test_duplicate_attributes_are_rejected(bundle, tmp_path, capsys):
    code, _, err = run_cli(compile_args(bundle, tmp_path / "out", "odd,odd"), capsys)
    assert code == 2
    one_error(err, "'odd' given more than once")
    assert os.listdir(tmp_path) == []


def test_budget_messages_print_sane_numbers(bundle, tmp_path, capsys):
    code, out, err = run_cli(["compile", "--bundle", str(bundle), "--task", "odd", "--lat",
                              "1e300s", "-o", str(tmp_path / "a"), *FAST], capsys)
    assert code == 0, err
    assert "latency ≤ 1e+300 s" in out and "0" * 20 not in out
    code, _, err = run_cli(["compile", "--bundle", str(bundle), "--task", "odd", "--lat",
                            "0.3us", "-o", str(tmp_path / "b"), *FAST], capsys)
    assert code == 2
    one_error(err, "latency 0.3 µs")
    assert not re.search(r"(?<![\d.])0 µs", err)  # the budget was printed as "0 µs"
