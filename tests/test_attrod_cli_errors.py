"""Bad input to the commands on the default (detection) factory: one `nnfc: error:` line, exit
2, nothing written; and `nnfc eval --data` on a COCO-format test set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from cli_runner import run_cli
from compile_fixtures import check_artifacts
from nnfc.families.attrod.coco import write_procedural_coco

NUMVQA = Path(__file__).resolve().parent.parent / "factories" / "numvqa-resnet"


@pytest.fixture(autouse=True)
def _default_factory(monkeypatch):
    monkeypatch.delenv("NNFC_FACTORY", raising=False)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return write_procedural_coco(tmp_path_factory.mktemp("coco") / "set", 6)


def _one_error_line(err: str, message: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nnfc: error: ") and message in lines[0], err


@pytest.mark.parametrize("task, message", [
    ("pink,car", "unknown attribute(s) 'pink'|colour 'pink' is not close to any colour"),
    ("red,truck", "unknown attribute(s) 'truck'|'truck' is no attribute, category or colour"),
    ("red", "needs exactly one category (car, bus, bicycle, motorcycle, person), got 0"),
    ("red,blue", "needs exactly one category"),
    ("red,car,bus", "needs exactly one category (car, bus, bicycle, motorcycle, person), got 2"),
    ("car", "needs at least one colour"),
])
@pytest.mark.parametrize("command", ["compile", "eval"])
def test_bad_task(command, task, message, tmp_path, capsys):
    args = (["compile", "--task", task, "--target", "jetson", "--lat", "20ms", "-o",
             str(tmp_path / "out")] if command == "compile" else
            ["eval", "--task", task, "--limit", "1", "--samples", "2"])
    code, out, err = run_cli(args, capsys)
    assert code == 2
    _one_error_line(err, message.split("|")[command == "compile"] if "|" in message else message)
    assert not list(tmp_path.iterdir())  # nothing written


def test_headline_compile_any_attribute_order(tmp_path, capsys):
    """`nnfc compile --task red,car --target jetson --lat 20ms -o out/x` as written (here with
    the attributes reversed): the estimated jetson profile, a static TensorRT-ready ONNX."""
    import onnx
    code, out, err = run_cli(["compile", "--task", "car,red", "--target", "jetson", "--lat",
                              "20ms", "-o", str(tmp_path / "x")], capsys)
    assert code == 0, err
    assert "roofline estimate, not measured" in out
    report = json.loads((tmp_path / "x" / "report.json").read_text())
    assert report["within_budget_predicted"] and report["max_abs_diff_vs_supernet"] < 1e-4
    model = onnx.load(str(tmp_path / "x" / "model.trt.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == ["boxes", "scores"]
    for value in list(model.graph.input) + list(model.graph.output):
        assert all(d.HasField("dim_value") for d in value.type.tensor_type.shape.dim)
    assert (tmp_path / "x" / "build_engine.sh").is_file()
    check_artifacts(tmp_path / "x")
    assert ".nnfc-tmp" not in err  # the recipe message names no staging directory


def test_eval_on_coco_data(coco, capsys):
    code, out, err = run_cli(["eval", "--data", str(coco / "instances.json"), "--task",
                              "red,car", "--limit", "1", "--samples", "4", "--json"], capsys)
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["metric"] == "map50" and 0 <= row["value"] <= 1 and row["task"] == ["red", "car"]


def test_eval_image_of_the_wrong_size(coco, tmp_path, capsys):
    data = shutil.copytree(coco, tmp_path / "set")
    path = data / "images" / "000002.png"
    with Image.open(path) as im:
        im.resize((120, 90)).save(path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out, err = run_cli(["eval", "--data", str(data / "instances.json"), "--task",
                              "red,car", "--limit", "1", "--samples", "4"], capsys)
    assert code == 2 and not out
    _one_error_line(err, "000002.png is 120x90 pixels but the annotations give it as 160x160")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("drop, message", [
    (("annotations", 1, "bbox"), "annotations[1] lacks field(s) bbox"),
    (("images", 0, "width"), "images[0] lacks field(s) width"),
    (("categories", 0, "name"), "categories[0] lacks field(s) name"),
    (("annotations",), "not a COCO instances file (no 'annotations' list)"),
])
def test_eval_coco_file_with_missing_fields(coco, tmp_path, capsys, drop, message):
    data = json.loads((coco / "instances.json").read_text())
    if len(drop) == 1:
        del data[drop[0]]
    else:
        del data[drop[0]][drop[1]][drop[2]]
    bad = tmp_path / "instances.json"
    bad.write_text(json.dumps(data))
    code, _, err = run_cli(["eval", "--data", str(bad), "--colours",
                            str(coco / "colours.json"), "--images", str(coco / "images"),
                            "--task", "red,car"], capsys)
    assert code == 2
    _one_error_line(err, message)


def test_eval_data_option_errors(coco, capsys):
    code, _, err = run_cli(["eval", "--images", str(coco / "images"), "--task", "red,car"],
                           capsys)
    assert code == 2
    _one_error_line(err, "--colours and --images go with --data")
    code, _, err = run_cli(["eval", "--bundle", str(NUMVQA), "--data",
                            str(coco / "instances.json")], capsys)
    assert code == 2
    _one_error_line(err, "task family (numvqa) does not read COCO data")
