"""`--precision auto` against fp32 only over latency budgets that are fractions of the full fp32
supernet's latency (issue #24): within budget, budget use and the family's metric, side by side.

    python benchmarks/precision_budget_sweep.py --fp32-profile F.json \\
        --tasks red,car green,car --fractions 0.8 0.6 0.4 0.25 --out runs/sweep

The full supernet's latency is the fp32 profile's measured subnet 0 (every gate on). Each cell is
one `nnfc compile` with the profiles of this machine's cache (fp32; auto: the int8 one made by
`nnfc profile --precision int8` against the fp32 one), its measured latency and its artifact's
metric (200 test samples, as `nnfc bench --eval`). Resumable per cell.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def full_latency(profile: Path) -> float:
    data = json.loads(profile.read_text())
    meas = Path(data["profile"]["measurements"])
    rows = json.loads(meas.read_text())["rows"]
    return float(next(r["latency_ms"] for r in rows if r["index"] == 0))


def cell(task: str, budget_ms: float, precision: str, out: Path) -> dict:
    d = out / f"{task.replace(',', '-')}-{budget_ms:.3f}ms-{precision}"
    if not (d / "report.json").is_file():
        r = subprocess.run([sys.executable, "-m", "nnfc", "compile", "--task", task, "--lat",
                            f"{budget_ms:.4f}ms", "--precision", precision, "-o", str(d),
                            "--force"], capture_output=True,
                           text=True)
        if r.returncode not in (0, 3):
            return {"task": task, "budget_ms": budget_ms, "mode": precision,
                    "error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "?"}
    report = json.loads((d / "report.json").read_text())
    metric = report["precision"].get("metric", {}).get("quantized")
    if metric is None or report["precision"].get("built") == "fp32":
        from nnfc.benchmarking.evaluate import evaluate_artifact
        from nnfc.targets import get_target
        metric = evaluate_artifact(report, get_target("desktop", threads=1),
                                   d / report["artifact"], d)["value"]
    lat = report["measured"]["latency_ms"]["median"]
    return {"task": task, "budget_ms": budget_ms, "mode": precision,
            "built": report["precision"].get("built", "fp32"), "limit": report["limit"],
            "activation_ratio": report["activation_ratio"], "latency_ms": lat,
            "budget_use": lat / budget_ms, "within_budget": report["within_budget"],
            "metric": metric, "drop_points": report["precision"].get("metric", {}).get(
                "drop_points")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fp32-profile", type=Path, required=True,
                    help="the profile whose subnet 0 gives the full supernet's latency")
    ap.add_argument("--tasks", nargs="+", default=["red,car"])
    ap.add_argument("--fractions", nargs="+", type=float, default=[0.8, 0.6, 0.4, 0.25])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    full = full_latency(args.fp32_profile)
    rows = []
    for task in args.tasks:
        for f in args.fractions:
            for mode in ("fp32", "auto"):
                rows.append({**cell(task, f * full, mode, args.out), "fraction": f})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"full fp32 supernet: {full:.2f} ms (fp32 profile, subnet 0)\n")
    print("| task | budget | mode | built | activation | latency | use | within | mAP@0.5 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['task']} | {r['fraction']:.2f}x ({r['budget_ms']:.2f} ms) | {r['mode']} "
                  f"| - | - | - | - | {r['error'][:60]} | - |")
            continue
        print(f"| {r['task']} | {r['fraction']:.2f}x ({r['budget_ms']:.2f} ms) | {r['mode']} | "
              f"{r['built']} | {r['activation_ratio']:.0%} | {r['latency_ms']:.2f} ms | "
              f"{r['budget_use']:.0%} | {'yes' if r['within_budget'] else 'NO'} | "
              f"{r['metric']:.4f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
