"""Compiled equals evaluated: for every shipped factory, `nnfc bench --eval` on the artifact
`nnfc compile` wrote scores exactly what `nnfc eval` gives for the same task at the limit compile
chose (same test samples, same metric; the artifact runs on its target, the evaluation prunes
the supernet itself). A task never trained on (unseen) is the case where they were once thought
to differ; compile's budget is a memory one, so the chosen limit does not depend on timing."""

import json
from pathlib import Path

import pytest

from cli_runner import run_cli

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.name for p in (REPO / "factories").iterdir() if (p / "manifest.json").is_file())
#: per factory: a memory budget that forces a limit below 100 %, and test samples per task
BUDGETS = {"default": ("2MB", 8), "attrod-mobilenet": ("1MB", 8),
           "numvqa-resnet": ("150KB", 100), "numvqa-vit": ("180KB", 100)}


def test_every_shipped_factory_has_a_budget():
    assert set(BUDGETS) == set(SHIPPED)


def _json_out(args, capsys):
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("name", SHIPPED)
def test_bench_eval_of_compiled_artifact_equals_nnfc_eval(name, tmp_path, capsys):
    from nnfc.bundle import read_bundle

    bundle_dir = REPO / "factories" / name
    task = ",".join(read_bundle(bundle_dir).tasks("unseen")[0])
    mem, samples = BUDGETS[name]
    profile = tmp_path / "desktop.json"
    code, _, err = run_cli(["profile", "--bundle", str(bundle_dir), "--target", "desktop",
                            "--subnets", "10", "--runs", "1", "--rounds", "1", "--warmup", "0",
                            "-o", str(profile)], capsys)
    assert code == 0, err
    out = tmp_path / "c"
    code, _, err = run_cli(["compile", "--bundle", str(bundle_dir), "--task", task, "--mem", mem,
                            "--profile", str(profile), "-o", str(out)], capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    limit = report["limit"]
    assert limit < 1.0, f"{mem} does not bind on {name}: pick a smaller budget"
    bench = _json_out(["bench", str(out), "--eval", "--eval-samples", str(samples),
                       "--rounds", "3", "--runs", "1", "--warmup", "0", "--json"], capsys)
    evaluated = _json_out(["eval", "--bundle", str(bundle_dir), "--task", task,
                           "--limit", repr(limit), "--samples", str(samples), "--json"], capsys)
    (art,) = bench["artifacts"]
    (row,) = evaluated
    assert row["activation_ratio"] == pytest.approx(report["activation_ratio"], abs=1e-4)
    assert art["eval"]["metric"] == row["metric"]
    assert art["eval"]["value"] == pytest.approx(row["value"], abs=1e-4), (name, task, limit)
