"""`nnfc demo` profiles a factory without a profile, then compiles three scenarios; commands
without --bundle use the default factory ($NNFC_FACTORY)."""

import json
import shutil

from compile_fixtures import profiled_bundle
from cli_runner import run_cli



def test_demo_profiles_then_compiles(tmp_path, capsys):
    root = tmp_path / "factory"
    shutil.copytree(profiled_bundle(), root, ignore=shutil.ignore_patterns("profiles"))
    code, out, err = run_cli(["demo", "--bundle", str(root), "-o", str(tmp_path / "demo"),
                              "--subnets", "20"], capsys)
    assert code == 0, err
    assert "profiling desktop first" in out and "predictor: latency" in out
    assert (root / "profiles" / "desktop.json").is_file()
    reports = sorted((tmp_path / "demo").glob("scenario*/report.json"))
    assert len(reports) == 3, out
    for path in reports:
        report = json.loads(path.read_text())
        assert report["max_abs_diff_vs_supernet"] < 1e-4
    assert out.count("nnfc compile --bundle") == 3


def test_default_factory_from_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NNFC_FACTORY", str(profiled_bundle()))
    code, out, err = run_cli(["compile", "--task", "odd", "--lat", "1s", "-o",
                              str(tmp_path / "o"), "--runs", "2", "--rounds", "1"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["bundle"]["path"] == str(profiled_bundle())
    monkeypatch.setenv("NNFC_FACTORY", str(tmp_path / "nowhere"))
    code, _, err = run_cli(["compile", "--task", "odd", "--lat", "1s", "-o",
                            str(tmp_path / "o2")], capsys)
    assert code == 2 and "does not exist" in err and "nnfc train" in err
