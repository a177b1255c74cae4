"""``nnfc demo``: the end-to-end story on the shipped default factory.

For each target (desktop, android, jetson): profile it if the factory has no profile for it yet
(as many subnets as fit in about half a minute; jetson without a measured profile uses its
roofline estimate), then compile one task under a latency budget placed inside the range the
factory reaches for it, and print the report. For a detection factory it then runs each compiled
artifact on its own target over a few test scenes and draws the boxes into one PNG.
"""

from __future__ import annotations

from pathlib import Path

import click

from nnfc.commands.options import target_choice

from nnfc.compiler.auto_profile import MIN_SUBNETS
from nnfc.targets import TARGETS

DEFAULT_TARGETS = ("desktop", "android", "jetson")
#: tasks the demo prefers, where the factory knows their attributes
PREFERRED_TASKS = (["red", "car"], ["only-two", "odd"])


def demo_task(bundle) -> list[str]:
    """``red,car`` on a detection factory, ``only-two,odd`` on NumVQA, else the first
    seen task."""
    for task in PREFERRED_TASKS:
        if set(task) <= set(bundle.attributes):
            return list(task)
    return list(bundle.tasks("seen")[0])


def demo_budget(bundle, predictor, task: list[str]) -> str:
    """A latency budget 60 % of the way from the task's smallest to its largest predicted
    subnet (with the predictor's safety margin), so that it binds."""
    from nnfc.compiler.assembler_runtime import Assembler
    from nnfc.compiler.search import candidates

    assembler = Assembler(bundle.assembler_path, predictor.structure.gates)
    lat = candidates(assembler, predictor, bundle.encode_task(task))[2]
    lo, hi = float(lat.min()), float(lat.max())
    return _ms((lo + 0.6 * (hi - lo)) * (1 + predictor.margins[0]))


def _ms(ms: float) -> str:
    """A budget string a person would type: 450us, 1.2ms, 2.5s."""
    return f"{ms * 1000:.0f}us" if ms < 1 else (f"{ms:.3g}ms" if ms < 1000 else f"{ms / 1000:.3g}s")


def _predictor(bundle, target: str, subnets: int | None):
    """The bundle's predictor for ``target``; this machine profiled first when it has none."""
    from nnfc.compiler.auto_profile import profile_here
    from nnfc.compiler.pipeline import ProfileMissing, load_predictor_for

    try:
        return load_predictor_for(bundle, target)
    except ProfileMissing as exc:
        return profile_here(bundle, target, str(exc).split(";")[0], subnets)


def detections_png(bundle, compiled: list[tuple[str, list[str], str, dict, Path]], path: Path,
                   scenes: int = 3) -> Path:
    """Each compiled artifact run by its own target on ``scenes`` test scenes of its task, boxes
    drawn (dashed sky blue: ground truth; orange with its score: detections; a legend below),
    one row per target, one PNG."""
    from nnfc.benchmarking.evaluate import artifact_runner, deployed_output_names
    from nnfc.compiler.pipeline import make_target
    from nnfc.evaluation import task_family_of
    from nnfc.families.attrod.draw import contact_sheet, draw_detections

    family = task_family_of(bundle)
    in_name = bundle.input_spec.get("name", "input")
    tiles = []
    for target_name, task, lat, report, out in compiled:
        artifact = out / report["artifact"]
        target = make_target(target_name, report["runtime"].get("target_options") or None)
        names = deployed_output_names(out, artifact)
        run = artifact_runner(target, artifact, in_name, names)
        batch = family.test_batch(family.parse_task(task), scenes)
        for img, truth in zip(batch["image"], batch["gt_boxes"]):
            found = run(img[None])
            tiles.append(draw_detections(img, found["boxes"][0], found["scores"][0], truth,
                                         title=f"{target_name}: {','.join(task)}, latency budget "
                                               f"{lat}, {report['activation_ratio']:.0%} of "
                                               "channels on"))
    return contact_sheet(tiles, path, columns=scenes)


@click.command()
@click.option("--bundle", "bundle_path", type=click.Path(), default=None,
              help="Factory bundle (default: the shipped default factory).")
@click.option("--target", "targets", multiple=True, type=target_choice(),
              help=f"Target(s) to compile for ({', '.join(TARGETS)}; repeatable; default: "
                   f"{', '.join(DEFAULT_TARGETS)}).")
@click.option("-o", "--output", default="out/demo", show_default=True, type=click.Path(),
              help="Directory for the compiled models (one per target) and detections.png.")
@click.option("--subnets", default=None, type=click.IntRange(MIN_SUBNETS, None),
              help="Subnets to profile when the factory has no profile for a target yet "
                   f"(default: as many as fit in about half a minute, {MIN_SUBNETS} to 250).")
def demo(bundle_path, targets, output, subnets):
    """End-to-end demo: per target, profile (if needed) and compile one task under a latency
    budget; for a detection factory, a PNG of the compiled models' boxes on test scenes."""
    from nnfc.bundle import default_bundle_path, read_bundle
    from nnfc.compiler.pipeline import CompileRequest, compile_model, summary
    from nnfc.errors import NnfcError
    from nnfc.units import parse_latency_ms

    targets = list(dict.fromkeys(targets or DEFAULT_TARGETS))
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise NnfcError(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    root = Path(bundle_path) if bundle_path else default_bundle_path()
    if not root.exists():
        raise NnfcError(f"no factory at {root}; train one with `nnfc train --config "
                        "configs/attrod-resnet.toml --out factories/default` or pass --bundle")
    bundle = read_bundle(root)
    task = demo_task(bundle)
    click.echo(f"factory: {bundle.root} ({bundle.manifest['backbone']['family']}, "
               f"{len(bundle.gate_layers)} gate layers, {len(bundle.attributes)} attributes); "
               f"task {','.join(task)}")
    compiled, failed = [], []
    for i, target in enumerate(targets, start=1):
        out = Path(output) / target
        click.echo(f"\n[{i}/{len(targets)}] {target}")
        try:
            predictor = _predictor(bundle, target, subnets)
            lat = demo_budget(bundle, predictor, task)
            click.echo(f"nnfc compile --bundle {bundle.root} --task {','.join(task)} "
                       f"--target {target} --lat {lat} -o {out}")
            report = compile_model(CompileRequest(task=task, target=target, out=out,
                                                  bundle=bundle.root, lat_ms=parse_latency_ms(lat),
                                                  count_startup=False))
            click.echo(summary(report))
            compiled.append((target, task, lat, report, out))
        except NnfcError as exc:
            failed.append(target)
            click.echo(f"  {target} failed: {exc}")
    if not compiled:
        raise NnfcError("every demo target failed (see above)")
    if any(o.get("decode") for o in bundle.output_spec):
        png = detections_png(bundle, compiled, Path(output) / "detections.png")
        click.echo(f"\ndetections of the compiled models on test scenes: {png}")
    click.echo(f"\nreports: {Path(output)}/<target>/report.json; compile your own with "
               f"`nnfc compile --task {','.join(task)} --target desktop --lat 3ms -o out/mine` "
               f"(attributes: {', '.join(bundle.attributes)})")
    if failed:
        raise NnfcError(f"the demo failed on {', '.join(failed)} (see above)")
