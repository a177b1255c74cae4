"""benchmarks/paper_table.py on a tiny factory: one scenario through the three real commands,
the Markdown table and the PNG; a re-run takes everything from the cache."""

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from baseline_fixtures import profiled_tiny_factory

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def paper_table(monkeypatch):
    spec = importlib.util.spec_from_file_location("paper_table",
                                                  ROOT / "benchmarks" / "paper_table.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "paper_table", module)  # dataclasses look it up
    spec.loader.exec_module(module)
    monkeypatch.setitem(module.FAMILIES, "numvqa", dataclasses.replace(
        module.FAMILIES["numvqa"], scenarios=[module.Scenario("has,0", "desktop", "0.5ms",
                                                              "15KB")]))
    return module


@pytest.mark.slow
def test_table_runs_all_methods_then_only_what_is_missing(paper_table, tmp_path, capsys,
                                                          monkeypatch):
    bundle = profiled_tiny_factory()
    args = ["--bundle", str(bundle), "--results", str(tmp_path), "--retrain-epochs", "1",
            "--finetune-epochs", "1", "--targets", "desktop"]
    assert paper_table.main(args) == 0
    table = (tmp_path / "table.md").read_text()
    assert "| {has,0} | desktop | 0.5ms | 15KB |" in table
    assert "**1 epoch (reduced run)**" in table
    assert (tmp_path / "accuracy_vs_latency.png").stat().st_size > 1000
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["nn-factory", "retrain", "prune-tune"]
    for r in rows:
        assert 0 <= r["accuracy"] <= 1 and r["customization_s"] > 0 and r["lat_ms"] > 0
    assert rows[2]["within_budget"] is True  # Prune&Tune pruned to the budget
    # cached: nothing runs again
    monkeypatch.setattr(paper_table, "run", lambda *a, **k: pytest.fail("re-ran a command"))
    assert paper_table.main(args) == 0
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == rows


def test_a_failing_method_is_listed_and_the_table_goes_on(paper_table, tmp_path, monkeypatch):
    """A command that fails on one scenario (e.g. a budget the method cannot reach) does not
    end a run of hours: the other scenarios and methods go on and the table lists it."""
    bundle = ROOT / "factories" / "numvqa-resnet"

    def fails(*args, **kwargs):
        raise paper_table.MethodFailed("command failed (2): nnfc compile ...")

    monkeypatch.setattr(paper_table, "ensure_profile", lambda *a, **k: 0.0)
    monkeypatch.setattr(paper_table, "run_method", fails)
    args = ["--bundle", str(bundle), "--results", str(tmp_path), "--targets", "desktop"]
    assert paper_table.main(args) == 0
    notes = json.loads((tmp_path / "results.json").read_text())["notes"]
    assert any("Failed" in n and "{has,0} desktop 0.5ms 15KB" in n for n in notes)
