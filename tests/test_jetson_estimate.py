"""Estimated (roofline) jetson profiles: used only without a measured profile, and said so."""

import json
import shutil

import numpy as np
import onnx
import pytest

from cli_runner import run_cli
from compile_fixtures import profiled_bundle
from nnfc.bundle import read_bundle
from nnfc.compiler.cost_analysis import analyse
from nnfc.compiler.jetson_estimate import MODULES, estimated_predictor
from nnfc.compiler.predictor import Predictor
from nnfc.compiler.profiler import random_gates
from nnfc.errors import NnfcError


@pytest.fixture(scope="module")
def structure():
    return analyse(onnx.load(str(read_bundle(profiled_bundle()).supernet_path)))


def test_roofline_grows_with_gates_and_orders_modules(structure):
    plan = random_gates(structure.gates, structure.sizes, 12, seed=4)
    gates = {k: np.stack([g[k] for g in plan]) for k in structure.gates}
    on = structure.activation_ratio(gates)
    lat = {d: estimated_predictor(structure, "B", d).predict(gates)[0] for d in MODULES}
    full = int(np.argmax(on))
    assert all(lat[d][full] == lat[d].max() for d in MODULES)
    assert np.all(lat["agx-orin"] < lat["orin-nx"]) and np.all(lat["orin-nx"] < lat["orin-nano"])
    fp16 = estimated_predictor(structure, "B", "orin-nano", "fp16").predict(gates)[0]
    assert np.all(fp16 < lat["orin-nano"])
    int8 = estimated_predictor(structure, "B", "orin-nano", "int8").predict(gates)[0]
    assert np.all(int8 < fp16)
    with pytest.raises(NnfcError, match="unknown Jetson module"):
        estimated_predictor(structure, "B", "tx2")


def test_compile_jetson_without_profile_is_estimated(tmp_path, capsys):
    root = tmp_path / "factory"
    shutil.copytree(profiled_bundle(), root)
    out = tmp_path / "o"
    code, stdout, err = run_cli(["compile", "--bundle", str(root), "--target", "jetson",
                                 "--device", "agx-orin", "--task", "odd", "--lat", "1s",
                                 "-o", str(out), "--no-verify"], capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["latency_estimated"]["device"] == "agx-orin"
    assert "estimated, not measured" in report["latency_estimated"]["note"]
    assert "roofline estimate, not measured" in stdout
    assert f"nnfc profile --bundle {root} --target jetson --device-dir" in stdout

    # a measured profile always wins over the estimate
    desktop = Predictor.load(root / "profiles" / "desktop.json")
    desktop.target = "jetson"
    desktop.meta.update(measured_locally=False, target_options={})
    desktop.save(root / "profiles" / "jetson.json")
    code, stdout, err = run_cli(["compile", "--bundle", str(root), "--target", "jetson",
                                 "--device", "agx-orin", "--task", "odd", "--lat", "1s",
                                 "-o", str(out), "--no-verify"], capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["latency_estimated"] is None and "estimate" not in stdout
