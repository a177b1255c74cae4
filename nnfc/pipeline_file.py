"""A pipeline file (TOML) for ``nnfc run``: which factory, where outputs go, the scenarios
(task × target × budget, with any compile option) and how to benchmark them.

    bundle = "default"                 # factory name or bundle path (default: the default factory)
    output = "out"                     # scenario outputs in out/<name>/, reports beside them

    [bench]                            # nnfc bench's options (all optional)
    baseline = "baseline/bench.json"   # compared when the file exists (e.g. main's last run)
    max_regression = "lat=5%,mem=1%,acc=1pt"
    eval = true

    [[scenario]]
    name = "desktop-fast"              # default: from task, target and budget
    task = "red cars"                  # attributes or words, as nnfc compile --task
    target = "desktop"
    latency = "5ms"
    memory = "50MB"

    [matrix]                           # and/or: every task x target x budget
    tasks = ["red,car", "people in white"]
    targets = ["desktop", "android"]
    budgets = [{latency = "5ms"}, {latency = "10ms", memory = "20MB"}]
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from nnfc.errors import NnfcError
from nnfc.file_schemas import PIPELINE_BENCH, PIPELINE_COMPILE_OPTIONS

TOP_KEYS = {"bundle", "output", "bench", "scenario", "matrix"}
SCENARIO_KEYS = {"name", "task", "target", "latency", "memory"}
#: CompileRequest fields a scenario may set (besides task, target and the budgets)
COMPILE_OPTIONS = {"precision", "max_drop", "method", "step", "margin", "refine_rounds",
                   "device", "runs", "rounds", "warmup", "verify", "profile"}
BENCH_KEYS = {"baseline", "max_regression", "eval", "eval_samples", "rounds", "runs",
              "warmup", "confidence", "lat_stat", "min_round_time", "save", "junit",
              "markdown"}
MATRIX_KEYS = {"tasks", "targets", "budgets"}


@dataclass
class Scenario:
    """One compile of the pipeline."""

    name: str
    task: str | list[str]
    target: str
    latency: str | None = None
    memory: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def budget_text(self) -> str:
        return ", ".join(x for x in (f"latency <= {self.latency}" if self.latency else "",
                                     f"memory <= {self.memory}" if self.memory else "") if x)


@dataclass
class Pipeline:
    """A parsed pipeline file; its paths are relative to the working directory (as on the
    command line)."""

    path: Path
    bundle: str | None
    output: Path
    scenarios: list[Scenario]
    bench: dict[str, Any]


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise NnfcError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
                        f"{', '.join(sorted(allowed))}")


def _text(value: Any, key: str, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise NnfcError(f"{where}: {key} must be a string with a unit, e.g. "
                    f"{'5ms' if key == 'latency' else '50MB'} (got {value!r})")


def _check_schema(table: Mapping[str, Any], schema, where: str) -> None:
    """Numbers in range, of the right type (``runs = -3`` is one error naming the key)."""
    from nnfc.schema import SchemaError
    try:
        schema.check(dict(table))
    except SchemaError as exc:
        raise NnfcError(f"{where}: {exc.field}: {exc.message}") from None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _scenario(raw: Mapping[str, Any], where: str) -> Scenario:
    if not isinstance(raw, Mapping):
        raise NnfcError(f"{where} must be a table")
    _check_keys(raw, SCENARIO_KEYS | COMPILE_OPTIONS, where)
    task = raw.get("task")
    if not (isinstance(task, str) and task.strip()) and not (
            isinstance(task, list) and task and all(isinstance(t, str) for t in task)):
        raise NnfcError(f"{where}: task must be a phrase or a list of attributes, e.g. "
                        f"task = \"red cars\"")
    target = raw.get("target", "desktop")
    latency = _text(raw.get("latency"), "latency", where)
    memory = _text(raw.get("memory"), "memory", where)
    if latency is None and memory is None:
        raise NnfcError(f"{where}: give a budget: latency = \"5ms\" and/or memory = \"50MB\"")
    task_text = task if isinstance(task, str) else ",".join(task)
    name = raw.get("name") or "-".join(
        _slug(x) for x in (task_text, str(target), latency or "", memory or "") if x)
    if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
        raise NnfcError(f"{where}: name {name!r} must be a plain directory name")
    options = {k: v for k, v in raw.items() if k in COMPILE_OPTIONS}
    _check_schema(options, PIPELINE_COMPILE_OPTIONS, where)
    return Scenario(name, task, str(target), latency, memory, options)


def _matrix(raw: Mapping[str, Any]) -> list[Scenario]:
    if not isinstance(raw, Mapping):
        raise NnfcError("[matrix] must be a table")
    _check_keys(raw, MATRIX_KEYS | COMPILE_OPTIONS, "[matrix]")
    tasks, targets = raw.get("tasks"), raw.get("targets", ["desktop"])
    budgets = raw.get("budgets")
    for key, value in (("tasks", tasks), ("targets", targets), ("budgets", budgets)):
        if not isinstance(value, list) or not value:
            raise NnfcError(f"[matrix]: {key} must be a non-empty list")
    options = {k: v for k, v in raw.items() if k in COMPILE_OPTIONS}
    out = []
    for i, (task, target, budget) in enumerate(itertools.product(tasks, targets, budgets)):
        if not isinstance(budget, Mapping):
            raise NnfcError("[matrix]: budgets must be tables, e.g. {latency = \"5ms\"}")
        _check_keys(budget, {"latency", "memory", "name"}, "[matrix] budget")
        out.append(_scenario({"task": task, "target": target, **options,
                              **{k: v for k, v in budget.items() if k != "name"}},
                             f"[matrix] scenario {i + 1}"))
    return out


def load_pipeline(path: str | os.PathLike) -> Pipeline:
    """Read and validate a pipeline file; every problem is one NnfcError line."""
    from nnfc.jsonfile import read_toml
    path = Path(path)
    raw = read_toml(path, what="pipeline file")  # regular file, at most 1 MiB
    _check_keys(raw, TOP_KEYS, str(path))
    items = raw.get("scenario", [])
    if not isinstance(items, list):
        raise NnfcError(f"{path}: scenarios are [[scenario]] tables")
    scenarios = [_scenario(s, f"{path}: scenario {i + 1}") for i, s in enumerate(items)]
    if "matrix" in raw:
        scenarios += _matrix(raw["matrix"])
    if not scenarios:
        raise NnfcError(f"{path} lists no scenario ([[scenario]] tables or a [matrix])")
    names = [s.name for s in scenarios]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise NnfcError(f"{path}: scenario name(s) {', '.join(twice)} used twice; give each a "
                        "name")
    bench = raw.get("bench", {})
    if not isinstance(bench, Mapping):
        raise NnfcError(f"{path}: [bench] must be a table")
    _check_keys(bench, BENCH_KEYS, f"{path} [bench]")
    _check_schema(bench, PIPELINE_BENCH, f"{path} [bench]")
    bundle = raw.get("bundle")
    if bundle is not None and not isinstance(bundle, str):
        raise NnfcError(f"{path}: bundle must be a factory name or a path")
    output = raw.get("output", "out")
    if not isinstance(output, str) or not output:
        raise NnfcError(f"{path}: output must be a directory path")
    return Pipeline(path, bundle, Path(output), scenarios, dict(bench))


def scenario_request_fields() -> set[str]:
    """CompileRequest's fields (to check COMPILE_OPTIONS against it in the tests)."""
    from nnfc.compiler.pipeline import CompileRequest
    return {f.name for f in dataclasses.fields(CompileRequest)}
