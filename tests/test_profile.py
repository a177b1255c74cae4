"""`nnfc profile`: measurements, resume, fitting from foreign measurements."""

import json
import shutil

import pytest

from compile_fixtures import profiled_bundle
from nnfc.bundle import read_bundle
from nnfc.compiler.pipeline import default_profile_path, make_target
from nnfc.compiler.predictor import Predictor
from nnfc.compiler.profiler import profile_subnets
from cli_runner import run_cli



def test_profile_records_rows_and_resumes(tmp_path):
    bundle = read_bundle(profiled_bundle())
    target = make_target("desktop", {"threads": 1})
    path = tmp_path / "m.json"
    first = profile_subnets(bundle, target, path, subnets=3, runs=2, warmup=0, rounds=1,
                            progress=False)
    assert len(first["rows"]) == 3
    row = first["rows"][1]
    for key in ("gates", "activation_ratio", "latency_ms", "runtime_memory_mb",
                "graph_memory_mb", "params", "flops", "relative", "round_ratios", "load"):
        assert key in row
    assert first["rows"][0]["activation_ratio"] == 1.0
    assert first["target_options"] == {"threads": 1}
    # timed against a fixed reference subnet, kept beside the measurements for compile
    assert first["reference"]["clock"] == "CPU time of the inference thread"
    assert (tmp_path / first["reference"]["artifact"]).is_file()
    assert row["latency_ms"] == pytest.approx(row["relative"]
                                              * first["reference"]["latency_ms"])
    again = profile_subnets(bundle, target, path, subnets=5, runs=2, warmup=0, rounds=1,
                            progress=False)
    assert len(again["rows"]) == 5
    assert again["rows"][:3] == json.loads(path.read_text())["rows"][:3] == first["rows"]
    assert [r["index"] for r in again["rows"]] == list(range(5))
    # measured differently (more runs): the old rows are not comparable, start over
    other = profile_subnets(bundle, target, path, subnets=2, runs=3, warmup=0, rounds=1,
                            progress=False)
    assert len(other["rows"]) == 2 and other["runs"] == 3


def test_profile_cli_and_fit_from_measurements(tmp_path, capsys):
    root = tmp_path / "factory"
    shutil.copytree(profiled_bundle(), root, ignore=shutil.ignore_patterns("profiles"))
    code, out, err = run_cli(["profile", "--bundle", str(root), "--subnets", "12", "--runs", "2",
                              "--rounds", "1", "--warmup", "0", "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert set(res["accuracy"]) >= {"latency", "memory"}
    pred_path = default_profile_path(root, "desktop")  # the user's cache, not the bundle
    assert res["predictor"] == str(pred_path)
    assert not (root / "profiles").exists()
    measurements = pred_path.with_name(pred_path.stem + ".measurements.json")
    assert measurements.is_file() and pred_path.with_suffix(".png").is_file()
    pred = Predictor.load(pred_path)
    assert pred.meta["host"]["cores"] and pred.meta["target_options"] == {"threads": 1}

    # measurements made elsewhere (e.g. on a device): latency only, no memory figures
    meas = json.loads(measurements.read_text())
    foreign = {"target": "desktop", "host": {"cpu": "elsewhere", "cores": 6},
               "rows": [{"gates": r["gates"], "latency_ms": r["latency_ms"] * 2}
                        for r in meas["rows"]]}
    (tmp_path / "dev.json").write_text(json.dumps(foreign))
    out_path = tmp_path / "fitted.json"
    code, out, err = run_cli(["profile", "--bundle", str(root), "-o", str(out_path), "fit",
                              "--measurements", str(tmp_path / "dev.json")], capsys)
    assert code == 0, err
    assert "latency  accuracy" in out
    fitted = Predictor.load(out_path)
    assert fitted.meta["measured_locally"] is False and fitted.meta["host"]["cpu"] == "elsewhere"


@pytest.mark.parametrize("content,needle", [(None, "does not exist"), ("[]", "no measurement rows"),
                                            ('{"rows": [{"x": 1}]}', "rows[0].gates: is missing")])
def test_fit_bad_measurements(tmp_path, capsys, content, needle):
    path = tmp_path / "m.json"
    if content is not None:
        path.write_text(content)
    code, _, err = run_cli(["profile", "--bundle", str(profiled_bundle()), "-o",
                            str(tmp_path / "p.json"), "fit", "--measurements", str(path)], capsys)
    assert code == 2 and needle in err
