"""Actual activation ratio per limit (NN-Factory's Fig. 11) of a trained factory.

For every task of the bundle (seen and unseen) and limits from 1 % to 100 %, the activation
ratio of the subnet the bundle's assembler gives (``shipped``: the ``v > 0`` gates trimmed by
the inference cap, what `nnfc compile` and `nnfc eval` prune to) and of the assembler's own
choice before the cap (``own``: ``v > 0``, what the gate loss trained), with each gate layer's
share of its channels at a few limits. Writes ``<out>.json`` and ``<out>.png``.

    .venv/bin/python benchmarks/activation_per_limit.py factories/default \\
        -o benchmarks/results/activation-per-limit-default
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from nnfc.training.assembler import active_ratio
from nnfc.training.semhash import hard_gate
from nnfc.training.trainer import trained_modules

LIMITS = [round(x, 3) for x in np.concatenate([np.arange(0.01, 0.1, 0.01),
                                              np.arange(0.1, 1.0001, 0.05)])]
LAYER_LIMITS = (0.03, 0.05, 0.1, 0.25, 1.0)


@torch.no_grad()
def measure(root: Path) -> dict:
    _, family, _, assembler, training = trained_modules(root)
    layers = assembler.layers
    rows = {}
    for group, tasks in (("seen", family.seen_tasks), ("unseen", family.unseen_tasks)):
        enc = torch.from_numpy(family.encode(tasks))
        per = []
        for limit in LIMITS:
            lim = torch.full((len(tasks),), float(limit))
            scores = assembler.scores(enc, lim)
            own = {l.name: hard_gate(v) for l, v in zip(layers, scores)}
            shipped = dict(zip([l.name for l in layers], assembler.discrete_gates(enc, lim)))
            row = {"limit": limit,
                   "own": float(active_ratio(own, layers).mean()),
                   "shipped": float(active_ratio(shipped, layers).mean()),
                   "shipped_max": float(active_ratio(shipped, layers).max())}
            if limit in LAYER_LIMITS:
                row["layers"] = {l.name: round(float(shipped[l.name].mean(0).sum()) / l.size, 4)
                                 for l in layers}
            per.append(row)
        rows[group] = per
    cfg = training.get("config", {})
    return {"bundle": str(root), "total_gates": sum(l.size for l in layers),
            "train": {k: cfg.get("train", {}).get(k) for k in
                      ("limit_min", "lambda_gate", "cap_in_training", "gate_loss")},
            "experts": cfg.get("assembler", {}).get("experts"), "groups": rows}


def plot(result: dict, png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for group, style in (("seen", "-"), ("unseen", "--")):
        rs = result["groups"][group]
        x = [r["limit"] for r in rs]
        ax.plot(x, [r["shipped"] for r in rs], style, color="tab:blue",
                label=f"{group}: pruned subnet")
        ax.plot(x, [r["own"] for r in rs], style, color="tab:orange",
                label=f"{group}: assembler's own choice (before the cap)")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="ratio = limit")
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel("activation limit"), ax.set_ylabel("actual activation ratio (mean over tasks)")
    ax.set_title(Path(result["bundle"]).name)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True, help="output path without suffix")
    args = ap.parse_args()
    result = measure(args.bundle)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    plot(result, args.out.with_suffix(".png"))
    for group in ("seen", "unseen"):
        print(group)
        for r in result["groups"][group]:
            print(f"  limit {r['limit']:5.2f}: pruned {r['shipped']:.3f} (max "
                  f"{r['shipped_max']:.3f}), own {r['own']:.3f}")


if __name__ == "__main__":
    main()
