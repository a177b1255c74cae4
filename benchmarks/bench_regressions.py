"""False alarms and sensitivity of ``nnfc bench --baseline`` on this machine.

    .venv/bin/python benchmarks/bench_regressions.py [--comparisons 100] [--per-step 20]
        [--bundle factories/numvqa-resnet] [--out bench_regressions.json]

Artifacts: the factory's supernet pruned to half of every gated layer's channels and lowered with
the desktop target (``model.ort.onnx``), and wider variants (:data:`WIDER`).

* False alarms: a baseline is saved once (``nnfc bench --save``), then ``--comparisons`` runs of
  ``nnfc bench --baseline`` compare an identical copy of the artifact with it — *paired* (the
  baseline's artifact is present: interleaved rounds) and *unpaired* (it is not: the candidate's
  rounds against the saved ones, made minutes earlier under another load). Counts how many exit 1,
  and how many changes are significant at any size (what the threshold protects against).
* Sensitivity: ``--per-step`` paired comparisons of each wider model against the base; how
  often its latency is flagged at the default thresholds (its memory, exact, always is) and the
  estimated slowdown.

Every comparison is a full CLI run (in-process); the load average is recorded with each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

import numpy as np
import onnx

from nnfc.cli import main
from nnfc.onnx_io import save_onnx
from nnfc.passes import apply_gates
from nnfc.targets import get_target

#: active channels per gate layer: the base (half of the default factory's 32/64/128) and wider
#: candidates (ORT's kernels favour multiples of 8, so latency is not proportional to channels)
BASE = (16, 32, 64)
WIDER = {"+10% channels everywhere (18/35/70)": (18, 35, 70),
         "+12.5% in layer3 (64->72)": (16, 32, 72),
         "+25% in layer2 (32->40)": (16, 40, 64),
         "+50% in layer1 (16->24)": (24, 32, 64)}


def gates(model: onnx.ModelProto, keep: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The first ``keep[i]`` channels of gate layer ``i`` on."""
    layers = [i for i in model.graph.input if i.name.startswith("gate.")]
    return {inp.name: (np.arange(inp.type.tensor_type.shape.dim[0].dim_value) < k
                       ).astype(np.float32) for inp, k in zip(layers, keep)}


def artifact(supernet: onnx.ModelProto, keep: tuple[int, ...], where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    pruned = save_onnx(apply_gates(supernet, gates(supernet, keep)), where / "model.onnx")
    lowered = get_target("desktop").lower(pruned, where)
    pruned.unlink()
    return lowered


def bench(args: list[str], cwd: Path) -> tuple[int, dict]:
    """``nnfc bench ARGS --save`` in ``cwd``; exit code and the saved run."""
    saved = cwd / "run.json"
    saved.unlink(missing_ok=True)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), \
                contextlib.redirect_stderr(null):
            main(["bench", *args, "--save", str(saved)])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        os.chdir(old)
    return code, json.loads(saved.read_text())


def latency_change(run: dict) -> dict:
    return next(c for c in run["artifacts"][0]["comparison"]["changes"] if c["metric"] == "lat")


def summarize(name: str, results: list[tuple[int, dict]]) -> dict:
    changes = [latency_change(r) for _, r in results]
    loads = [r["host"]["load_before"][0] for _, r in results]
    est = [100 * c["change"] for c in changes]
    out = {"comparisons": len(results), "flagged": sum(code == 1 for code, _ in results),
           "latency_flagged": sum(c["regression"] for c in changes),
           "significant_any_size": sum(c["significant"] for c in changes),
           "change_pct": {"median": statistics.median(est), "min": min(est), "max": max(est)},
           "ci_halfwidth_pct_median": statistics.median(
               50 * (c["ci"][1] - c["ci"][0]) for c in changes),
           "load_1min": {"min": min(loads), "median": statistics.median(loads),
                         "max": max(loads)},
           "each": [{"change": c["change"], "ci": c["ci"], "regression": c["regression"],
                     "load": load, "rounds": r["artifacts"][0]["latency_ms"]["rounds"],
                     "baseline_rounds": r["artifacts"][0]["comparison"]["baseline"]["rounds_here"]}
                    for c, load, (_, r) in zip(changes, loads, results)]}
    print(f"{name:40s} exit 1: {out['flagged']:3d}/{len(results)}, latency flagged "
          f"{out['latency_flagged']:3d}, significant at any size "
          f"{out['significant_any_size']:3d}  change median {out['change_pct']['median']:+.1f}% "
          f"[{out['change_pct']['min']:+.1f}, {out['change_pct']['max']:+.1f}]  CI ±"
          f"{out['ci_halfwidth_pct_median']:.1f}%  load {out['load_1min']['min']:.1f}-"
          f"{out['load_1min']['max']:.1f}", flush=True)
    return out


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default="factories/numvqa-resnet")
    ap.add_argument("--comparisons", type=int, default=100)
    ap.add_argument("--per-step", type=int, default=10)
    ap.add_argument("--bench-args", default="", help="extra nnfc bench options, e.g. '--rounds 9'")
    ap.add_argument("--out", default=None, help="write the figures as JSON")
    a = ap.parse_args()
    extra_args = a.bench_args.split()
    supernet = onnx.load(str(Path(a.bundle) / "supernet.onnx"))
    figures: dict = {"bench_args": extra_args, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="nnfc-bench-regressions-") as tmp:
        root = Path(tmp)
        base = artifact(supernet, BASE, root / "base")
        cand = root / "cand"
        cand.mkdir()
        shutil.copy(base, cand / base.name)
        code, saved = bench([base.name, *extra_args], base.parent)
        shutil.copy(base.parent / "run.json", root / "baseline.json")
        print(f"base artifact: median {saved['artifacts'][0]['latency_ms']['median'] * 1e3:.0f} "
              f"us (load {saved['host']['load_before'][0]:.1f})", flush=True)
        baseline = ["--baseline", str(root / "baseline.json")]
        paired = [bench([base.name, *baseline, *extra_args], cand)
                  for _ in range(a.comparisons)]
        figures["false_alarms_paired"] = summarize("identical, paired", paired)
        moved = base.rename(root / "base.away")  # the baseline artifact is gone: unpaired
        unpaired = [bench([base.name, *baseline, *extra_args], cand)
                    for _ in range(a.comparisons)]
        figures["false_alarms_unpaired"] = summarize("identical, unpaired", unpaired)
        moved.rename(base)
        figures["sensitivity"] = {}
        for i, (label, keep) in enumerate(WIDER.items()):
            wider = artifact(supernet, keep, root / f"wide{i}")
            shutil.copy(wider, cand / base.name)
            runs = [bench([base.name, *baseline, *extra_args], cand) for _ in range(a.per_step)]
            figures["sensitivity"][label] = summarize(label, runs)
    if a.out:
        Path(a.out).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main_()
