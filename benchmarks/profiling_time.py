"""Profiling time per subnet, desktop and android side by side on the same subnets.

Profiles the same ``--subnets`` random subnets (seed 0) of a factory on each target in turn, in
one process, each into a fresh measurement file (the reference subnet and, on android, the
first onnx2tf conversion, which imports TensorFlow once, are counted apart), and prints per
target the wall and CPU seconds per subnet (prune + lower + measure), the lowering part, and how
android lowered its subnets (derived from a conversion of the same graph vs converted).

    .venv/bin/python benchmarks/profiling_time.py --bundle factories/default --subnets 30
    .venv/bin/python benchmarks/profiling_time.py --bundle <resnet18-128 fixture> --rounds 6
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from nnfc.bundle import default_bundle_path, read_bundle
    from nnfc.compiler.pipeline import make_target
    from nnfc.compiler.profiler import profile_subnets
    from nnfc.targets import target_class

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--targets", default="desktop,android")
    ap.add_argument("--subnets", type=int, default=30)
    ap.add_argument("--runs", type=int, default=10, help="timed runs per round")
    ap.add_argument("--rounds", type=int, default=10, help="as nnfc profile --rounds")
    args = ap.parse_args(argv)
    bundle = read_bundle(Path(args.bundle) if args.bundle else default_bundle_path())
    print(f"factory {bundle.root}, {args.subnets} subnets (seed 0), --runs {args.runs} "
          f"--rounds {args.rounds}, one thread")
    with tempfile.TemporaryDirectory(prefix="nnfc-ptime-") as tmp:
        for name in args.targets.split(","):
            target = make_target(name, dict(target_class(name).repeatable_options))
            t0, c0 = time.perf_counter(), time.process_time()
            data = profile_subnets(bundle, target, Path(tmp) / f"{name}.measurements.json",
                                   subnets=args.subnets, runs=args.runs, rounds=args.rounds,
                                   progress=False, remeasure=False)
            total, cpu = time.perf_counter() - t0, time.process_time() - c0
            rows = data["rows"]
            wall = np.array([r["seconds"] for r in rows])
            cpus = np.array([r["cpu_seconds"] for r in rows])
            lower = np.array([r["lower_seconds"] for r in rows])
            load = np.array([r["load"] for r in rows])
            how = data.get("lowered")
            print(f"{name:8s} per subnet: wall median {np.median(wall):.3f} s (mean "
                  f"{wall.mean():.3f}), CPU median {np.median(cpus):.3f} s; lowering median "
                  f"{np.median(lower):.3f} s; latency {min(r['latency_ms'] for r in rows):.2f}-"
                  f"{max(r['latency_ms'] for r in rows):.2f} ms; load {load.min():.1f}-"
                  f"{load.max():.1f}")
            print(f"{'':8s} whole run {total:.1f} s wall, {cpu:.1f} s CPU of this process "
                  f"(reference subnet, startup of converters included)"
                  + (f"; lowered: {how['derived']} derived, {how['converted']} converted with "
                     f"onnx2tf (the reference included)" if how else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
