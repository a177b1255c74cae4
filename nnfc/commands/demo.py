"""``nnfc demo``: the end-to-end story on the shipped default factory.

For each target (desktop, android, jetson): profile it if the factory has no profile for it yet
(as many subnets as fit in about half a minute; jetson without a measured profile uses its
roofline estimate), then compile one task under a latency budget placed inside the range the
factory reaches for it, and print the report. For a detection factory it then runs each compiled
artifact on its own target over a few test scenes and draws the boxes into one PNG.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from nnfc.targets import TARGETS

DEFAULT_TARGETS = ("desktop", "android", "jetson")
MIN_SUBNETS = 12  # fewest subnets the demo profiles (the predictor's fit needs a dozen)
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


def _affordable_subnets(bundle, target, seconds: float = 30.0) -> int:
    """How many subnets profile in about ``seconds``: time the full supernet once (half of it is
    a fair average over random subnets) plus a fixed prune/lower/session cost per subnet."""
    import tempfile

    import onnx

    from nnfc.compiler.measure import measure
    from nnfc.compiler.profiler import random_gates
    from nnfc.passes import apply_gates
    names = [f"gate.{g['name']}" for g in bundle.gate_layers]
    sizes = [int(g["size"]) for g in bundle.gate_layers]
    with tempfile.TemporaryDirectory(prefix="nnfc-demo-") as tmp:
        t0 = time.perf_counter()
        pruned = apply_gates(onnx.load(str(bundle.supernet_path)),
                             random_gates(names, sizes, 1)[0])
        onnx.save_model(pruned, f"{tmp}/m.onnx")
        artifact = target.lower(f"{tmp}/m.onnx", tmp)
        overhead = time.perf_counter() - t0
        lat_s = measure(target, artifact, runs=5, warmup=1, rounds=1).latency_ms / 1e3
    per_subnet = overhead + 0.02 * 5 + 0.5 * lat_s * 12 * 5 * 1.5
    return int(min(250, max(MIN_SUBNETS, seconds / per_subnet)))


def _ms(ms: float) -> str:
    """A budget string a person would type: 450us, 1.2ms, 2.5s."""
    return f"{ms * 1000:.0f}us" if ms < 1 else (f"{ms:.3g}ms" if ms < 1000 else f"{ms / 1000:.3g}s")


def _predictor(bundle, target: str, subnets: int | None):
    """The bundle's predictor for ``target``; profiled first when there is none."""
    from nnfc.compiler.fitting import fit_and_save
    from nnfc.compiler.pipeline import default_profile_path, load_predictor_for, make_target
    from nnfc.compiler.profiler import profile_subnets
    from nnfc.errors import NnfcError
    from nnfc.targets import target_class

    try:
        return load_predictor_for(bundle, target)
    except NnfcError as exc:
        click.echo(f"profiling {target} first ({exc}) ...")
    pred_path = default_profile_path(bundle.root, target)
    options = dict(target_class(target).repeatable_options)
    tgt = make_target(target, options)
    t0 = time.perf_counter()
    count = subnets or _affordable_subnets(bundle, tgt)
    data = profile_subnets(bundle, tgt, pred_path.with_name(f"{target}.measurements.json"),
                           subnets=count, runs=10, warmup=2, rounds=5, resume=False)
    predictor, _ = fit_and_save(bundle, target, data, pred_path, pred_path.with_suffix(".png"),
                                target_options=options)
    acc = predictor.meta["accuracy"]
    click.echo(f"predictor: latency {acc['latency']['accuracy']:.1%}, memory "
               f"{acc['memory']['accuracy']:.1%} on {acc['latency']['n_test']} held-out "
               f"subnets ({count} profiled in {time.perf_counter() - t0:.0f} s) -> {pred_path}")
    return predictor


def detections_png(bundle, compiled: list[tuple[str, list[str], str, dict, Path]], path: Path,
                   scenes: int = 3) -> Path:
    """Each compiled artifact run by its own target on ``scenes`` test scenes of its task, boxes
    drawn (white: ground truth; magenta: detections), one row per target, one PNG."""
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
                                         title=f"{target_name}: {','.join(task)} <= {lat}, "
                                               f"{report['activation_ratio']:.0%} active"))
    return contact_sheet(tiles, path, columns=scenes)


@click.command()
@click.option("--bundle", "bundle_path", type=click.Path(), default=None,
              help="Factory bundle (default: the shipped default factory).")
@click.option("--target", "targets", multiple=True,
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
