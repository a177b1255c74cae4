"""fp32 against int8 of the same subnet, per task and target, in interleaved `nnfc bench --eval`
runs (issue #24's figures).

For each task: `nnfc compile --precision fp32` and `--precision int8` at an unbinding latency
budget (the largest subnet the assembler gives), then one `nnfc bench FP32_DIR INT8_DIR --eval`
(rounds of both artifacts interleaved; the speedup is the median of the per-round ratios).
Prints a Markdown table (speedup, metric of each, drop in points) and writes the rows as JSON.

    python benchmarks/precision_compare.py --target desktop --profile P.json \\
        --tasks red,car green,car ... --out runs/precision --json rows.json

A shared machine spreads single-round figures; the interleaving cancels load that hits both.
Resumable: a task whose two compile outputs and bench JSON exist is not redone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

UNBINDING = "100000ms"


def nnfc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnfc", *args], capture_output=True,
                          text=True)


def compile_pair(task: str, target: str, profile: str | None, out: Path) -> dict[str, Path]:
    dirs = {}
    for precision in ("fp32", "int8"):
        d = out / f"{target}-{task.replace(',', '-')}-{precision}"
        if not (d / "report.json").is_file():
            args = ["compile", "--task", task, "--target", target, "--lat", UNBINDING,
                    "--precision", precision, "-o", str(d), "--force"]
            if profile:
                args += ["--profile", profile]
            r = nnfc(*args)
            if r.returncode not in (0, 3):
                raise SystemExit(f"compile {task} {precision} failed: {r.stderr.strip()[-500:]}")
        dirs[precision] = d
    return dirs


def bench_pair(dirs: dict[str, Path], out: Path, rounds: int) -> dict:
    saved = out / (dirs["int8"].name.removesuffix("-int8") + ".bench.json")
    if not saved.is_file():
        r = nnfc("bench", str(dirs["fp32"]), str(dirs["int8"]), "--eval", "--rounds",
                 str(rounds), "--save", str(saved))
        if r.returncode not in (0, 1):
            raise SystemExit(f"bench failed: {r.stderr.strip()[-500:]}")
    return json.loads(saved.read_text())


def row(task: str, seen: bool, run: dict, dirs: dict[str, Path]) -> dict:
    fp32, int8 = run["artifacts"]
    side = run["side_by_side"][0]
    report = json.loads((dirs["int8"] / "report.json").read_text())
    prec = report["precision"]
    return {"task": task, "seen": seen, "target": fp32["target"],
            "limit": report["limit"], "activation_ratio": report["activation_ratio"],
            "fp32_ms": fp32["latency_ms"]["median"], "int8_ms": int8["latency_ms"]["median"],
            "speedup": side["speedup"], "speedup_range": side["speedup_range"],
            "metric": side.get("metric"), "fp32_metric": fp32["eval"]["value"],
            "int8_metric": int8["eval"]["value"], "drop_points": -side["metric_points"],
            "kept_float": len(prec.get("kept_float", [])),
            "compile_speedup": prec.get("speedup_vs_float"),
            "load": run["host"].get("load_before")}


def table(rows: list[dict]) -> str:
    lines = ["| target | task | seen | activation | fp32 ms | int8 ms | speedup (round range) "
             "| fp32 mAP | int8 mAP | drop (points) | layers kept float |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['task']} | {'seen' if r['seen'] else 'unseen'} | "
            f"{r['activation_ratio']:.0%} | {r['fp32_ms']:.2f} | {r['int8_ms']:.2f} | "
            f"{r['speedup']:.2f}x ({r['speedup_range'][0]:.2f}-{r['speedup_range'][1]:.2f}) | "
            f"{r['fp32_metric']:.4f} | {r['int8_metric']:.4f} | {r['drop_points']:+.2f} | "
            f"{r['kept_float']} |")
    if rows:
        import statistics
        lines.append(f"\nmedian speedup {statistics.median(r['speedup'] for r in rows):.2f}x, "
                     f"largest drop {max(r['drop_points'] for r in rows):+.2f} points over "
                     f"{len(rows)} task(s)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="desktop")
    ap.add_argument("--profile", default=None, help="predictor JSON for compile --profile")
    ap.add_argument("--tasks", nargs="+", default=["red,car"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from nnfc.bundle import default_bundle_path, read_bundle
    seen = {",".join(t) for t in read_bundle(default_bundle_path()).tasks("seen")}
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in args.tasks:
        dirs = compile_pair(task, args.target, args.profile, args.out)
        rows.append(row(task, task in seen, bench_pair(dirs, args.out, args.rounds), dirs))
        print(f"{task}: {rows[-1]['speedup']:.2f}x, drop {rows[-1]['drop_points']:+.2f} points",
              file=sys.stderr, flush=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
