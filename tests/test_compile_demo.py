"""`nnfc demo` profiles a factory without a profile, then compiles three scenarios; commands
without --bundle use the default factory ($NNFC_FACTORY)."""

import json
import shutil

from compile_fixtures import profiled_bundle
from cli_runner import run_cli

from nnfc.compiler.pipeline import default_profile_path



def test_demo_profiles_then_compiles(tmp_path, capsys):
    root = tmp_path / "factory"
    shutil.copytree(profiled_bundle(), root, ignore=shutil.ignore_patterns("profiles"))
    code, out, err = run_cli(["demo", "--bundle", str(root), "-o", str(tmp_path / "demo"),
                              "--subnets", "20", "--target", "desktop", "--target", "jetson"],
                             capsys)
    assert code == 0, err
    assert "profiling 20 subnets first" in err and "predictor: latency" in err
    assert default_profile_path(root, "desktop").is_file()  # in the user's cache
    assert not default_profile_path(root, "jetson").exists()  # the roofline estimate
    assert not (root / "profiles").exists()
    for target in ("desktop", "jetson"):
        report = json.loads((tmp_path / "demo" / target / "report.json").read_text())
        assert report["request"]["target"] == target and report["request"]["lat_ms"]
        assert report["max_abs_diff_vs_supernet"] < 1e-4
    assert out.count("nnfc compile --bundle") == 2
    assert not (tmp_path / "demo" / "detections.png").exists()  # not a detection factory


def test_demo_on_the_default_detection_factory_draws_boxes(tmp_path, capsys, monkeypatch):
    """The shipped default factory: `red,car` compiled for jetson (estimated profile, no
    profiling), the artifact run on test scenes and drawn into a PNG."""
    from PIL import Image

    monkeypatch.delenv("NNFC_FACTORY", raising=False)
    code, out, err = run_cli(["demo", "--target", "jetson", "-o", str(tmp_path / "d")], capsys)
    assert code == 0, err
    assert "--task red,car --target jetson --lat" in out
    report = json.loads((tmp_path / "d" / "jetson" / "report.json").read_text())
    assert report["within_budget_predicted"] and report["max_abs_diff_vs_supernet"] < 1e-4
    with Image.open(tmp_path / "d" / "detections.png") as png:
        width, height = png.size  # three scenes drawn 3x, a title bar, the legend strip
        assert width == 3 * 480 and 480 < height < 600


def test_demo_unknown_target(tmp_path, capsys):
    code, _, err = run_cli(["demo", "--target", "toaster", "-o", str(tmp_path / "d")], capsys)
    assert code == 2 and "'toaster' is not one of 'desktop', 'android', 'jetson'" in err
    assert not (tmp_path / "d").exists()


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
