"""``nnfc eval``: the task family's metric (accuracy, mAP@0.5, ...) and activation ratio of a
factory's pruned models per task and limit."""

from __future__ import annotations

import json
from pathlib import Path

import click


def _split_csv(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@click.command(help="For each task and limit: run the assembler, prune the supernet with the "
                    "gates, run the pruned ONNX model on the task's test split and report "
                    "the task family's metric (accuracy, map50) and the actual activation ratio "
                    "(like the paper's Table 2). "
                    "Without --task: every trained (seen) and held-out (unseen) task.")
@click.option("--bundle", "bundle_dir", type=click.Path(file_okay=False), default=None,
              help="Factory bundle directory (default: the shipped factory).")
@click.option("--task", "tasks", multiple=True,
              help="Task as comma-separated attributes, e.g. red,car (repeatable).")
@click.option("--limit", "limits", multiple=True,
              help="Activation limit(s) as fractions, e.g. 0.05,0.25 (default "
                   "0.05,0.1,0.25,0.5,1).")
@click.option("--samples", type=click.IntRange(2, None), default=200, show_default=True,
              help="Test samples per task.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per "
                                                       "(task, limit).")
@click.option("--data", "data", type=click.Path(dir_okay=False), default=None,
              help="Detection factories: test on this COCO instances JSON instead of the "
                   "factory's own test split (images: --images; colours: --colours).")
@click.option("--colours", "colours", type=click.Path(dir_okay=False), default=None,
              help="With --data: the colour file, {annotation id: [colour, ...]} (default: "
                   "colours.json beside --data).")
@click.option("--images", "images", type=click.Path(file_okay=False), default=None,
              help="With --data: the image folder (default: images/ beside --data).")
def eval_(bundle_dir: str | None, tasks: tuple[str, ...], limits: tuple[str, ...],
          samples: int, as_json: bool, data: str | None, colours: str | None,
          images: str | None) -> None:
    from tqdm import tqdm

    from nnfc.bundle import read_bundle
    from nnfc.factories import resolve_factory
    from nnfc.errors import NnfcError
    from nnfc.evaluation import (DEFAULT_LIMITS, evaluate_bundle, summary_rows, task_family_of,
                                 unseen_gaps)

    bundle = read_bundle(resolve_factory(bundle_dir))
    family = None
    if data is None and (colours or images):
        raise NnfcError("--colours and --images go with --data (a COCO instances file)")
    if data is not None:
        own = task_family_of(bundle)
        if not hasattr(own, "with_test_data"):
            raise NnfcError(f"--data: the factory's task family ({own.name}) does not read "
                            "COCO data; only detection factories do")
        family = own.with_test_data(data, colours or str(Path(data).with_name("colours.json")),
                                    images or "")
    task_list = [[a.strip() for a in t.split(",") if a.strip()] for t in tasks]
    if not task_list:
        task_list = bundle.tasks("seen") + bundle.tasks("unseen")
    try:
        limit_list = [float(x) for x in _split_csv(limits)] or list(DEFAULT_LIMITS)
    except ValueError as exc:
        raise NnfcError(f"--limit: {exc}") from exc
    rows = evaluate_bundle(bundle, task_list, limit_list, samples,
                           progress=lambda it: tqdm(it, desc="eval", unit="model",
                                                    disable=as_json, leave=False),
                           family=family)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows], indent=1))
        return
    metric = rows[0].metric if rows else "metric"
    click.echo(f"{'task':22s} {'seen':6s} {'limit':>6s} {metric:>9s} {'activation':>11s}")
    for r in rows:
        click.echo(f"{'{' + ', '.join(r.task) + '}':22s} {'seen' if r.seen else 'unseen':6s} "
                   f"{r.limit:6.0%} {r.value:9.3f} {r.activation_ratio:11.3f}")
    click.echo("")
    click.echo(f"{'group':8s} {'limit':>6s} {'tasks':>6s} {metric:>9s} {'activation':>11s} "
               f"{'max act.':>9s}")
    for s in summary_rows(rows):
        click.echo(f"{s['group']:8s} {s['limit']:6.0%} {s['tasks']:6d} {s[s['metric']]:9.3f} "
                   f"{s['activation_ratio']:11.3f} {s['max_activation_ratio']:9.3f}")
    gaps = unseen_gaps(rows)
    if gaps:
        click.echo("")
        click.echo("unseen tasks trail seen ones by (seen − unseen mean; ± standard error of the "
                   "unseen mean):")
        click.echo("  " + ", ".join(
            f"{g['limit']:.0%}: {g['gap']:+.3f}"
            + (f" ± {g['unseen_sem']:.3f}" if g["unseen_sem"] is not None else "")
            for g in gaps))
