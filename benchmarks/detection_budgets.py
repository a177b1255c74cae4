"""Latency budgets on the default (AttrOD detection) factory: the full supernet's desktop latency,
and `nnfc compile` at 0.8x, 0.6x and 0.4x of it, measured.

    .venv/bin/python benchmarks/detection_budgets.py --profile profiles/default-desktop.json

1. The full supernet (every gate on, joined to its decode graph: what a target runs) is lowered
   for the desktop target (ONNX Runtime, 1 intra-op thread, batch 1) and measured twice: by
   compile's own drift-cancelling Meter (call by call against the profile's reference subnet, in
   CPU time of the inference thread) and by the plain wall clock (best of rounds' medians).
2. For each task and each fraction f, `nnfc compile --task T --target desktop --lat f x full`
   runs (search, prune, lower, measure, refine); the table gives the limit it chose, the
   activation, predicted and measured latency, whether the budget binds (the next grid limit's
   prediction would break it), and a second, independent Meter measurement of the artifact.

Exit status 1 when a compile's measured latency exceeds its budget. The machine may be shared:
compare figures from one run only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

FRACTIONS = (0.8, 0.6, 0.4)


def default_tasks(bundle, predictor, assembler, count: int) -> list[list[str]]:
    """`red,car` (the headline task), then the seen tasks whose largest subnet is predicted
    slowest (where budgets bind first), a two-colour task and an unseen task."""
    from nnfc.compiler.search import candidates

    seen, unseen = bundle.tasks("seen"), bundle.tasks("unseen")
    slowest = sorted(seen, key=lambda t: -float(
        candidates(assembler, predictor, bundle.encode_task(t))[2].max()))
    picks: list[list[str]] = []
    for t in ([["red", "car"]] + slowest[:1] + [t for t in seen if len(t) > 2][:1] + unseen[:1]
              + slowest[1:]):
        if list(t) not in picks and set(t) <= set(bundle.attributes):
            picks.append(list(t))
    return picks[:count]


def full_supernet_latency(bundle, target, meter, work: Path) -> tuple[float, float]:
    """(drift-cancelled, wall-clock) latency in ms of the full supernet + decode graph."""
    import onnx

    from nnfc.compiler.measure import measure
    from nnfc.families.attrod.decode import deployable
    from nnfc.passes import apply_gates

    ones = {f"gate.{g['name']}": np.ones(int(g["size"]), np.float32) for g in bundle.gate_layers}
    full = deployable(apply_gates(onnx.load(str(bundle.supernet_path)), ones), bundle.manifest)
    onnx.save_model(full, str(work / "model.onnx"))
    artifact = Path(target.lower(work / "model.onnx", work))
    relative = meter(artifact)
    wall = measure(target, artifact, runs=20, warmup=5, rounds=5)
    return relative.latency_ms, wall.latency_ms


def main(argv: list[str] | None = None) -> int:
    from nnfc.bundle import default_bundle_path, read_bundle
    from nnfc.compiler.assembler_runtime import Assembler
    from nnfc.compiler.measured_rounds import Meter
    from nnfc.compiler.pipeline import (CompileRequest, compile_model, default_profile_path,
                                        load_predictor_for, make_target)

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None, help="factory (default: the shipped default)")
    ap.add_argument("--profile", default=None,
                    help="desktop predictor JSON (default: <bundle>/profiles/desktop.json)")
    ap.add_argument("--tasks", type=int, default=4, help="how many tasks (default 4)")
    ap.add_argument("--task", action="append", default=None,
                    help="a task as comma-separated attributes (repeatable; overrides --tasks)")
    ap.add_argument("--fractions", default=",".join(map(str, FRACTIONS)),
                    help="budgets as fractions of the full supernet's latency")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)

    bundle = read_bundle(args.bundle or default_bundle_path())
    predictor = load_predictor_for(bundle, "desktop", args.profile)
    target = make_target("desktop", predictor.meta.get("target_options"))
    profile_dir = Path(args.profile).parent if args.profile else \
        default_profile_path(bundle.root, "desktop").parent
    assembler = Assembler(bundle.assembler_path, predictor.structure.gates)
    tasks = [[a.strip() for a in t.split(",")] for t in args.task] if args.task else \
        default_tasks(bundle, predictor, assembler, args.tasks)
    fractions = [float(f) for f in args.fractions.split(",")]
    acc = predictor.meta["accuracy"]["latency"]["accuracy"]
    print(f"factory {bundle.root} (supernet sha256 "
          f"{bundle.manifest['files']['supernet.onnx'][:12]}…), target desktop "
          f"{predictor.meta.get('target_options')}, predictor latency accuracy {acc:.1%}, "
          f"safety margin {predictor.margins[0]:.1%}")
    with tempfile.TemporaryDirectory(prefix="nnfc-detbudget-") as tmp:
        tmp = Path(tmp)
        meter = Meter(target, predictor, CompileRequest(task=tasks[0], target="desktop",
                                                        out=tmp / "x"), profile_dir)
        (tmp / "full").mkdir()
        full_ms, wall_ms = full_supernet_latency(bundle, target, meter, tmp / "full")
        print(f"full supernet + decode, 1 thread, batch 1: {full_ms:.3f} ms (drift-cancelled, "
              f"as compile measures), {wall_ms:.3f} ms (wall clock, best of 5 rounds' medians)")
        print(f"full supernet >= 5 ms: {'yes' if full_ms >= 5 else 'NO'}\n")
        header = (f"{'task':22s} {'x full':>6s} {'budget':>9s} {'limit':>6s} {'act.':>6s} "
                  f"{'pred':>9s} {'meas':>9s} {'re-meas':>9s} {'use':>6s} {'bind':>4s} "
                  f"{'ok':>3s}")
        print(header)
        print("-" * len(header))
        rows = []
        for t_i, task in enumerate(tasks):
            for f in fractions:
                budget = f * full_ms
                out = tmp / f"t{t_i}-{f}"
                rep = compile_model(CompileRequest(task=task, target="desktop", out=out,
                                                   lat_ms=budget, bundle=bundle.root,
                                                   profile=args.profile, count_startup=False))
                meas = rep["measured"]["latency_ms"]["median"]
                again = meter(out / rep["artifact"]).latency_ms
                binding = bool(rep.get("budget_use", {}).get("latency", {}).get("binding"))
                rows.append({"task": task, "fraction": f, "budget_ms": budget,
                             "full_supernet_ms": full_ms, "limit": rep["limit"],
                             "activation_ratio": rep["activation_ratio"],
                             "predicted_ms": rep["predicted"]["latency_ms"],
                             "measured_ms": meas, "remeasured_ms": again,
                             "binding": binding, "within_budget": meas <= budget})
                print(f"{','.join(task)[:22]:22s} {f:6.1f} {budget:7.3f}ms "
                      f"{rep['limit']:6.2f} {rep['activation_ratio']:6.1%} "
                      f"{rows[-1]['predicted_ms']:7.3f}ms {meas:7.3f}ms {again:7.3f}ms "
                      f"{meas / budget:6.1%} {'yes' if binding else 'no':>4s} "
                      f"{'yes' if meas <= budget else 'NO':>3s}", flush=True)
    n, ok = len(rows), sum(r["within_budget"] for r in rows)
    again_ok = sum(r["remeasured_ms"] <= r["budget_ms"] for r in rows)
    print(f"\n{ok}/{n} compiles within budget as compile measured; {again_ok}/{n} also in the "
          f"independent re-measurement; the budget binds in "
          f"{sum(r['binding'] for r in rows)}/{n}")
    for f in fractions:
        use = [r["measured_ms"] / r["budget_ms"] for r in rows if r["fraction"] == f]
        print(f"  {f:.1f} x full ({f * full_ms:.2f} ms): budget use median {np.median(use):.1%}, "
              f"max {max(use):.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"full_supernet_ms": full_ms,
                                               "full_supernet_wall_ms": wall_ms,
                                               "rows": rows}, indent=1) + "\n")
    return 0 if ok == n else 1


if __name__ == "__main__":
    sys.exit(main())
