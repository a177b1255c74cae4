"""nnfc's computed memory (parameters + largest intermediate tensor) against the runtime's
(peak RSS growth of a fresh process that loads and runs the artifact,
``nnfc.targets.memory_probe``) over random subnets of a factory, per target.

    python benchmarks/memory_measured.py --target desktop --subnets 50 --json rows.json

Prints the distribution of measured / computed and of measured - computed (MB). Resumable: rows
already in --json are kept. The android target derives each subnet's .tflite from one onnx2tf
conversion per graph topology (as `nnfc profile` does).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="desktop")
    ap.add_argument("--subnets", type=int, default=50)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    import onnx

    from nnfc.bundle import default_bundle_path, read_bundle
    from nnfc.compiler.graph_stats import graph_stats
    from nnfc.compiler.measured_rounds import lower
    from nnfc.compiler.pipeline import make_target
    from nnfc.compiler.profiler import random_gates
    from nnfc.errors import NnfcError
    from nnfc.onnx_io import shapes_only
    from nnfc.passes import apply_gates, gate_inputs
    from nnfc.precision.target import precision_target
    from nnfc.targets.memory_probe import measure_runtime_memory

    bundle = read_bundle(default_bundle_path())
    supernet = onnx.load(str(bundle.supernet_path))
    sizes = gate_inputs(supernet)
    gates = random_gates(list(sizes), list(sizes.values()), args.subnets, seed=args.seed)
    target = make_target(args.target, {"threads": 1})
    if args.target == "android":
        target.prepare_profiling()
    target = precision_target(target, args.precision, bundle, keep_float_lowering=False,
                              samples=8)
    rows = json.loads(args.json.read_text()) if args.json.is_file() else []
    done = {r["index"] for r in rows}
    with tempfile.TemporaryDirectory(prefix="nnfc-mem-") as tmp:
        for i, g in enumerate(gates):
            if i in done:
                continue
            pruned = apply_gates(supernet, g)
            work = Path(tmp) / f"s{i}"
            try:
                artifact, _ = lower(target, pruned, work, bundle.manifest)
            except NnfcError as exc:  # e.g. a conversion refused by the equivalence check
                print(f"subnet {i}: not lowered ({exc})", file=sys.stderr, flush=True)
                continue
            stats = graph_stats(shapes_only(pruned))
            computed = stats.memory_mb
            if args.precision == "int8" and artifact.suffix == ".onnx":
                from nnfc.precision.stage import _param_bytes
                computed = (_param_bytes(onnx.load(str(artifact)))
                            + stats.peak_tensor_bytes) / 1e6
            probe = measure_runtime_memory(args.target, artifact, 1)
            if probe is None:
                print(f"subnet {i}: the probe failed", file=sys.stderr)
                continue
            rows.append({"index": i, "activation_ratio": float(np.mean(
                np.concatenate([v.ravel() for v in g.values()]))),
                "computed_mb": computed, "measured_mb": probe["peak_rss_growth_mb"],
                "method": probe["method"]})
            args.json.write_text(json.dumps(rows, indent=1) + "\n")
            print(f"subnet {i}: computed {computed:.2f} MB, measured {rows[-1]['measured_mb']:.2f}"
                  f" MB", file=sys.stderr, flush=True)
    c = np.array([r["computed_mb"] for r in rows])
    m = np.array([r["measured_mb"] for r in rows])
    ratio, diff = m / c, m - c
    q = [5, 25, 50, 75, 95]
    print(f"{args.target} {args.precision}: {len(rows)} subnets, computed {c.min():.2f}-"
          f"{c.max():.2f} MB, measured {m.min():.2f}-{m.max():.2f} MB")
    print("  measured / computed, percentiles 5/25/50/75/95: "
          + ", ".join(f"{np.percentile(ratio, p):.2f}" for p in q))
    print("  measured - computed (MB), percentiles 5/25/50/75/95: "
          + ", ".join(f"{np.percentile(diff, p):+.2f}" for p in q))
    slope, icpt = np.polyfit(c, m, 1)
    print(f"  least squares: measured = {slope:.2f} x computed + {icpt:.2f} MB "
          f"(corr {np.corrcoef(c, m)[0, 1]:.3f})")


if __name__ == "__main__":
    main()
