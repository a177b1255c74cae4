"""What a factory scores: the task family's metric and the actual activation ratio per
(task, limit) in torch with discrete gates (numerically what the pruned model computes), their
seen/unseen summary, and the periodic evaluation the trainer records in the training history.

History rows (``manifest.training.metrics.history``, one per epoch) carry, every
``train.history_eval_every`` epochs and after the last, ``"eval"``::

    {"per_task": 4, "metric": "map50",
     "seen":   {"0.05": {"map50": 0.91, "activation_ratio": 0.049, "tasks": 44}, ...},
     "unseen": {"0.05": {...}, ...}}

(limits are ``train.eval_limits`` written with ``%g``; ``per_task`` test samples per task).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from nnfc.training.assembler import Assembler, active_ratio
from nnfc.training.gating import GatedSupernet


@torch.no_grad()
def evaluate(supernet: GatedSupernet, assembler: Assembler, family, tasks: Sequence[Sequence[str]],
             limits: Sequence[float], n_per_task: int, seed: int,
             device: torch.device = torch.device("cpu")) -> list[dict[str, Any]]:
    """The family's metric (``family.evaluate``) and the actual activation ratio per
    (task, limit) on the test split, discrete gates (numerically what the pruned model
    computes)."""
    supernet.eval(), assembler.eval()
    results = []
    for task in tasks:
        enc = torch.from_numpy(family.encode([task])).to(device)
        for limit in limits:
            gates = assembler(enc, torch.tensor([float(limit)], device=device))
            ratio = float(active_ratio(gates, assembler.layers)[0])
            one = {k: v[0] for k, v in gates.items()}

            def run(x: np.ndarray) -> dict[str, np.ndarray]:
                out = supernet(torch.from_numpy(x).to(device), one)
                return {k: v.cpu().numpy() for k, v in out.items()}

            value = family.evaluate(tuple(task), run, n_per_task, seed)
            results.append({"task": list(task), "limit": float(limit), family.metric: value,
                            "activation_ratio": ratio})
    return results


def summarize(results: list[dict[str, Any]], seen: Sequence[Sequence[str]],
              metric: str = "accuracy") -> dict[str, Any]:
    """Mean metric / ratio per limit for seen and unseen tasks."""
    seen_set = {tuple(t) for t in seen}
    out: dict[str, Any] = {}
    for group in ("seen", "unseen"):
        rows = [r for r in results if (tuple(r["task"]) in seen_set) == (group == "seen")]
        per = {}
        for limit in sorted({r["limit"] for r in rows}):
            rs = [r for r in rows if r["limit"] == limit]
            per[f"{limit:g}"] = {metric: round(float(np.mean([r[metric] for r in rs])), 4),
                                 "activation_ratio": round(float(np.mean(
                                     [r["activation_ratio"] for r in rs])), 4),
                                 "tasks": len(rs)}
        if per:
            out[group] = per
    return out


def history_eval(supernet: GatedSupernet, assembler: Assembler, family, limits: Sequence[float],
                 per_task: int, seed: int,
                 device: torch.device = torch.device("cpu")) -> dict[str, Any]:
    """The training history's periodic evaluation (format in the module docstring): every
    seen and unseen task at ``limits``, ``per_task`` test samples each."""
    seen = family.seen_tasks
    results = evaluate(supernet, assembler, family, seen + family.unseen_tasks, limits,
                       per_task, seed, device)
    return {"per_task": per_task, "metric": family.metric,
            **summarize(results, seen, family.metric)}
