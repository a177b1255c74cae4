"""``nnfc analyze``: the paper's analyses of a factory as pictures (PNG + the JSON behind each),
and ``nnfc analyze report`` with all of them and a static ``index.html``."""

from __future__ import annotations

import importlib
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from nnfc.outputs import nonempty_path

EPILOG = """\b
Examples:
  nnfc analyze report --task red,car --target desktop -o out/analysis
  nnfc analyze frontier --task red,car --target desktop -o out/frontier
  nnfc analyze frontier --task "crimson cars" --precision fp32,int8 -o out/frontier-int8
  nnfc analyze activation -o out/activation
  nnfc analyze predictor --target desktop --profile profiles/default-desktop.json -o out/pred
Every subcommand writes <name>.png and <name>.json into its -o directory (replaced atomically
when it holds an earlier nnfc analysis, else refused unless empty). Metric evaluations and new
latency measurements are cached per factory (~/.cache/nnfc/analysis, $NNFC_CACHE_DIR)."""


#: subnets this machine's cached profile is extended to for the predictor analysis
PROFILE_SUBNETS = 60


def _profile_subnets_option(f):
    return click.option("--profile-subnets", type=click.IntRange(20, None),
                        default=PROFILE_SUBNETS, show_default=True,
                        help="Extend this machine's cached profile to this many measured "
                             "subnets first when it has fewer (resumable, ~1-2 s a subnet; a "
                             "--profile file is never changed).")(f)


def _bundle_options(f):
    f = click.option("--no-cache", is_flag=True,
                     help="Neither read nor write the evaluation/measurement cache.")(f)
    f = click.option("--force", is_flag=True,
                     help="Write into a directory holding other files (never overwrites "
                          "them).")(f)
    f = click.option("--bundle", "bundle_dir", type=click.Path(file_okay=False), default=None,
                     help="Factory bundle (default: the shipped factory).")(f)
    return f


def _output_option(default: str):
    return click.option("-o", "--output", default=default, show_default=True,
                        type=click.Path(), callback=nonempty_path,
                        help="Output directory (PNG + JSON).")


def _target_options(f):
    f = click.option("--profile", type=click.Path(dir_okay=False), default=None,
                     help="Predictor profile JSON (default: the bundle's own, "
                          "<bundle>/profiles/<target>.json).")(f)
    f = click.option("--target", default="desktop", show_default=True,
                     help="Target whose profile and runtime are analysed.")(f)
    return f


def _precision_option(f):
    return click.option("--precision", default="fp32", show_default=True,
                        help="Frontier precisions, comma-separated: fp32 and int8 (the same "
                             "subnets quantized by onnxruntime's static QDQ, desktop; "
                             "~5 s more per subnet, cached).")(f)


def _task_option():
    return click.option("--task", default=None,
                        help="The task: attributes (red,car) or words (\"crimson cars\") as "
                             "compile takes them (default: the "
                             "demo's task: red,car on a detection factory, else the first "
                             "seen task).")


def _progress(desc: str) -> Callable:
    from tqdm import tqdm
    return lambda it: tqdm(it, desc=desc, leave=False, disable=None)


def _open(bundle_dir, target="desktop", profile=None, no_cache=False):
    from nnfc.analysis.context import Analysis
    return Analysis.open(bundle_dir, target, profile, use_cache=not no_cache)


def _task(a, task: str | None) -> list[str]:
    """The factory's attributes for ``--task`` (attributes or words, as compile takes them)."""
    from nnfc.commands.demo import demo_task
    from nnfc.task_text import resolve_for
    return resolve_for(a.bundle, task).attributes if task else demo_task(a.bundle)


def run_analysis(name: str, a, opts: dict[str, Any]) -> dict[str, Any]:
    """Compute analysis ``name`` with the options a subcommand (or the report) was given."""
    from nnfc.analysis import ANALYSES
    from nnfc.analysis.context import parse_limits
    module = importlib.import_module(ANALYSES[name])
    if name == "frontier":
        from nnfc.analysis.quantized import parse_precisions
        from nnfc.compiler.pipeline import make_target
        precisions = parse_precisions(opts.get("precision"), make_target(a.target))
        return module.compute(a, _task(a, opts.get("task")),
                              parse_limits(opts.get("limits"), module.DEFAULT_LIMITS),
                              opts.get("samples", 50), _progress("frontier"), precisions)
    if name == "activation":
        return module.compute(a, parse_limits(opts.get("limits"), module.DEFAULT_LIMITS))
    if name == "gates":
        return module.compute(a, _task(a, opts.get("task")), opts.get("limit", 0.5))
    if name == "predictor":
        a.ensure_profiled(opts.get("profile_subnets", PROFILE_SUBNETS))
        return module.compute(a, opts.get("repeats", 5), progress=_progress("predictor"))
    if name == "training":
        return module.compute(a)
    return module.compute(a, progress=_progress("environments"))


def _write(name: str, a, output: str, force: bool, opts: dict[str, Any]) -> None:
    """One subcommand: check -o first, compute, then write PNG + JSON atomically."""
    from nnfc.analysis import ANALYSES
    from nnfc.analysis.plotting import write_json
    from nnfc.outputs import check_output_dir, output_dir
    check_output_dir(output, "analysis", force=force, inputs=[a.bundle.root])
    module = importlib.import_module(ANALYSES[name])
    data = run_analysis(name, a, opts)
    with output_dir(output, "analysis", force=force, inputs=[a.bundle.root]) as tmp:
        write_json(tmp / f"{name}.json", data)
        module.plot(data, tmp / f"{name}.png")
    click.echo(module.summary(data))
    click.echo(f"wrote {Path(output) / f'{name}.png'} and {name}.json")


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
def analyze() -> None:
    """The paper's analyses of a factory as pictures: each subcommand writes a PNG and the JSON
    behind it; `report` writes all of them with an index.html that opens from disk."""


@analyze.command(epilog=EPILOG)
@_bundle_options
@_target_options
@_task_option()
@click.option("--limits", default=None,
              help="Activation limits, comma-separated fractions (default 0.02,0.03,0.05,0.07,"
                   "0.1,0.15,0.25,0.5,0.75,1).")
@click.option("--samples", type=click.IntRange(2, None), default=50, show_default=True,
              help="Test samples per subnet for the metric.")
@_precision_option
@_output_option("out/analyze/frontier")
def frontier(bundle_dir, no_cache, force, target, profile, task, limits, samples, precision,
             output):
    """Per limit: actual activation ratio, predicted and measured latency, memory, the task
    metric on the target's runtime, and the budget each point needs (frontier.json: {task,
    target, points: [{limit, activation_ratio, latency_ms, memory_mb, metric, ...}]})."""
    a = _open(bundle_dir, target, profile, no_cache)
    _write("frontier", a, output, force, {"task": task, "limits": limits, "samples": samples,
                                          "precision": precision})


@analyze.command(epilog=EPILOG)
@_bundle_options
@click.option("--limits", default=None, help="Activation limits (default: 25 from 1 % to 100 %, "
                                             "log-spaced).")
@_output_option("out/analyze/activation")
def activation(bundle_dir, no_cache, force, limits, output):
    """Actual activation ratio of the generated subnets vs the limit, seen and unseen tasks
    (Fig. 11; assembler only, seconds)."""
    _write("activation", _open(bundle_dir, no_cache=no_cache), output, force,
           {"limits": limits})


@analyze.command(epilog=EPILOG)
@_bundle_options
@_task_option()
@click.option("--limit", type=click.FloatRange(0, 1, min_open=True), default=0.5,
              show_default=True, help="Limit at which tasks are compared.")
@_output_option("out/analyze/gates")
def gates(bundle_dir, no_cache, force, task, limit, output):
    """Jaccard similarity of the generated gate vectors between tasks (grouped by shared
    attributes) and between the limits of one task (Fig. 15)."""
    _write("gates", _open(bundle_dir, no_cache=no_cache), output, force,
           {"task": task, "limit": limit})


@analyze.command(epilog=EPILOG)
@_bundle_options
@_target_options
@click.option("--repeats", type=click.IntRange(1, None), default=5, show_default=True,
              help="Random subsets per size.")
@_profile_subnets_option
@_output_option("out/analyze/predictor")
def predictor(bundle_dir, no_cache, force, target, profile, repeats, profile_subnets, output):
    """Share of held-out subnets predicted within ±5 % / ±10 % and the MAPE against the
    number of profiled subnets, by subsampling the profile's own measurements (Fig. 13)."""
    _write("predictor", _open(bundle_dir, target, profile, no_cache), output, force,
           {"repeats": repeats, "profile_subnets": profile_subnets})


@analyze.command(epilog=EPILOG)
@_bundle_options
@_output_option("out/analyze/training")
def training(bundle_dir, no_cache, force, output):
    """The metric against training epochs from the bundle's training history (Fig. 12)."""
    _write("training", _open(bundle_dir, no_cache=no_cache), output, force, {})


@analyze.command(epilog=EPILOG)
@_bundle_options
@_target_options
@_output_option("out/analyze/environments")
def environments(bundle_dir, no_cache, force, target, profile, output):
    """The full supernet's latency alone, beside 1/2/3 background processes running the same
    model, and with 1/2 threads (Fig. 2; wall clock; ~20 s)."""
    _write("environments", _open(bundle_dir, target, profile, no_cache), output, force, {})


@analyze.command(epilog=EPILOG)
@_bundle_options
@_target_options
@_task_option()
@click.option("--samples", type=click.IntRange(2, None), default=50, show_default=True,
              help="Test samples per subnet for the frontier's metric.")
@_profile_subnets_option
@_precision_option
@_output_option("out/analyze/report")
def report(bundle_dir, no_cache, force, target, profile, task, samples, profile_subnets,
           precision, output):
    """Every analysis (frontier, activation, gates, predictor, training, environments) into one
    directory with an index.html that opens from disk. An analysis that cannot be made (e.g. a
    profile without its measurement file) is named in the page and on stderr."""
    from nnfc.analysis import ANALYSES
    from nnfc.analysis.plotting import write_json
    from nnfc.analysis.report import index_html
    from nnfc.errors import NnfcError
    from nnfc.outputs import check_output_dir, output_dir

    a = _open(bundle_dir, target, profile, no_cache)
    check_output_dir(output, "analysis", force=force, inputs=[a.bundle.root])
    opts = {"task": task, "samples": samples, "profile_subnets": profile_subnets,
            "precision": precision}
    if not a.estimated:  # every analysis then reads the same, large enough profile
        a.ensure_profiled(profile_subnets)
    sections, t_all = [], time.perf_counter()
    for name in ANALYSES:
        t0 = time.perf_counter()
        click.echo(f"[{len(sections) + 1}/{len(ANALYSES)}] {name} ...", err=True)
        try:
            data = run_analysis(name, a, opts)
        except NnfcError as exc:
            click.echo(f"nnfc: warning: {name}: {exc}", err=True)
            sections.append({"name": name, "error": str(exc)})
            continue
        module = importlib.import_module(ANALYSES[name])
        sections.append({"name": name, "data": data, "summary": module.summary(data),
                         "seconds": time.perf_counter() - t0})
        click.echo(f"  {sections[-1]['summary']} ({sections[-1]['seconds']:.1f} s)", err=True)
    command = "nnfc analyze " + " ".join(shlex.quote(x) for x in sys.argv[2:]) \
        if len(sys.argv) > 2 and sys.argv[1] == "analyze" else "nnfc analyze report"
    with output_dir(output, "analysis", force=force, inputs=[a.bundle.root]) as tmp:
        for s in sections:
            if "data" in s:
                write_json(tmp / f"{s['name']}.json", s["data"])
                importlib.import_module(ANALYSES[s["name"]]).plot(s["data"],
                                                                  tmp / f"{s['name']}.png")
        write_json(tmp / "report.json", {
            "bundle": str(a.bundle.root), "target": target, "seconds": {
                s["name"]: s.get("seconds") for s in sections},
            "summaries": {s["name"]: s.get("summary", s.get("error")) for s in sections},
            "total_seconds": time.perf_counter() - t_all})
        (tmp / "index.html").write_text(index_html(
            f"nnfc analysis of {a.bundle.root.name} on {target}", sections, command),
            encoding="utf-8")
    click.echo(f"wrote {Path(output) / 'index.html'} ({len(sections)} analyses, "
               f"{time.perf_counter() - t_all:.0f} s)")
