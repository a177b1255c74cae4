"""How the latency predictor's accuracy grows with the number of profiled subnets (the paper's
Fig. 13), from the target profile's own measurements: a fixed held-out set, and the profile's
latency model (its feature set and ridge) refitted on random subsets of the rest."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from nnfc.analysis.context import Analysis
from nnfc.analysis.plotting import PALETTE, pyplot, save_png
from nnfc.errors import NnfcError


MIN_SUBNETS = 20  # 10+ held out and 10+ to fit


def subset_sizes(n_train: int, smallest: int = 10, points: int = 8) -> list[int]:
    """Geometrically spaced training-set sizes from ``smallest`` to ``n_train``."""
    return sorted({int(round(v)) for v in np.geomspace(min(smallest, n_train), n_train, points)})


def compute(a: Analysis, repeats: int = 5, test_fraction: float = 0.3, seed: int = 0,
            progress: Callable[[Iterable], Iterable] = lambda x: x) -> dict[str, Any]:
    """``{"target", "feature_set", "ridge", "n_test", "points": [{"subnets", "within_5",
    "within_10", "mape", "within_5_min", ..., "repeats"}]}`` (shares and MAPE as fractions,
    mean over ``repeats`` random subsets; min/max beside)."""
    from nnfc.compiler.predictor import (LinearModel, error_shares, feature_matrix,
                                         unpack_gates)
    data = a.measurements
    if data is None:
        raise NnfcError(f"predictor: the {a.target} profile {a.profile_path} has no measurement "
                        "file beside it (<profile>.measurements.json); profile again with "
                        f"`nnfc profile --target {a.target}`")
    pred = a.predictor
    rows = [r for r in data["rows"] if r.get("latency_ms")]
    if len(rows) < MIN_SUBNETS:
        raise NnfcError(f"predictor: the {a.target} profile {a.profile_path} has "
                        f"{len(rows)} measured subnets, too few to subsample (at least "
                        f"{MIN_SUBNETS}); profile more with: nnfc profile --bundle "
                        f"{a.bundle.root} --target {a.target} --subnets 100")
    structure = pred.structure
    gates = {g: np.stack([unpack_gates(r["gates"])[g] for r in rows]) for g in structure.gates}
    y = np.array([float(r["latency_ms"]) for r in rows])
    x, n_pos = feature_matrix(pred.features, structure, gates)
    ridge = float(((pred.meta.get("accuracy") or {}).get("latency_model") or {})
                  .get("ridge", 1e-4))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_test = max(10, int(round(test_fraction * len(y))))
    test, pool = order[:n_test], order[n_test:]
    points = []
    for n in progress(subset_sizes(len(pool))):
        scores = []
        for r in range(repeats if n < len(pool) else 1):
            pick = rng.choice(pool, n, replace=False)
            model = LinearModel.fit(x[pick], y[pick], n_pos, ridge)
            scores.append(error_shares(model(x[test]), y[test]))
        point: dict[str, Any] = {"subnets": n, "repeats": len(scores)}
        for key, name in (("within_5", "within_5"), ("within_10", "within_10"),
                          ("accuracy", "mape")):
            vals = np.array([s[key] for s in scores])
            vals = 1 - vals if name == "mape" else vals
            point.update({name: float(vals.mean()), f"{name}_min": float(vals.min()),
                          f"{name}_max": float(vals.max())})
        points.append(point)
    return {"target": a.target, "feature_set": pred.features, "ridge": ridge,
            "features": int(x.shape[1]), "n_test": int(n_test), "n_measured": len(rows),
            "profile": str(a.profile_path), "points": points}


def plot(data: dict[str, Any], path) -> None:
    plt = pyplot()
    pts = data["points"]
    n = [p["subnets"] for p in pts]
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(12, 4.8))
    for key, colour, label in (("within_5", PALETTE["blue"], "within ±5 %"),
                               ("within_10", PALETTE["orange"], "within ±10 %")):
        a0.plot(n, [100 * p[key] for p in pts], "-o", color=colour, label=label)
        a0.fill_between(n, [100 * p[f"{key}_min"] for p in pts],
                        [100 * p[f"{key}_max"] for p in pts], color=colour, alpha=0.15)
    a0.set_ylim(0, 102)
    a0.set_ylabel(f"held-out subnets predicted (%, of {data['n_test']})")
    a0.set_title(f"{data['target']}: share of predictions within ±5 % / ±10 %")
    a0.legend(loc="lower right")
    a1.plot(n, [100 * p["mape"] for p in pts], "-o", color=PALETTE["vermillion"],
            label="mean absolute percentage error")
    a1.fill_between(n, [100 * p["mape_min"] for p in pts], [100 * p["mape_max"] for p in pts],
                    color=PALETTE["vermillion"], alpha=0.15, label="min–max over subsets")
    a1.set_ylim(bottom=0)
    a1.set_ylabel("latency MAPE (%)")
    a1.set_title(f"{data['target']}: latency prediction error")
    a1.legend(loc="upper right")
    for ax in (a0, a1):
        ax.set_xscale("log")
        ax.set_xticks(n)
        ax.set_xticklabels([str(v) for v in n])
        ax.minorticks_off()
        ax.set_xlabel(f"profiled subnets used to fit (log scale; model {data['feature_set']})")
    save_png(fig, path)


def summary(data: dict[str, Any]) -> str:
    first, last = data["points"][0], data["points"][-1]
    return (f"predictor on {data['target']}: MAPE {first['mape']:.1%} with {first['subnets']} "
            f"subnets, {last['mape']:.1%} with {last['subnets']} (±10 %: "
            f"{last['within_10']:.0%}, {data['n_test']} held out)")
