"""``nnfc compile``: the model for a task within a latency/memory budget on a target."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from nnfc.commands.options import AliasedOption, target_option

from nnfc.outputs import nonempty_path

from nnfc.errors import EXIT_OVER_BUDGET


@click.command("compile")
@click.option("--bundle", "bundle_path", type=click.Path(), default=None,
              help="Factory bundle directory (default: the shipped default factory).")
@click.option("--task", required=True,
              help="The task: the factory's attributes (red,car) or words (\"crimson cars\", "
                   "\"people in white\", \"red or blue cars\"); the resolution is printed.")
@target_option()
@click.option("--lat", default=None, help="Latency budget at batch 1, e.g. 5ms, 0.5s, 800us.")
@click.option("--mem", default=None,
              help="Memory budget (parameters + largest intermediate tensor), e.g. 50MB, 1GiB.")
@click.option("-o", "--output", required=True, type=click.Path(), callback=nonempty_path,
              help="Output directory: new, empty or an earlier compile output (replaced "
                   "atomically).")
@click.option("--force", is_flag=True,
              help="Also write into a non-empty directory that is not a compile output (adds "
                   "nnfc's files; never deletes or overwrites files nnfc did not write).")
@click.option("--profile", "profile_path", type=click.Path(), default=None,
              help="Predictor JSON (default: this machine's profile in the user's cache, "
                   "else one shipped in the bundle, <bundle>/profiles/<target>.json).")
@click.option("--search", "method", type=click.Choice(["batched", "algorithm1", "best"]),
              default="batched", show_default=True,
              help="batched: Algorithm 1's answer from one assembler call for every limit; "
                   "algorithm1: one call per limit, as the paper; best: the largest activation "
                   "that fits anywhere on the grid, not only before the first violation.")
@click.option("--step", default=0.01, show_default=True, type=click.FloatRange(0.001, 1.0),
              help="Limit step of the search grid (from 1%).")
@click.option("--margin", default=None, type=click.FloatRange(0.0, 1.0),
              help="Safety margin on predictions (default: the predictor's calibrated margin, "
                   "the 90th percentile of how far measurements exceeded cross-validated "
                   "predictions).")
@click.option("--runs", default=None, type=click.IntRange(1, None),
              help="Timed runs per measurement round (default: 5 artifact/reference pairs "
                   "where the profile has a reference subnet, else as the profile measured).")
@click.option("--rounds", default=None, type=click.IntRange(1, None),
              help="Measurement rounds (default: 3 against the reference subnet, median of the "
                   "rounds' ratios; else as the profile, the smallest median).")
@click.option("--warmup", default=None, type=click.IntRange(0, None),
              help="Untimed runs (default: 1 pair against the reference, else as the profile).")
@click.option("--refine-rounds", default=3, show_default=True, type=click.IntRange(1, 10),
              help="Measured rounds at most: when the artifact breaks the latency budget or "
                   "lands below 97% of it, step to the limit the measurement suggests and "
                   "measure again (1: measure once, the fastest compile; each further measured "
                   "subnet costs a prune, a lowering and a measurement).")
@click.option("--jetson-module", "--device", "device", default=None, cls=AliasedOption,
              hidden_aliases=("--device",),
              type=click.Choice(["orin-nano", "orin-nx", "agx-orin", "agx-xavier"]),
              help="jetson without a measured profile: estimate latency for this module "
                   "(roofline; default orin-nano). A measured profile always wins.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8", "auto"]),
              default="fp32", show_default=True,
              help="Numeric precision of the artifact. int8: static quantization calibrated on "
                   "the factory's own samples of the task, held to --max-drop of the family's "
                   "metric against the float artifact of the same subnet (the noisiest layers go "
                   "back to float one at a time); auto: the fastest precision the target builds "
                   "within --max-drop. Which precisions a target builds: see the README.")
@click.option("--max-drop", default=1.0, show_default=True, type=click.FloatRange(0.0, 100.0),
              help="Points of the family's metric (mAP@0.5 x 100, accuracy %) a reduced "
                   "precision may lose against float; beyond it compile exits 3.")
@click.option("--no-profile", is_flag=True,
              help="Fail instead of profiling this machine first when it has no profile of "
                   "the factory on the target (a first compile profiles for about half a "
                   "minute, once; the profile is kept in the user's cache).")
@click.option("--no-verify", is_flag=True, help="Skip the equivalence check vs the supernet.")
@click.option("--json", "as_json", is_flag=True, help="Print report.json to stdout.")
def compile_(bundle_path, task, target, lat, mem, output, force, profile_path, method, step,
             margin, runs, rounds, warmup, refine_rounds, device, precision, max_drop,
             no_profile, no_verify, as_json):
    """Build the model for TASK within --lat/--mem on a target: search, prune, lower, measure.

    Writes OUT/model.onnx (pruned), the target artifact, gates.json and report.json. Exit codes:
    0 within budget, 3 the measured artifact misses its budget or its precision loses more
    than --max-drop (the output is still written), 2 bad input or any other error (nothing
    written).

    \b
    Examples:
      nnfc compile --task red,car --lat 3ms -o out/red-car
      nnfc compile --task "crimson cars" --target android --lat 10ms --mem 20MB -o out/crimson
      nnfc compile --task red,car --lat 3ms --precision int8 -o out/red-car-int8
      nnfc compile --task red,car --lat 2ms --precision auto --max-drop 0.5 -o out/auto
    """
    from nnfc.compiler.pipeline import CompileRequest, compile_model, summary
    from nnfc.errors import NnfcError
    from nnfc.units import parse_latency_ms, parse_memory_mb

    if not task.strip(" ,"):
        raise NnfcError("--task needs at least one attribute, e.g. --task red,car")
    req = CompileRequest(task=task, target=target, out=Path(output),
                         lat_ms=parse_latency_ms(lat) if lat is not None else None,
                         mem_mb=parse_memory_mb(mem) if mem is not None else None,
                         bundle=Path(bundle_path) if bundle_path else None,
                         profile=Path(profile_path) if profile_path else None,
                         method=method, step=step, margin=margin, runs=runs, rounds=rounds,
                         warmup=warmup, device=device, refine_rounds=refine_rounds,
                         verify=not no_verify, force=force, precision=precision,
                         max_drop=max_drop, auto_profile=not no_profile)
    report = compile_model(req)
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        click.echo(summary(report))
        click.echo(f"  wrote {output}/ (model.onnx, {report['artifact']}, gates.json, "
                   "report.json)")
    prec = report.get("precision") or {}
    if prec.get("within_max_drop") is False:
        click.echo(f"nnfc: the {prec['built']} artifact loses {prec['metric']['drop_points']:.2f} "
                   f"points of {prec['metric']['name']} against float, more than --max-drop "
                   f"{max_drop:g}, with {len(prec['kept_float'])} layer(s) kept float "
                   f"(exit {EXIT_OVER_BUDGET}); {output}/ was still written", err=True)
        sys.exit(EXIT_OVER_BUDGET)
    if report.get("within_budget") is False:
        click.echo(f"nnfc: the measured artifact misses its budget (exit {EXIT_OVER_BUDGET}); "
                   f"{output}/ was still written", err=True)
        sys.exit(EXIT_OVER_BUDGET)
