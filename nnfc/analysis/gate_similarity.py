"""How alike the generated gate vectors are (the paper's Fig. 15): between tasks at one limit,
ordered so that tasks sharing attributes sit together, and between the limits of one task.
Similarity = Jaccard index of the active gate entries (shared active / active in either)."""

from __future__ import annotations

from typing import Any

import numpy as np

from nnfc.analysis.context import Analysis
from nnfc.analysis.plotting import percent, pyplot, save_png

DEFAULT_LIMITS = (0.02, 0.05, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0)


def jaccard(rows: np.ndarray) -> np.ndarray:
    """Pairwise Jaccard index of 0/1 row vectors ``rows`` [N, D] (1 where both are empty)."""
    x = (rows > 0.5).astype(np.float64)
    both = x @ x.T
    either = x.sum(1)[:, None] + x.sum(1)[None, :] - both
    return np.where(either > 0, both / np.maximum(either, 1), 1.0)


def _flat(gates: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([gates[k] for k in sorted(gates)], axis=1)


def compute(a: Analysis, task: list[str], limit: float = 0.5,
            limits=DEFAULT_LIMITS) -> dict[str, Any]:
    """``{"limit", "tasks", "seen", "task_similarity" [T][T], "shared_attribute_mean",
    "no_shared_attribute_mean", "task", "limits", "limit_similarity" [L][L], "measure"}``."""
    task = a.task(task)
    tasks = sorted(a.all_tasks(), key=lambda ts: (ts[0][-1:], ts[0][:-1]))
    vecs = np.concatenate([_flat(a.gates(t, [limit])) for t, _ in tasks])
    sim = jaccard(vecs)
    shared, apart = [], []
    for i in range(len(tasks)):
        for j in range(i + 1, len(tasks)):
            (shared if set(tasks[i][0]) & set(tasks[j][0]) else apart).append(sim[i, j])
    limits = [float(x) for x in limits]
    lim_sim = jaccard(_flat(a.gates(task, limits)))
    return {"limit": limit, "tasks": [t for t, _ in tasks], "seen": [s for _, s in tasks],
            "task_similarity": sim,
            "shared_attribute_mean": float(np.mean(shared)) if shared else None,
            "no_shared_attribute_mean": float(np.mean(apart)) if apart else None,
            "task": task, "limits": limits, "limit_similarity": lim_sim,
            "measure": "Jaccard index of active gate entries (shared active / active in either)"}


def plot(data: dict[str, Any], path) -> None:
    plt = pyplot()
    n = len(data["tasks"])
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(16, 10), gridspec_kw={"width_ratios": [1.5, 1]})
    im = a0.imshow(np.array(data["task_similarity"], dtype=float), vmin=0, vmax=1,
                   cmap="viridis")
    labels = [",".join(t) + ("" if s else " *") for t, s in zip(data["tasks"], data["seen"])]
    step = 1 if n <= 60 else 2
    a0.set_xticks(range(0, n, step))
    a0.set_xticklabels(labels[::step], rotation=90, fontsize=8 if n > 30 else 10)
    a0.set_yticks(range(0, n, step))
    a0.set_yticklabels(labels[::step], fontsize=8 if n > 30 else 10)
    a0.grid(False)
    a0.set_title(f"between tasks at limit {percent(data['limit'])} (grouped by last attribute; "
                 "* unseen)", fontsize=11)
    a0.set_xlabel("task")
    a0.set_ylabel("task")
    fig.colorbar(im, ax=a0, fraction=0.046, pad=0.02, label="Jaccard similarity of gates")
    lim = np.array(data["limit_similarity"], dtype=float)
    im1 = a1.imshow(lim, vmin=0, vmax=1, cmap="viridis")
    names = [percent(x) for x in data["limits"]]
    a1.set_xticks(range(len(names)))
    a1.set_xticklabels(names, rotation=45)
    a1.set_yticks(range(len(names)))
    a1.set_yticklabels(names)
    a1.grid(False)
    for i in range(len(names)):
        for j in range(len(names)):
            a1.text(j, i, f"{lim[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if lim[i, j] < 0.6 else "black")
    a1.set_title(f"between limits of {','.join(data['task'])}")
    a1.set_xlabel("activation limit")
    a1.set_ylabel("activation limit")
    fig.colorbar(im1, ax=a1, fraction=0.046, pad=0.02, label="Jaccard similarity of gates")
    save_png(fig, path)


def summary(data: dict[str, Any]) -> str:
    s, o = data["shared_attribute_mean"], data["no_shared_attribute_mean"]
    return (f"gates at {percent(data['limit'])}: tasks sharing an attribute "
            f"{'—' if s is None else f'{s:.2f}'}, sharing none "
            f"{'—' if o is None else f'{o:.2f}'} (mean Jaccard)")
