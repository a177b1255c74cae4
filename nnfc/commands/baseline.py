"""``nnfc baseline retrain|prune-tune``: the paper's baselines for one task, measured like
``nnfc compile``'s output (same target settings, same report schema, plus accuracy)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from nnfc.commands.options import target_option

_COMMON = [
    click.option("--bundle", "bundle_path", type=click.Path(), default=None,
                 help="Factory bundle directory (default: the shipped default factory)."),
    click.option("--task", required=True,
                 help="Comma-separated attributes from the factory's vocabulary, e.g. "
                      "red,car."),
    target_option(),
    click.option("-o", "--output", required=True, type=click.Path(),
                 help="Output directory (written atomically at the end)."),
    click.option("--profile", "profile_path", type=click.Path(), default=None,
                 help="Predictor JSON (default: this machine's profile in the user's cache, "
                      "else <bundle>/profiles/<target>.json; see nnfc info); its target "
                      "settings and measurement rounds are used, as by nnfc compile."),
    click.option("--checkpoint-dir", type=click.Path(), default=None,
                 help="Training checkpoints (default: <output>.ckpt beside the output)."),
    click.option("--resume", is_flag=True,
                 help="Continue from the checkpoint; finished work is not redone."),
    click.option("--stop-after", type=click.IntRange(1, None), default=None,
                 help="Stop after this many epochs of this session (checkpoint only)."),
    click.option("--quiet", is_flag=True, help="No progress bars."),
    click.option("--json", "as_json", is_flag=True, help="Print report.json to stdout."),
]


def _common(fn):
    for option in reversed(_COMMON):
        fn = option(fn)
    return fn


def _budget(lat, mem):
    from nnfc.units import parse_latency_ms, parse_memory_mb
    return (parse_latency_ms(lat) if lat is not None else None,
            parse_memory_mb(mem) if mem is not None else None)


def _attrs(task: str) -> list[str]:
    return [a.strip() for a in task.split(",") if a.strip()]


def _show(report, output: str, as_json: bool) -> None:
    from nnfc.baselines.artifact import summary
    if report is None:
        return
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        click.echo(summary(report))
        click.echo(f"  wrote {output}/ (model.onnx, {report['artifact']}, report.json)")


@click.group("baseline")
def baseline() -> None:
    """The paper's baselines for one task: Retrain and Prune&Tune."""


@baseline.command("retrain")
@_common
@click.option("--lat", default=None, help="Latency budget (recorded; Retrain ignores it).")
@click.option("--mem", default=None, help="Memory budget (recorded; Retrain ignores it).")
@click.option("--epochs", type=click.IntRange(1, None), default=None,
              help="Training epochs (default: the factory's).")
def retrain_cmd(bundle_path, task, target, output, profile_path, checkpoint_dir, resume,
                stop_after, quiet, as_json, lat, mem, epochs):
    """Train the factory's network at full width on TASK from scratch, with the factory's
    recipe; export, measure on the target, score the test split."""
    from nnfc.baselines.retrain import RetrainRequest, retrain

    lat_ms, mem_mb = _budget(lat, mem)
    req = RetrainRequest(task=_attrs(task), target=target, out=Path(output), lat_ms=lat_ms,
                         mem_mb=mem_mb, bundle=Path(bundle_path) if bundle_path else None,
                         profile=Path(profile_path) if profile_path else None, epochs=epochs,
                         checkpoint=Path(checkpoint_dir) if checkpoint_dir else None,
                         resume=resume, progress=not quiet and not as_json,
                         stop_after=stop_after)
    _show(retrain(req, log=lambda m: click.echo(m, err=True)), output, as_json)


@baseline.command("prune-tune")
@_common
@click.option("--lat", default=None, help="Latency budget at batch 1, e.g. 5ms.")
@click.option("--mem", default=None, help="Memory budget, e.g. 50MB.")
@click.option("--importance", type=click.Choice(["magnitude", "taylor"]), default="magnitude",
              show_default=True, help="torch-pruning channel importance.")
@click.option("--step", type=click.FloatRange(0.001, 0.5), default=0.02, show_default=True,
              help="Share of each gated layer's channels pruned per step.")
@click.option("--global-ranking", is_flag=True,
              help="Rank channels across layers (default: the same share per layer).")
@click.option("--margin", type=click.FloatRange(0.0, 1.0), default=None,
              help="Safety margin on predictions (default: the predictor's held-out p90 error).")
@click.option("--epochs", type=click.IntRange(1, None), default=None,
              help="Fine-tuning epochs (default: 1/8 of the factory's).")
@click.option("--lr", type=click.FloatRange(0.0, None, min_open=True), default=None,
              help="Fine-tuning peak learning rate (default: the factory's).")
def prune_tune_cmd(bundle_path, task, target, output, profile_path, checkpoint_dir, resume,
                   stop_after, quiet, as_json, lat, mem, importance, step, global_ranking,
                   margin, epochs, lr):
    """Prune the factory's trained supernet (every gate on) with torch-pruning until the budget
    holds by the predictor, fine-tune on TASK; export, measure, score the test split."""
    from nnfc.baselines.prune_tune import PruneTuneRequest, prune_tune

    lat_ms, mem_mb = _budget(lat, mem)
    req = PruneTuneRequest(task=_attrs(task), target=target, out=Path(output), lat_ms=lat_ms,
                           mem_mb=mem_mb, bundle=Path(bundle_path) if bundle_path else None,
                           profile=Path(profile_path) if profile_path else None,
                           importance=importance, step=step, global_ranking=global_ranking,
                           margin=margin, epochs=epochs, lr=lr,
                           checkpoint=Path(checkpoint_dir) if checkpoint_dir else None,
                           resume=resume, progress=not quiet and not as_json,
                           stop_after=stop_after)
    _show(prune_tune(req, log=lambda m: click.echo(m, err=True)), output, as_json)
