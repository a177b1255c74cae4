"""``nnfc bench``: measure artifacts on their targets; gate CI on budgets and on regressions
against a saved baseline.

Exit codes: 0 = no regression and within every budget; 1 = a significant regression beyond a
``--max-regression`` threshold, or a ``--lat-budget`` / ``--mem-budget`` exceeded; 2 = bad input
(unknown target, unreadable file, missing runtime, foreign baseline).
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from nnfc.commands.options import AliasedOption, target_choice
from nnfc.errors import NnfcError

DEFAULT_ROUNDS, DEFAULT_RUNS, DEFAULT_WARMUP, DEFAULT_MIN_ROUND_MS = 15, 20, 5, 25.0


def resolve_artifact(path: Path, target: str | None) -> tuple[Path, str]:
    """The artifact file and target name for ``path``: a file, or a ``nnfc compile`` output
    directory (its report.json names the artifact and the target)."""
    from nnfc.targets import TARGETS, target_for_suffix
    if not path.exists():
        raise NnfcError(f"{path} does not exist")
    if path.is_dir():
        report_path = path / "report.json"
        if not report_path.is_file():
            raise NnfcError(f"{path} is a directory without report.json: give an artifact file "
                            f"(.onnx, .tflite, .engine) or a `nnfc compile` output directory")
        from nnfc.benchmarking.record import read_report
        report = read_report(report_path)
        artifact = path / report["artifact"]
        compiled_for = report["request"]["target"]
        if (not isinstance(report["artifact"], str) or Path(report["artifact"]).name
                != report["artifact"] or path.resolve() not in artifact.resolve().parents):
            raise NnfcError(f"{report_path}: artifact {report['artifact']!r} must be a file "
                            f"name inside {path}")
        return artifact, target or compiled_for
    if target is None:
        target = target_for_suffix(path.suffix)
        if target is None:
            raise NnfcError(f"cannot tell the target of {path.name} from its suffix; "
                            f"give --target ({', '.join(TARGETS)})")
    return path, target


def compile_report(path: Path) -> dict[str, Any] | None:
    """The report.json of a ``nnfc compile`` output directory (None for a plain file)."""
    if not path.is_dir():
        return None
    from nnfc.benchmarking.record import read_report
    return read_report(path / "report.json")


def within_budgets(result, lat_ms: float | None, mem_mb: float | None, stat: str
                   ) -> list[str]:
    """Budget violations as human lines (empty: within budget)."""
    from nnfc.units import format_mb, format_ms
    violations = []
    latency = result.median_ms if stat == "median" else result.p90_ms
    if lat_ms is not None and latency > lat_ms:
        violations.append(f"latency {stat} {format_ms(latency)} > budget {format_ms(lat_ms)}")
    if mem_mb is not None and result.peak_memory_mb > mem_mb:
        violations.append(f"peak memory {format_mb(result.peak_memory_mb)} > budget "
                          f"{format_mb(mem_mb)}")
    return violations


@dataclass
class Item:
    """One artifact named on the command line, ready to measure."""

    name: str                    # as given (the key a baseline is matched by)
    artifact: Path               # the file nnfc emitted
    target_name: str
    options: dict
    report: dict | None          # report.json of a compile output directory
    measured: Path | None = None  # what is benchmarked (a lowered copy for .onnx on android)
    subject: Any = None
    baseline: dict | None = None  # the saved baseline entry
    baseline_subject: Any = None
    eval: dict | None = None
    changes: list = field(default_factory=list)


def _target_options(target_name: str, report: dict | None, threads: int | None,
                    device: str | None) -> dict:
    """The options the artifact was compiled and profiled with, overridden by the CLI."""
    from nnfc.targets import supported_options, target_class
    options = dict(target_class(target_name).repeatable_options)
    if report:
        options.update(supported_options(target_name, dict(
            (report.get("runtime") or {}).get("target_options") or {})))
    options.update(supported_options(target_name, {"threads": threads, "device": device}))
    if device and "device" not in options:
        raise NnfcError(f"--device applies to targets that take a device serial, not "
                        f"{target_name}")
    return options


def _prepare(arg: Path, target: str | None, threads: int | None, device: str | None) -> Item:
    from nnfc.targets import target_class, target_for_suffix
    path, target_name = resolve_artifact(arg, target)
    cls = target_class(target_name)
    if not path.is_file():
        raise NnfcError(f"artifact {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in cls.artifact_suffixes and suffix != ".onnx":
        owner = target_for_suffix(suffix)
        kind = f"a {owner} artifact: bench it with --target {owner}" if owner else \
            f"not an artifact {target_name} runs ({', '.join(cls.artifact_suffixes)})"
        raise NnfcError(f"{path.name} is {kind}")
    report = compile_report(arg)
    return Item(str(arg), path, target_name, _target_options(target_name, report, threads,
                                                             device), report)


def _lowered(item_artifact: Path, target, tmp: Path, quiet: bool) -> Path:
    """The file to benchmark: the artifact, or an ``.onnx`` lowered for a target that runs
    another format (android converts to TFLite first)."""
    if item_artifact.suffix.lower() in type(target).artifact_suffixes:
        return item_artifact
    if not quiet:
        click.echo(f"lowering {item_artifact.name} for the {target.name} target...", err=True)
    out = Path(tempfile.mkdtemp(dir=tmp))
    return Path(target.lower(item_artifact, out))


def _memory(item: Item, runtime_mb: float) -> tuple[float, str]:
    """nnfc's model memory (parameters + largest intermediate tensor; exact) where known, else
    the runtime's peak memory."""
    if item.report:
        mem = (item.report.get("measured") or {}).get("memory_mb")
        if mem is not None:
            return float(mem), "model"
    if item.artifact.suffix.lower() == ".onnx":
        try:
            from nnfc.compiler.graph_stats import graph_stats
            from nnfc.onnx_io import load_onnx
            return graph_stats(load_onnx(item.artifact)).memory_mb, "model"
        except Exception:  # noqa: BLE001 - runtime-specific ops: fall back to the runtime's figure
            pass
    return runtime_mb, "runtime"


def _reference_subject(tmp: Path):
    """The reference model (measured every round; normalizes comparisons with saved rounds)."""
    from nnfc.benchmarking.reference import write_reference
    from nnfc.benchmarking.rounds import Subject
    from nnfc.targets import get_target
    return Subject("reference", write_reference(tmp),
                   lambda: get_target("desktop", threads=1))


def _progress(enabled: bool, message: str):
    """Progress of the rounds: ``message`` then a bar (both on stderr), once calibrated."""
    def start(total: int):
        from tqdm import tqdm
        if enabled:
            click.echo(message, err=True)
        bar = tqdm(total=total, desc="bench rounds", unit="call", disable=not enabled,
                   leave=False, mininterval=1.0)
        return lambda: bar.update(1)
    return start


def _entry(item: Item, save_path: Path | None, budgets, lat_stat: str) -> dict[str, Any]:
    import numpy as np

    from nnfc.benchmarking.record import relative_to_save, sha256_of
    from nnfc.benchmarking.side_by_side import precision_of
    from nnfc.targets import BenchResult
    s = item.subject
    med = float(np.median(s.round_medians))
    p90 = float(np.median(s.round_p90s))
    runtime_mb = float(max(s.runtime_memory_mb))
    memory, source = _memory(item, runtime_mb)
    violations = within_budgets(BenchResult(med, p90, memory, 0), *budgets, lat_stat)
    return {
        "name": item.name,
        "artifact": relative_to_save(item.artifact, save_path),
        "sha256": sha256_of(item.artifact),
        "target": item.target_name,
        "target_options": item.options,
        "task": (item.report or {}).get("request", {}).get("task"),
        "precision": precision_of(item.report),
        "latency_ms": {"median": med, "best": float(min(s.round_medians)), "p90": p90,
                       "rounds": [float(x) for x in s.round_medians],
                       "runs_per_round": s.runs},
        "memory_mb": memory, "memory_source": source, "runtime_memory_mb": runtime_mb,
        "runtime": s.details.get("runtime"),
        "eval": item.eval,
        "violations": violations,
        "comparison": None,
    }


def _compare(item: Item, entry: dict, baseline_run: dict, reference: dict, thresholds: dict,
             confidence: float) -> dict[str, Any]:
    from nnfc.benchmarking import compare
    base = item.baseline
    if item.baseline_subject is not None:
        lat = compare.paired_latency_change(item.baseline_subject.round_medians,
                                            item.subject.round_medians, thresholds["lat"],
                                            confidence)
    else:
        rounds = base["latency_ms"].get("rounds") or []
        if len(rounds) < 3:
            raise NnfcError(f"baseline {baseline_run['_path']}: {base['name']} has fewer than 3 "
                            "latency rounds; save it with a newer `nnfc bench --save`")
        ref = baseline_run.get("reference") or {}
        normalize = (ref.get("version") == reference["version"] and len(ref.get("rounds", []))
                     == len(rounds))
        lat = compare.unpaired_latency_change(
            rounds, item.subject.round_medians, thresholds["lat"], confidence,
            reference=(ref["rounds"], reference["rounds"]) if normalize else None)
    changes = [lat, compare.exact_change("mem", base.get("memory_mb"), entry["memory_mb"],
                                         thresholds["mem"])]
    if item.eval is not None:
        base_eval = base.get("eval") or {}
        same = all(base_eval.get(k) == item.eval[k] for k in ("metric", "samples", "seed"))
        changes.append(compare.exact_change("acc", base_eval.get("value") if same else None,
                                            item.eval["value"], thresholds["acc"]))
    return {"baseline": {"name": base["name"], "sha256": base.get("sha256"),
                         "artifact_available": item.baseline_subject is not None,
                         "rounds_here": [float(x) for x in item.baseline_subject.round_medians]
                         if item.baseline_subject is not None else None,
                         "memory_source": base.get("memory_source")},
            "changes": [c.to_json() for c in changes],
            "regression": any(c.regression for c in changes)}


def _print_entry(e: dict[str, Any]) -> None:
    from nnfc.benchmarking.report_rows import (changes_by_metric, format_change, format_value,
                                               verdict)
    from nnfc.units import format_mb, format_ms
    lat = e["latency_ms"]
    ch = changes_by_metric(e)
    opts = ", ".join(f"{k} {v}" for k, v in e["target_options"].items())
    click.echo(f"{e['name']}  ({e['target']}, {e.get('runtime') or '?'}"
               + (f", {opts}" if opts else "") + ")")

    def vs(key: str) -> str:
        c = ch.get(key)
        if not c:
            return ""
        if c.get("change") is None:
            return "   vs baseline: -"
        how = {"paired": "interleaved", "unpaired": "vs saved rounds",
               "unpaired-normalized": "vs saved rounds, relative to the reference model"
               }.get(c["method"], "")
        return (f"   vs baseline {format_value(key, c['baseline'])}: {format_change(c)}"
                + (f" {how}" if how else "") + f"  {verdict(c)}")

    click.echo(f"  latency  median {format_ms(lat['median'])} (best {format_ms(lat['best'])}, "
               f"p90 {format_ms(lat['p90'])}; {len(lat['rounds'])} rounds){vs('lat')}")
    runtime = (f"; runtime {format_mb(e['runtime_memory_mb'])}"
               if e["memory_source"] != "runtime" else "")
    click.echo(f"  memory   {format_mb(e['memory_mb'])} ({e['memory_source']}{runtime})"
               f"{vs('mem')}")
    if e.get("eval"):
        ev = e["eval"]
        click.echo(f"  {ev['metric']:8s} {format_value('acc', ev['value'])} ({ev['samples']} "
                   f"test samples){vs('acc')}")
    if e.get("_budgeted"):
        click.echo("  budget   " + ("OK" if not e["violations"] else
                                    "EXCEEDED: " + "; ".join(e["violations"])))


def _trend(files: tuple[Path, ...], plot: str | None, as_json: bool) -> None:
    from nnfc.benchmarking.record import load_run
    from nnfc.benchmarking.trend import plot_trend, trend_table, trend_text
    if len(files) < 1:
        raise NnfcError("--trend takes one or more runs saved with `nnfc bench --save`")
    runs = [load_run(f) for f in files]
    if as_json:
        table = trend_table(runs)
        click.echo(json.dumps({name: [None if e is None else {
            "latency_ms": e["latency_ms"]["median"], "memory_mb": e["memory_mb"],
            "eval": e.get("eval")} for e in entries] for name, entries in table.items()},
            indent=1))
    else:
        click.echo(trend_text(runs))
    if plot:
        path = plot_trend(runs, plot)
        if not as_json:
            click.echo(f"plot: {path}")


@click.command("bench")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--target", default=None, type=target_choice(),
              help="Target of every ARTIFACT (default: the target a compile output was built "
                   "for, or the one whose artifacts end with the file's suffix: .onnx desktop, "
                   ".tflite android, .engine jetson). An .onnx file given for a target that "
                   "runs another format is lowered first.")
@click.option("--rounds", default=DEFAULT_ROUNDS, show_default=True,
              type=click.IntRange(3, None),
              help="Measurement rounds per artifact; rounds of all artifacts and their "
                   "baselines are interleaved.")
@click.option("--runs", default=DEFAULT_RUNS, show_default=True, type=click.IntRange(1, None),
              help="Timed runs (batch 1) per round, at least (see --min-round-time); each "
                   "round keeps its median.")
@click.option("--min-round-time", "min_round_ms", default=DEFAULT_MIN_ROUND_MS,
              show_default=True, type=click.FloatRange(0, None), metavar="MS",
              help="Each round lasts at least this many ms (more runs for a fast model), so "
                   "that a burst of load on a shared machine hits few rounds.")
@click.option("--warmup", default=DEFAULT_WARMUP, show_default=True,
              type=click.IntRange(0, None), help="Untimed warm-up runs per round.")
@click.option("--threads", default=None, type=click.IntRange(1, None),
              help="Runtime threads, for targets that take them (default: the setting the "
                   "artifact was compiled with; desktop 1, android min(4, cores)).")
@click.option("--adb-serial", "--device", "device", default=None, metavar="SERIAL",
              cls=AliasedOption, hidden_aliases=("--device",),
              help="android: benchmark on this adb device with TFLite's benchmark_model "
                   "instead of LiteRT on this machine.")
@click.option("--lat", "--lat-budget", "lat_budget", default=None, metavar="LATENCY",
              cls=AliasedOption, hidden_aliases=("--lat-budget",),
              help="Fail (exit 1) when an artifact's latency exceeds this, e.g. 20ms, 0.5s.")
@click.option("--lat-stat", type=click.Choice(["median", "p90"]), default="median",
              show_default=True, help="Which latency the budget applies to.")
@click.option("--mem", "--mem-budget", "mem_budget", default=None, metavar="MEMORY",
              cls=AliasedOption, hidden_aliases=("--mem-budget",),
              help="Fail (exit 1) when an artifact's memory exceeds this, e.g. 300MB.")
@click.option("--baseline", "baseline_file", default=None, type=click.Path(path_type=Path),
              help="A run saved with --save (e.g. on main): compare each artifact with its "
                   "entry there (matched by the name given on the command line). Where the "
                   "baseline's artifact file is still present unchanged, its rounds are "
                   "measured interleaved with the candidate's (paired); otherwise the "
                   "candidate is compared with the saved rounds.")
@click.option("--max-regression", default=None, metavar="lat=5%,mem=1%,acc=1pt",
              help="Thresholds: exit 1 only when a change is significant AND beyond them "
                   "(defaults lat=5%, mem=1%, acc=1pt).")
@click.option("--confidence", default=0.99, show_default=True,
              type=click.FloatRange(0.5, 0.9999),
              help="Confidence level of the latency change's interval.")
@click.option("--eval", "evaluate", is_flag=True,
              help="Also run the factory's metric (accuracy, mAP) for the artifact's task on "
                   "its test split (compile output directories).")
@click.option("--eval-samples", default=200, show_default=True, type=click.IntRange(2, None),
              help="Test samples for --eval.")
@click.option("--save", "save_file", default=None, type=click.Path(path_type=Path),
              help="Write this run as JSON (a baseline for later runs, a point of --trend).")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.option("--junit", "junit_file", default=None, type=click.Path(path_type=Path),
              help="Write JUnit XML: one test case per artifact x metric.")
@click.option("--markdown", "markdown_file", default=None, type=click.Path(path_type=Path),
              help="Write a Markdown table; '-' prints it, $GITHUB_STEP_SUMMARY is appended "
                   "to (e.g. --markdown \"$GITHUB_STEP_SUMMARY\").")
@click.option("--trend", is_flag=True,
              help="ARTIFACTS are runs saved with --save: print each artifact's figures run "
                   "after run (with --plot: a PNG).")
@click.option("--plot", "plot_file", default=None, type=click.Path(path_type=Path),
              help="With --trend: write the trend plot (PNG; needs matplotlib).")
def bench(artifacts: tuple[Path, ...], target: str | None, rounds: int, runs: int,
          min_round_ms: float, warmup: int,
          threads: int | None, device: str | None, lat_budget: str | None, lat_stat: str,
          mem_budget: str | None, baseline_file: Path | None, max_regression: str | None,
          confidence: float, evaluate: bool, eval_samples: int, save_file: Path | None,
          as_json: bool, junit_file: Path | None, markdown_file: Path | None, trend: bool,
          plot_file: Path | None) -> None:
    """Measure the latency and memory of one or more ARTIFACTS on their targets; compare them
    with a saved baseline; gate CI.

    ARTIFACT is a file nnfc emitted (model.ort.onnx, model.tflite, model.engine), any ONNX or
    TFLite file, or a `nnfc compile` output directory. Artifacts of the same task are printed
    side by side against the first one (speed from the interleaved rounds, metric points
    with --eval), e.g. `nnfc bench out/fp32 out/int8 --eval`. Exit codes: 0 = fine; 1 = a significant
    regression beyond --max-regression, or a budget exceeded; 2 = bad input.
    """
    from nnfc.benchmarking import compare
    from nnfc.benchmarking.junit import write_junit
    from nnfc.benchmarking.markdown import write_markdown
    from nnfc.benchmarking.outputs import check_replaceable
    from nnfc.benchmarking.record import (FORMAT, VERSION, baseline_artifact, baseline_entry,
                                          host_info, load_run)
    from nnfc.benchmarking.rounds import Subject, run_rounds
    from nnfc.benchmarking.side_by_side import side_by_side, side_by_side_lines
    from nnfc.targets import get_target
    from nnfc.units import parse_latency_ms, parse_memory_mb

    if trend:
        return _trend(artifacts, str(plot_file) if plot_file else None, as_json)
    if plot_file:
        raise NnfcError("--plot draws the trend of saved runs: use it with --trend")
    lat_ms = parse_latency_ms(lat_budget) if lat_budget is not None else None
    mem_mb = parse_memory_mb(mem_budget) if mem_budget is not None else None
    thresholds = compare.parse_thresholds(max_regression)
    baseline_run = load_run(baseline_file) if baseline_file else None
    if save_file is not None:
        if str(save_file) == "-":
            raise NnfcError("--save needs a file (for the run on standard output use --json)")
        check_replaceable(save_file, b'"format": "nnfc-bench"', "saved run")
    for f, marker in ((junit_file, b'name="nnfc bench"'), (markdown_file, b"<!-- nnfc bench")):
        if f is not None:
            check_replaceable(f, marker, "report")
    items = [_prepare(a, target, threads, device) for a in artifacts]
    if evaluate and any(i.report is None for i in items):
        raise NnfcError(f"--eval needs `nnfc compile` output directories (their report.json "
                        f"names the task and the factory); "
                        f"{next(i.name for i in items if i.report is None)} is a file")
    names = [i.name for i in items]
    if len(set(names)) != len(names):
        raise NnfcError("the same artifact is named twice")

    host = host_info()
    with tempfile.TemporaryDirectory(prefix="nnfc-bench-") as tmp:
        for item in items:
            def make(item=item):
                return get_target(item.target_name, **item.options)
            tgt = make()
            item.measured = _lowered(item.artifact, tgt, Path(tmp), as_json)
            item.subject = Subject(item.name, item.measured, make, tgt)
            if baseline_run is not None:
                item.baseline = baseline_entry(baseline_run, item.name)
                if item.baseline and item.baseline.get("target") != item.target_name:
                    raise NnfcError(f"{item.name}: the baseline measured it on "
                                    f"{item.baseline.get('target')}, this run on "
                                    f"{item.target_name}")
                base_path = baseline_artifact(baseline_run, item.baseline) \
                    if item.baseline else None
                if base_path is not None:
                    item.baseline_subject = Subject(
                        f"baseline {item.name}", _lowered(base_path, tgt, Path(tmp), True), make)
        paired = sum(i.baseline_subject is not None for i in items)
        message = (f"measuring {len(items)} artifact(s)"
                   + (f" interleaved with {paired} baseline artifact(s)" if paired else "")
                   + f": {rounds} rounds of >= {min_round_ms:g} ms (load {host['load'][0]:.2f})")
        ref_subject = _reference_subject(Path(tmp))
        run_rounds([(i.baseline_subject, i.subject) for i in items] + [(None, ref_subject)],
                   rounds, runs, warmup, min_round_ms, _progress(not as_json, message))
        from nnfc.benchmarking.reference import VERSION as REFERENCE_VERSION
        reference = {"version": REFERENCE_VERSION,
                     "rounds": [float(x) for x in ref_subject.round_medians]}
        if evaluate:
            from nnfc.benchmarking.evaluate import evaluate_artifact
            for item in items:
                item.eval = evaluate_artifact(item.report, item.subject.target, item.measured,
                                              Path(item.name), eval_samples)
    host["load_before"], host["load_after"] = host.pop("load"), host_info()["load"]

    budgeted = lat_ms is not None or mem_mb is not None
    entries = []
    for item in items:
        e = _entry(item, save_file, (lat_ms, mem_mb), lat_stat)
        if item.baseline is not None:
            e["comparison"] = _compare(item, e, baseline_run, reference, thresholds, confidence)
        entries.append(e)
    regression = any((e["comparison"] or {}).get("regression") for e in entries)
    over = any(e["violations"] for e in entries)
    run = {"format": FORMAT, "version": VERSION,
           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "host": host,
           "settings": {"rounds": rounds, "runs": runs, "min_round_ms": min_round_ms,
                        "warmup": warmup,
                        "confidence": confidence, "thresholds": thresholds,
                        "budget": {"latency_ms": lat_ms, "latency_stat": lat_stat,
                                   "memory_mb": mem_mb},
                        "eval_samples": eval_samples if evaluate else None},
           "baseline": str(baseline_file) if baseline_file else None,
           "reference": reference,
           "artifacts": entries, "side_by_side": side_by_side(entries),
           "regression": regression, "over_budget": over,
           "exit_code": 1 if regression or over else 0}

    from nnfc.atomic import write_json_atomic
    if save_file is not None:
        write_json_atomic(save_file, run)
    if junit_file is not None:
        write_junit(junit_file, run)
    if markdown_file is not None:
        write_markdown(markdown_file, run)
    if as_json:
        click.echo(json.dumps(run, indent=1))
    else:
        for e in entries:
            _print_entry({**e, "_budgeted": budgeted})
        for line in side_by_side_lines(run["side_by_side"]):
            click.echo(line)
        missing = [e["name"] for e in entries if baseline_run and e["comparison"] is None]
        if missing:
            click.echo(f"no baseline entry for: {', '.join(missing)}")
        if baseline_run is not None:
            flagged = [f"{e['name']} {c['metric']}" for e in entries
                       for c in (e["comparison"] or {}).get("changes", []) if c["regression"]]
            click.echo(("REGRESSION: " + ", ".join(flagged)) if flagged else
                       f"no significant regression beyond latency +{100 * thresholds['lat']:g}%, "
                       f"memory +{100 * thresholds['mem']:g}%, metric -{thresholds['acc']:g} pt")
    if regression or over:
        sys.exit(1)
