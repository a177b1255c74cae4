"""Re-measurement agreement: the same subnets measured twice, once as the machine is and once
under an intermittent CPU-bound load (``intermittent_load.py``, on/off every few seconds), with
both estimators side by side:

- ``relative``: drift-cancelling (``measure_relative``: candidate / reference subnet, call by
  call, inference-thread CPU time on one thread) x the profile's reference calibration;
- ``best-of-rounds``: the previous estimator (``measure``: smallest of the rounds' wall-clock
  medians).

Prints per estimator the mean / median / max relative difference between the two passes.

    .venv/bin/python benchmarks/remeasure_agreement.py --bundle B \
        --measurements profiles/resnet18-128-desktop.measurements.json --subnets 12
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    import onnx

    from nnfc.bundle import read_bundle
    from nnfc.compiler.measure import clock_for, measure, measure_relative, runner
    from nnfc.compiler.pipeline import make_target
    from nnfc.compiler.predictor import unpack_gates
    from nnfc.passes import apply_gates

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--measurements", required=True, help="a profile's measurement JSON")
    ap.add_argument("--subnets", type=int, default=12)
    ap.add_argument("--on", type=float, default=3.0)
    ap.add_argument("--off", type=float, default=3.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    data = json.loads(Path(args.measurements).read_text())
    ref = data["reference"]
    ref_path = Path(args.measurements).parent / ref["artifact"]
    target = make_target("desktop", data.get("target_options") or {"threads": 1})
    ref_run = runner(target, ref_path)
    clock = clock_for(target)
    bundle = read_bundle(args.bundle)
    supernet = onnx.load(str(bundle.supernet_path))
    rows = data["rows"][1: 1 + args.subnets]
    runs, warmup, rounds = data["runs"], data["warmup"], data["rounds"]
    results = {"relative": [[], []], "best-of-rounds": [[], []]}
    loads = [[], []]
    with tempfile.TemporaryDirectory(prefix="nnfc-agree-") as tmp:
        artifacts = []
        for row in rows:
            work = Path(tmp) / f"s{row['index']}"
            work.mkdir()
            onnx.save_model(apply_gates(supernet, unpack_gates(row["gates"])),
                            str(work / "model.onnx"))
            artifacts.append(target.lower(work / "model.onnx", work))
        for p, label in enumerate(("as the machine is", "with intermittent load")):
            load = None
            if p == 1:
                load = subprocess.Popen([sys.executable, str(HERE / "intermittent_load.py"),
                                         "--on", str(args.on), "--off", str(args.off),
                                         "--max-seconds", "1800"])
                time.sleep(1.0)
            try:
                for art in artifacts:
                    m = measure_relative(runner(target, art), ref_run, runs=runs,
                                         warmup=warmup, rounds=max(3, rounds // 2), clock=clock)
                    results["relative"][p].append(m.relative * ref["latency_ms"])
                    results["best-of-rounds"][p].append(
                        measure(target, art, runs=runs, warmup=warmup,
                                rounds=rounds).latency_ms)
                    loads[p].append(os.getloadavg()[0])
            finally:
                if load is not None:
                    load.terminate()
                    load.wait()
            print(f"pass {p + 1} ({label}): load average {min(loads[p]):.1f}-"
                  f"{max(loads[p]):.1f}", flush=True)
    print(f"{len(rows)} subnets of {bundle.root}, measured twice")
    print(f"{'estimator':16s} {'mean diff':>9s} {'median':>7s} {'max':>7s} "
          f"{'pass2/pass1':>11s}")
    out = {}
    for name, (a, b) in results.items():
        a, b = np.array(a), np.array(b)
        d = np.abs(b - a) / a
        out[name] = {"pass1_ms": a.tolist(), "pass2_ms": b.tolist(), "mean_diff": float(d.mean()),
                     "median_diff": float(np.median(d)), "max_diff": float(d.max()),
                     "mean_ratio": float(np.mean(b / a))}
        print(f"{name:16s} {d.mean():9.2%} {np.median(d):7.2%} {d.max():7.2%} "
              f"{np.mean(b / a):11.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": out, "loads": loads}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
