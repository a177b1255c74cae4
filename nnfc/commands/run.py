"""``nnfc run PIPELINE.toml``: compile every scenario of a pipeline file in one process, then
benchmark the outputs like ``nnfc bench`` (optionally against a baseline), with the same JSON,
JUnit and Markdown outputs. A scenario that cannot be compiled (infeasible budget, bad task) or
misses its budget is reported; the others still run."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from nnfc.commands.options import target_choice

from nnfc.errors import NnfcError

log = logging.getLogger("nnfc")


def _compile_all(pipe) -> list[dict[str, Any]]:
    """Each scenario compiled into ``output/<name>``: its status, report or error."""
    from nnfc.compiler.pipeline import CompileRequest, compile_model
    from nnfc.factories import resolve_factory
    from nnfc.units import parse_latency_ms, parse_memory_mb

    bundle = resolve_factory(pipe.bundle) if pipe.bundle else None
    rows = []
    for i, sc in enumerate(pipe.scenarios, start=1):
        out = pipe.output / sc.name
        log.info("[%d/%d] %s: %s on %s, %s", i, len(pipe.scenarios), sc.name,
                 sc.task if isinstance(sc.task, str) else ",".join(sc.task), sc.target,
                 sc.budget_text())
        row: dict[str, Any] = {"name": sc.name, "task_text": sc.task if isinstance(
            sc.task, str) else ",".join(sc.task), "target": sc.target, "latency": sc.latency,
            "memory": sc.memory, "options": sc.options, "output": str(out)}
        try:
            options = dict(sc.options)
            if "profile" in options:
                options["profile"] = Path(options["profile"])
            req = CompileRequest(
                task=sc.task, target=sc.target, out=out, bundle=bundle,
                lat_ms=parse_latency_ms(sc.latency) if sc.latency else None,
                mem_mb=parse_memory_mb(sc.memory) if sc.memory else None,
                count_startup=False, **options)
            report = compile_model(req)
        except NnfcError as exc:
            row.update(status="failed", error=str(exc).splitlines()[0])
            log.warning("%s: %s", sc.name, row["error"])
        except TypeError as exc:  # an option CompileRequest does not take
            row.update(status="failed", error=f"bad scenario option: {exc}")
            log.warning("%s: %s", sc.name, row["error"])
        else:
            within = report.get("within_budget")
            if within is None:
                within = report.get("within_budget_predicted")
            not_measured = report["measured"].get("not_measured")
            row.update(status="within budget" if within else "over budget",
                       task=report["request"]["task"], limit=report["limit"],
                       activation_ratio=report["activation_ratio"],
                       artifact=report["artifact"], within_budget=bool(within),
                       measured=report["measured"].get("latency_ms") is not None,
                       **({"not_measured": not_measured} if not_measured else {}))
            log.info("  %s: limit %.0f%%, %s", sc.name, 100 * report["limit"], row["status"])
        rows.append(row)
    return rows


def _bench(ctx: click.Context, pipe, rows, save: Path) -> tuple[int, dict | None]:
    """``nnfc bench`` over the compiled outputs (saved to ``save``): (exit code, run)."""
    from nnfc.commands.bench import bench

    # what this machine cannot run (jetson without a GPU) is compiled and checked, not timed
    dirs = tuple(Path(r["output"]) for r in rows if r["status"] != "failed" and r["measured"])
    if not dirs:
        return 0, None
    opts = dict(pipe.bench)
    baseline = opts.pop("baseline", None)
    if baseline and not Path(baseline).is_file():
        log.info("no baseline yet (%s): measuring only", baseline)
        baseline = None
    for key in ("save", "junit", "markdown"):
        opts.pop(key, None)
    kwargs = {"artifacts": dirs, "save_file": save,
              "baseline_file": Path(baseline) if baseline else None,
              "evaluate": bool(opts.pop("eval", False))}
    renames = {"max_regression": "max_regression", "eval_samples": "eval_samples",
               "rounds": "rounds", "runs": "runs", "warmup": "warmup",
               "confidence": "confidence", "lat_stat": "lat_stat",
               "min_round_time": "min_round_ms"}
    kwargs.update({renames[k]: v for k, v in opts.items()})
    try:
        ctx.invoke(bench, **kwargs)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    from nnfc.benchmarking.record import load_run
    return code, load_run(save)


@click.command("run", epilog="""\b
Examples:
  nnfc run pipeline.toml
  nnfc run examples/github-actions/pipeline.toml --junit out/junit.xml --markdown -
  nnfc run pipeline.toml --no-bench      # compile only""")
@click.argument("pipeline", type=click.Path(path_type=Path))
@click.option("--baseline", "baseline_file", default=None, type=click.Path(path_type=Path),
              help="A saved run (bench.json) to compare with (overrides [bench] baseline; a "
                   "missing file: measure only).")
@click.option("--junit", "junit_file", default=None, type=click.Path(path_type=Path),
              help="JUnit XML: one test case per scenario's compile, artifact x metric "
                   "(default: [bench] junit, else OUTPUT/junit.xml).")
@click.option("--markdown", "markdown_file", default=None,
              help="Markdown summary (default: [bench] markdown, else OUTPUT/summary.md); '-' "
                   "prints it; $GITHUB_STEP_SUMMARY is appended to.")
@click.option("--target", "targets", multiple=True, type=target_choice(),
              help="Only the scenarios for this target (repeatable), e.g. one CI job per "
                   "target.")
@click.option("--no-bench", is_flag=True, help="Compile the scenarios only.")
@click.option("--json", "as_json", is_flag=True, help="Print the pipeline run as JSON.")
@click.pass_context
def run(ctx, pipeline, baseline_file, junit_file, markdown_file, targets, no_bench, as_json):
    """Compile every scenario of PIPELINE (a TOML file: factory, output directory, scenarios
    task x target x budget, [bench] options) in one process, then benchmark the outputs as
    `nnfc bench` does. Writes OUTPUT/<scenario>/ per scenario, OUTPUT/run.json (every
    scenario's status), OUTPUT/bench.json (the bench run, a baseline for later runs), JUnit
    and Markdown. The file format: see the README ("Pipelines").

    Exit codes: 0 every scenario compiled within budget and no regression; 1 a scenario
    failed or missed its budget, or a regression / bench budget; 2 a bad pipeline file.
    """
    from nnfc.atomic import write_json_atomic
    from nnfc.pipeline_file import load_pipeline
    from nnfc.pipeline_report import write_reports

    pipe = load_pipeline(pipeline)
    if targets:
        pipe.scenarios = [s for s in pipe.scenarios if s.target in targets]
        if not pipe.scenarios:
            raise NnfcError(f"{pipeline} has no scenario for target(s) {', '.join(targets)}")
    if baseline_file is not None:
        pipe.bench["baseline"] = str(baseline_file)
    from nnfc.outputs import check_output_file  # no clobbering, checked before any work
    junit = junit_file or pipe.bench.get("junit") or pipe.output / "junit.xml"
    markdown_out = markdown_file or pipe.bench.get("markdown") or pipe.output / "summary.md"
    check_output_file(pipe.output / "run.json", b'"format": "nnfc-run"', "run summary")
    from nnfc.benchmarking.outputs import check_replaceable
    from nnfc.pipeline_report import MARKER, SUITE
    check_replaceable(Path(junit), f'name="{SUITE}"'.encode(), "JUnit report")
    check_replaceable(Path(markdown_out), MARKER.encode(), "Markdown summary")
    pipe.output.mkdir(parents=True, exist_ok=True)
    rows = _compile_all(pipe)
    save = Path(pipe.bench.get("save") or pipe.output / "bench.json")
    code, bench_run = (0, None) if no_bench else _bench(ctx, pipe, rows, save)
    bad = [r["name"] for r in rows if r["status"] != "within budget"]
    result = {"format": "nnfc-run", "version": 1, "pipeline": str(pipeline),
              "scenarios": rows, "bench": str(save) if bench_run else None,
              "bench_exit_code": code, "exit_code": 1 if bad or code else 0}
    write_json_atomic(pipe.output / "run.json", result)
    write_reports(result, bench_run, junit, markdown_out)
    if as_json:
        click.echo(json.dumps(result, indent=1))
    else:
        for r in rows:
            click.echo(f"{r['name']:24s} {r['status']}" + (f": {r['error']}" if r.get("error")
                                                           else ""))
    if result["exit_code"]:
        click.echo(f"nnfc run: {len(bad)} of {len(rows)} scenario(s) failed or missed their "
                   f"budget" + (f"; bench exit {code}" if code else ""), err=True)
        sys.exit(1)
