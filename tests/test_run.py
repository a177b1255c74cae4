"""`nnfc run pipeline.toml`: scenarios compiled in one process and benchmarked like nnfc bench;
an infeasible scenario is reported and the others still run; JSON, JUnit and Markdown."""

import json
import xml.etree.ElementTree as ET

import pytest

from cli_runner import run_cli
from compile_fixtures import profiled_bundle
from nnfc.errors import NnfcError
from nnfc.pipeline_file import COMPILE_OPTIONS, load_pipeline, scenario_request_fields


def _write(tmp_path, body: str):
    path = tmp_path / "pipeline.toml"
    path.write_text(f'bundle = "{profiled_bundle()}"\noutput = "{tmp_path / "out"}"\n' + body)
    return path


def test_pipeline_runs_every_scenario_and_reports(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, """
[bench]
rounds = 3
runs = 2
warmup = 0

[[scenario]]
name = "fast"
task = "only-two,odd"
latency = "50ms"

[[scenario]]
name = "impossible"
task = "odd"
latency = "1us"

[matrix]
tasks = ["odd"]
targets = ["desktop"]
budgets = [{memory = "50MB"}]
""")
    code, out, err = run_cli(["run", str(path)], capsys)
    assert code == 1, err                      # one scenario failed: CI sees it
    result = json.loads((tmp_path / "out" / "run.json").read_text())
    status = {r["name"]: r["status"] for r in result["scenarios"]}
    assert status == {"fast": "within budget", "impossible": "failed",
                      "odd-desktop-50mb": "within budget"}
    assert "infeasible budget" in next(r["error"] for r in result["scenarios"]
                                       if r["name"] == "impossible")
    bench = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert [a["name"] for a in bench["artifacts"]] == [str(tmp_path / "out" / "fast"),
                                                      str(tmp_path / "out" / "odd-desktop-50mb")]
    suites = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    assert suites.get("failures") == "1" and len(suites) == 2
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "**failed**" in md and "### nnfc bench" in md
    # a second run replaces its own reports, prints the Markdown with '-' and appends to the
    # step summary
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, err = run_cli(["run", str(path), "--no-bench", "--markdown", "-"], capsys)
    assert code == 1 and "### nnfc run" in out
    code, out, err = run_cli(["run", str(path), "--no-bench", "--markdown", str(summary)],
                             capsys)
    assert summary.read_text().startswith("earlier step\n<!-- nnfc run -->")


@pytest.mark.parametrize("body, message", [
    ("", "lists no scenario"),
    ('[[scenario]]\ntask = "odd"\n', "give a budget"),
    ('[[scenario]]\ntask = "odd"\nlatency = 5\n', "must be a string with a unit"),
    ('[[scenario]]\ntask = "odd"\nlatency = "5ms"\ncolour = "red"\n', "unknown key(s) colour"),
    ('[[scenario]]\ntask = "odd"\nlatency = "5ms"\n[[scenario]]\ntask = "odd"\n'
     'latency = "5ms"\n', "used twice"),
    ("[scenario\n", "not valid TOML"),
])
def test_bad_pipeline_files_are_one_error(tmp_path, body, message):
    with pytest.raises(NnfcError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_pipeline(_write(tmp_path, body))


def test_scenario_options_are_compile_request_fields():
    assert COMPILE_OPTIONS <= scenario_request_fields()


def test_target_filter(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, '[[scenario]]\ntask = "odd"\nlatency = "50ms"\n'
                            '[[scenario]]\ntask = "odd"\ntarget = "jetson"\nlatency = "5ms"\n')
    code, out, err = run_cli(["run", str(path), "--target", "android"], capsys)
    assert code == 2 and "no scenario for target(s) android" in err
    code, out, err = run_cli(["run", str(path), "--target", "desktop", "--no-bench"], capsys)
    assert code == 0, err
    assert [r["target"] for r in json.loads((tmp_path / "out" / "run.json").read_text())[
        "scenarios"]] == ["desktop"]


def test_the_ci_examples_pipeline_file_is_valid():
    from pathlib import Path

    from nnfc.targets import TARGETS
    root = Path(__file__).resolve().parent.parent / "examples" / "github-actions"
    pipe = load_pipeline(root / "pipeline.toml")
    assert {s.target for s in pipe.scenarios} == set(TARGETS)
    workflow = (root / "nnfc-bench.yml").read_text()
    assert "checks: write" in workflow and "nnfc run" in workflow
    assert "scenarios.txt" not in workflow and "set -e" not in workflow
