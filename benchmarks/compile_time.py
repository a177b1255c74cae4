"""`nnfc compile` wall time from process start to report, median of N runs, with stages.

The wall time is measured outside the process (spawn to exit); the stages come from each
report's ``timings_s`` (``startup`` = interpreter + imports until the compile starts).

    .venv/bin/python benchmarks/compile_time.py --bundle factories/numvqa-resnet --task only-two,odd \
        --lat 1ms --mem 50MB
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--task", default="only-two,odd")
    ap.add_argument("--target", default="desktop")
    ap.add_argument("--lat", default="1ms")
    ap.add_argument("--mem", default="50MB")
    ap.add_argument("--profile", default=None, help="predictor JSON (default: the bundle's)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--refine-rounds", type=int, default=None,
                    help="passed to nnfc compile (default: compile's own)")
    ap.add_argument("--nnfc", default=str(Path(sys.executable).with_name("nnfc")),
                    help="the nnfc executable")
    args = ap.parse_args(argv)
    # time nnfc as installed: pip byte-compiles a package, an editable checkout under
    # PYTHONDONTWRITEBYTECODE would compile every module from source at each start (~0.06 s)
    import compileall
    import nnfc
    compileall.compile_dir(str(Path(nnfc.__file__).parent), quiet=1)
    walls, stages, cpus, loads, measured, use = [], [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="nnfc-ctime-") as tmp:
        for i in range(args.repeats):
            out = Path(tmp) / f"o{i}"
            cmd = [args.nnfc, "compile", "--task", args.task, "--target", args.target,
                   "--lat", args.lat, "--mem", args.mem, "-o", str(out)]
            if args.bundle:
                cmd[2:2] = ["--bundle", args.bundle]
            if args.profile:
                cmd[2:2] = ["--profile", args.profile]
            if args.refine_rounds is not None:
                cmd[2:2] = ["--refine-rounds", str(args.refine_rounds)]
            t0 = time.perf_counter()
            c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            walls.append(time.perf_counter() - t0)
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime)
            loads.append(os.getloadavg()[0])
            if res.returncode != 0:
                print(res.stderr, file=sys.stderr)
                return res.returncode
            report = json.loads((out / "report.json").read_text())
            stages.append(report["timings_s"])
            measured.append(len(report["search"]["measured_rounds"]))
            use.append((report.get("budget_use") or {}).get("latency", {}).get("utilisation"))
    print("command: " + " ".join(cmd[:-2]) + " -o OUT")
    print(f"wall time, process start to exit: median {statistics.median(walls):.3f} s over "
          f"{len(walls)} runs ({', '.join(f'{w:.2f}' for w in walls)})")
    print(f"CPU time of the process (user + sys): median {statistics.median(cpus):.3f} s "
          f"({', '.join(f'{c:.2f}' for c in cpus)}); 1-min load average {min(loads):.1f}-"
          f"{max(loads):.1f} on {os.cpu_count()} cores")
    print(f"measured subnets per compile: {', '.join(map(str, measured))}; latency budget use: "
          + ", ".join("-" if u is None else f"{u:.1%}" for u in use))
    keys = list(dict.fromkeys(k for s in stages for k in s if k != "total"))
    for k in keys:
        print(f"  {k:8s} {statistics.median(s.get(k, 0.0) for s in stages):.3f} s")
    sp = statistics.median(s["search"] + s["prune"] for s in stages)
    print(f"  search + prune: {sp:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
