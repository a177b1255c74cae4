"""``nnfc demo``: the end-to-end story on the shipped default factory.

Profiles the desktop target if the factory has no profile yet (a small number of subnets, about a
minute), then compiles the model for a few (task, budget) scenarios and prints each report.
"""

from __future__ import annotations

from pathlib import Path

import click

from nnfc.targets import DEFAULT_TARGET, TARGETS


def _scenarios(bundle, predictor, assembler) -> list[tuple[list[str], str | None, str | None]]:
    """Three scenarios: a tight latency budget, a looser one with memory, a memory-only one;
    budgets are placed inside the range the factory can reach for each task."""
    from nnfc.compiler.search import candidates

    seen, unseen = bundle.tasks("seen"), bundle.tasks("unseen")
    preferred = [["only-two", "odd"], ["only-one", "even"]]
    tasks = [t for t in preferred if set(t) <= set(bundle.attributes)]
    tasks += [t for t in seen + unseen if t not in tasks]
    picks: list[list[str]] = []
    for task in tasks[:2] + unseen[:1] + tasks[2:]:
        if task not in picks:
            picks.append(task)
    picks = picks[:3]
    out = []
    for i, task in enumerate(picks):
        _, _, lat, mem = candidates(assembler, predictor, bundle.encode_task(task))
        lo, hi = float(lat.min()), float(lat.max())
        mlo, mhi = float(mem.min()), float(mem.max())
        if i == 0:
            out.append((task, _ms(lo + 0.3 * (hi - lo) + 0.1 * lo), None))
        elif i == 1:
            out.append((task, _ms(lo + 0.7 * (hi - lo) + 0.1 * lo),
                        _mb((mlo + 0.8 * (mhi - mlo)) * 1.1)))
        else:
            out.append((task, None, _mb((mlo + 0.5 * (mhi - mlo)) * 1.1)))
    return out


def _affordable_subnets(bundle, target, seconds: float = 60.0) -> int:
    """How many subnets profile in about ``seconds``: time the full supernet once (half of it is
    a fair average over random subnets) plus a fixed prune/lower/session cost per subnet."""
    import tempfile
    import time

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
    return int(min(250, max(60, seconds / per_subnet)))


def _ms(ms: float) -> str:
    """A budget string a person would type: 450us, 1.2ms, 2.5s."""
    return f"{ms * 1000:.0f}us" if ms < 1 else (f"{ms:.3g}ms" if ms < 1000 else f"{ms / 1000:.3g}s")


def _mb(mb: float) -> str:
    return f"{mb * 1000:.0f}KB" if mb < 1 else f"{mb:.3g}MB"


@click.command()
@click.option("--bundle", "bundle_path", type=click.Path(), default=None,
              help="Factory bundle (default: the shipped default factory).")
@click.option("--target", default=DEFAULT_TARGET, show_default=True,
              help=f"Target to compile for ({', '.join(TARGETS)}).")
@click.option("-o", "--output", default="out/demo", show_default=True, type=click.Path(),
              help="Directory for the compiled scenarios.")
@click.option("--subnets", default=None, type=click.IntRange(20, None),
              help="Subnets to profile when the factory has no profile for the target yet "
                   "(default: as many as fit in about a minute, 60 to 250).")
def demo(bundle_path, target, output, subnets):
    """End-to-end demo: profile (if needed), then compile three task/budget scenarios."""
    from nnfc.bundle import default_bundle_path, read_bundle
    from nnfc.compiler.assembler_runtime import Assembler
    from nnfc.compiler.fitting import fit_and_save
    from nnfc.compiler.pipeline import (CompileRequest, compile_model, default_profile_path,
                                        load_predictor_for, make_target, summary)
    from nnfc.compiler.profiler import profile_subnets
    from nnfc.errors import NnfcError
    from nnfc.targets import target_class
    from nnfc.units import parse_latency_ms, parse_memory_mb

    root = Path(bundle_path) if bundle_path else default_bundle_path()
    if not root.exists():
        raise NnfcError(f"no factory at {root}; train one with `nnfc train --config "
                        "configs/numvqa-resnet.toml --out factories/default` or pass --bundle")
    bundle = read_bundle(root)
    click.echo(f"factory: {bundle.root} ({bundle.manifest['backbone']['family']}, "
               f"{len(bundle.gate_layers)} gate layers, {len(bundle.attributes)} attributes)")
    pred_path = default_profile_path(bundle.root, target)
    try:
        predictor = load_predictor_for(bundle, target)
    except NnfcError as exc:
        click.echo(f"profiling {target} first ({exc}) ...")
        options = dict(target_class(target).repeatable_options)
        tgt = make_target(target, options)
        meas = pred_path.with_name(f"{target}.measurements.json")
        if subnets is None:
            subnets = _affordable_subnets(bundle, tgt)
        data = profile_subnets(bundle, tgt, meas, subnets=subnets, runs=10, warmup=2,
                               rounds=5, resume=False)
        predictor, png = fit_and_save(bundle, target, data, pred_path,
                                      pred_path.with_suffix(".png"), target_options=options)
        acc = predictor.meta["accuracy"]
        click.echo(f"predictor: latency {acc['latency']['accuracy']:.1%}, memory "
                   f"{acc['memory']['accuracy']:.1%} on {acc['latency']['n_test']} held-out "
                   f"subnets -> {pred_path}")
    assembler = Assembler(bundle.assembler_path, predictor.structure.gates)
    failures = 0
    for i, (task, lat, mem) in enumerate(_scenarios(bundle, predictor, assembler), start=1):
        out = Path(output) / f"scenario{i}"
        flags = " ".join(x for x in (f"--lat {lat}" if lat else "", f"--mem {mem}" if mem else "")
                         if x)
        click.echo(f"\n[{i}] nnfc compile --bundle {bundle.root} --task {','.join(task)} "
                   f"--target {target} {flags} -o {out}")
        try:
            report = compile_model(CompileRequest(
                task=task, target=target, out=out, bundle=bundle.root,
                lat_ms=parse_latency_ms(lat) if lat else None,
                mem_mb=parse_memory_mb(mem) if mem else None, count_startup=False))
            click.echo(summary(report))
        except NnfcError as exc:
            failures += 1
            click.echo(f"  failed: {exc}")
    if failures == 3:
        raise NnfcError("every demo scenario failed (see above)")
    click.echo(f"\nreports: {Path(output)}/scenario*/report.json; compile your own with "
               f"`nnfc compile --task ATTR,ATTR --lat 1ms -o out/mine` "
               f"(attributes: {', '.join(bundle.attributes)})")
