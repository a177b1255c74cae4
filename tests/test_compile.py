"""`nnfc compile` end to end on a fixture factory: outputs, report, clear errors, no torch."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper
import onnxruntime as ort
import pytest

from compile_fixtures import check_artifacts, profiled_bundle
from nnfc.passes import load_gates_json
from cli_runner import run_cli



@pytest.fixture(scope="module")
def bundle():
    return profiled_bundle()


def test_compile_writes_artifacts_and_report(bundle, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run_cli(["compile", "--bundle", str(bundle), "--task", "only-two,odd",
                                 "--lat", "50ms", "--mem", "50MB", "-o", str(out),
                                 "--runs", "3", "--rounds", "1"], capsys)
    assert code == 0, err
    assert {"model.onnx", "model.ort.onnx", "gates.json", "report.json"} <= \
        {p.name for p in out.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left
    check_artifacts(out)
    report = json.loads((out / "report.json").read_text())
    for key in ("request", "limit", "activation_ratio", "params", "flops", "predicted",
                "measured", "within_budget", "max_abs_diff_vs_supernet", "artifact",
                "timings_s"):
        assert key in report
    assert report["request"] == {"task": ["only-two", "odd"], "task_text": "only-two,odd",
                                 "target": "desktop", "lat_ms": 50.0, "mem_mb": 50.0}
    # a generous budget takes the whole grid: the last limit
    assert report["limit"] == 1.0 and report["activation_ratio"] == 1.0
    assert report["within_budget"] is True
    assert report["max_abs_diff_vs_supernet"] < 1e-4
    assert set(report["timings_s"]) >= {"load", "search", "prune", "lower", "measure"}
    assert report["measured"]["latency_ms"]["median"] > 0
    gates = load_gates_json(out / "gates.json")
    assert all(set(np.unique(v)) <= {0.0, 1.0} for v in gates.values())
    ort.InferenceSession(str(out / "model.onnx"))  # loads
    assert "within budget" in stdout and "limit" in stdout


def test_compile_tight_budget_prunes_and_json(bundle, tmp_path, capsys):
    pred = json.loads((bundle / "profiles" / "desktop.json").read_text())
    assert pred["target"] == "desktop"
    from compile_fixtures import ATTRIBUTES
    from nnfc.compiler.assembler_runtime import Assembler
    from nnfc.compiler.predictor import Predictor
    from nnfc.compiler.search import candidates
    predictor = Predictor.load(bundle / "profiles" / "desktop.json")
    asm = Assembler(bundle / "assembler.onnx", predictor.structure.gates)
    _, _, _, mem = candidates(asm, predictor, [float(a == "odd") for a in ATTRIBUTES])
    budget_kb = float(mem.min() + mem.max()) / 2 * 1000
    out = tmp_path / "o"
    code, stdout, err = run_cli(["compile", "--bundle", str(bundle), "--task", "odd",
                                 "--mem", f"{budget_kb:.3f}KB", "-o", str(out), "--json", "--runs", "2",
                                 "--rounds", "1", "--search", "algorithm1"], capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["limit"] < 1.0 and report["activation_ratio"] < 1.0
    assert report["predicted"]["memory_mb"] <= budget_kb / 1000
    assert report["measured"]["memory_mb"] == pytest.approx(report["predicted"]["memory_mb"],
                                                            rel=0.05)
    assert report["search"]["method"] == "algorithm1"


@pytest.mark.parametrize("args,needle", [
    (["--lat", "5"], "has no unit"),
    (["--lat", "5 parsecs"], "unknown latency unit"),
    (["--mem", "12 bananas"], "unknown memory unit"),
    (["--task", "only-two,purple", "--lat", "5ms"], "'purple' is no attribute"),
    ([], "give a budget"),
    (["--target", "mars", "--lat", "5ms"], "'mars' is not one of 'desktop', 'android', 'jetson'"),
])
def test_compile_bad_input_is_one_clear_error(bundle, tmp_path, capsys, args, needle):
    base = ["compile", "--bundle", str(bundle), "--task", "odd", "-o", str(tmp_path / "x")]
    if "--task" in args:
        base = base[:3] + base[5:]
    code, _, err = run_cli(base + args, capsys)
    assert code == 2
    assert needle in err and err.startswith("nnfc: error:") and err.count("\n") == 1
    if "purple" in needle:
        assert "only-one, only-two" in err  # lists the known attributes
    assert not (tmp_path / "x").exists()


def test_infeasible_budget(bundle, tmp_path, capsys):
    code, _, err = run_cli(["compile", "--bundle", str(bundle), "--task", "odd", "--lat", "1us",
                            "-o", str(tmp_path / "x")], capsys)
    assert code == 2 and "infeasible budget" in err and "smallest achievable" in err


def test_missing_profile_names_the_command(bundle, tmp_path, capsys):
    copy = tmp_path / "factory"
    shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns("profiles"))
    code, _, err = run_cli(["compile", "--bundle", str(copy), "--task", "odd", "--lat", "5ms",
                            "--no-profile", "-o", str(tmp_path / "x")], capsys)
    assert code == 2 and "--no-profile" in err
    assert f"make it with: nnfc profile --bundle {copy} --target desktop" in err


def test_first_compile_profiles_this_machine(bundle, tmp_path, capsys, monkeypatch):
    """No profile: the compile profiles the target itself into the user's cache (one line
    saying so), never into the bundle; the next compile reuses it."""
    from nnfc.compiler import auto_profile
    monkeypatch.setattr(auto_profile, "affordable_subnets", lambda *a, **k: (12, 0.5))
    copy = tmp_path / "factory"
    shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns("profiles"))
    code, _, err = run_cli(["compile", "--bundle", str(copy), "--task", "odd", "--lat", "50ms",
                            "-o", str(tmp_path / "x")], capsys)
    assert code == 0, err
    assert "profiling 12 subnets first" in err
    from nnfc.compiler.pipeline import default_profile_path
    assert default_profile_path(copy, "desktop").is_file()
    assert not (copy / "profiles").exists()
    code, _, err = run_cli(["compile", "--bundle", str(copy), "--task", "odd", "--lat", "50ms",
                            "-o", str(tmp_path / "y")], capsys)
    assert code == 0 and "profiling" not in err


def test_profile_of_another_factory_is_refused(bundle, tmp_path, capsys):
    copy = tmp_path / "factory"
    shutil.copytree(bundle, copy)
    prof = copy / "profiles" / "desktop.json"
    data = json.loads(prof.read_text())
    data["bundle"]["supernet_sha256"] = "0" * 64
    data["bundle"]["architecture_sha256"] = "0" * 64
    prof.write_text(json.dumps(data))
    code, _, err = run_cli(["compile", "--bundle", str(copy), "--task", "odd", "--lat", "5ms",
                            "-o", str(tmp_path / "x")], capsys)
    assert code == 2 and "another factory" in err and "nnfc profile --bundle" in err


def test_profile_survives_retraining_the_same_architecture(bundle, tmp_path, capsys):
    """Latency and memory do not depend on weight values: a factory retrained with the same
    graph keeps its profile; the profile names the architecture it was made for."""
    from nnfc.bundle import sha256_file
    from nnfc.compiler.profiler import architecture_sha256
    copy = tmp_path / "factory"
    shutil.copytree(bundle, copy)
    supernet = onnx.load(str(copy / "supernet.onnx"))
    weights = max(supernet.graph.initializer, key=lambda t: np.prod(t.dims))
    weights.CopyFrom(numpy_helper.from_array(
        numpy_helper.to_array(weights) * np.float32(1.5), weights.name))
    onnx.save(supernet, str(copy / "supernet.onnx"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["supernet.onnx"] = sha256_file(copy / "supernet.onnx")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    profile = json.loads((copy / "profiles" / "desktop.json").read_text())
    assert profile["bundle"]["supernet_sha256"] != manifest["files"]["supernet.onnx"]
    assert profile["bundle"]["architecture_sha256"] == architecture_sha256(copy / "supernet.onnx")
    code, _, err = run_cli(["compile", "--bundle", str(copy), "--task", "odd", "--lat", "5ms",
                            "-o", str(tmp_path / "x")], capsys)
    assert code == 0, err


def test_compile_never_imports_torch(bundle, tmp_path):
    code = ("import sys\nfrom nnfc.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n"
            "assert not bad, bad[:5]\nprint('NO_TORCH')\n")
    res = subprocess.run([sys.executable, "-c", code, "compile", "--bundle", str(bundle),
                          "--task", "only-one,even", "--lat", "20ms", "-o", str(tmp_path / "o"),
                          "--runs", "2", "--rounds", "1"],
                         capture_output=True, text=True, env={**os.environ}, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "NO_TORCH" in res.stdout
    assert (tmp_path / "o" / "report.json").is_file()


def test_recompile_replaces_output_atomically(bundle, tmp_path, capsys):
    from nnfc.outputs import MARKER
    out = tmp_path / "out"
    args = ["compile", "--bundle", str(bundle), "--task", "even", "--lat", "1s", "-o", str(out),
            "--runs", "2", "--rounds", "1", "--no-verify"]
    assert run_cli(args, capsys)[0] == 0
    # an earlier compile output with a file this compile does not write (e.g. another target's)
    marker = json.loads((out / MARKER).read_text())
    (out / MARKER).write_text(json.dumps({**marker, "files": marker["files"] + ["stale.txt"]}))
    (out / "stale.txt").write_text("old")
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert not (out / "stale.txt").exists() and (out / "report.json").is_file()
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert json.loads((out / "report.json").read_text())["max_abs_diff_vs_supernet"] is None


def test_compile_measures_against_reference_and_steps_up(bundle, tmp_path, capsys):
    from nnfc.compiler.predictor import Predictor
    predictor = Predictor.load(bundle / "profiles" / "desktop.json")
    assert (bundle / "profiles" / predictor.meta["reference"]["artifact"]).is_file()
    assert predictor.meta["margin"]["source"].startswith("5-fold CV") or \
        "fold CV" in predictor.meta["margin"]["source"]
    full = float(predictor.predict({g: np.ones(s) for g, s in zip(
        predictor.structure.gates, predictor.structure.sizes)})[0][0])
    out = tmp_path / "out"
    # a far too generous margin puts the first artifact deep inside the budget: compile steps
    # up and measures again, at most --refine-rounds times, and keeps a subnet within budget
    code, stdout, err = run_cli(["compile", "--bundle", str(bundle), "--task", "only-two,odd",
                                 "--lat", f"{full * 1.5}ms", "--margin", "0.3",
                                 "--refine-rounds", "3", "-o", str(out)], capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    rounds = report["search"]["measured_rounds"]
    assert 1 <= len(rounds) <= 3
    assert "reference subnet" in report["measured"]["latency_definition"]
    assert report["measured"]["relative_to_reference"] > 0
    use = report["budget_use"]["latency"]
    assert use["of"] == "measured"
    assert use["utilisation"] == pytest.approx(
        report["measured"]["latency_ms"]["median"] / report["request"]["lat_ms"])
    if report["within_budget"] and len(rounds) > 1:
        assert report["limit"] >= rounds[0]["limit"]
    assert "of budget" in stdout


def test_quiet_shows_only_results(bundle, tmp_path, capsys):
    """-q: no notes (the jetson recipe line) and no progress, only the summary on stdout; the
    same compile without -q says how to build the engine."""
    args = ["compile", "--bundle", str(bundle), "--task", "odd", "--target", "jetson", "--lat",
            "50ms"]
    code, out, err = run_cli(["-q", *args, "-o", str(tmp_path / "q")], capsys)
    assert code == 0 and err == "" and "within budget" in out
    code, out, err = run_cli([*args, "-o", str(tmp_path / "v")], capsys)
    assert code == 0 and "no TensorRT engine built" in err
