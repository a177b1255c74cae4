"""Layer-wise latency/memory predictor of pruned subnets on one target (the paper's §3.5).

latency  = bias + Σ_layers terms of each layer's active input/output channels
           (``cost_structure``). The feature set is chosen by k-fold cross-validation among
           ``FEATURE_SETS`` — total MACs; per layer MACs; per layer MACs + memory traffic
           (input/output elements, weights); per layer MACs by channel-alignment class + output
           elements; and that plus per-gate shape terms (alignment flags, hinges in the active
           count) — each with non-negative cost coefficients and a few ridge strengths, so the
           model has as many parameters as the profiled subnets support;
memory   = c0 + c1 · parameter bytes + c2 · largest intermediate tensor, both computed exactly
           from the gates (the pruned graph's own figures, ``graph_stats``, predicted by the
           passes' own channel regions and op rules: ``cost_analysis``).

Coefficients are fitted by bounded least squares on relative error (scipy). The out-of-fold
errors give the accuracy (1 − MAPE, shares within ±5 % / ±10 %) and calibrate the safety margin
(a quantile of how far measurements exceeded predictions). Saved as JSON with the runtime, host
and bundle it was made for. Never imports torch.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from nnfc.atomic import atomic_file, write_json_atomic
from nnfc.compiler.cost_legacy import structure_from_json
from nnfc.compiler.cost_structure import CostStructure
from nnfc.errors import NnfcError
from nnfc.schema import Obj, SchemaError

FORMAT = "nnfc-predictor"
VERSION = 1


def host_info() -> dict[str, Any]:
    """What the measurements depend on: CPU model, core count, OS, runtime versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import onnxruntime  # local: only to record its version
    return {"cpu": cpu, "cores": os.cpu_count(), "machine": platform.machine(),
            "system": platform.system(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__}


#: Channel-alignment classes of the latency features. CPU kernels pick blocked layouts (ONNX
#: Runtime's NCHWc, XNNPACK, TensorRT tactics) by channel alignment, so a layer's MACs are split
#: by the largest block dividing its active input channels: each class gets its own coefficient.
ALIGN_BLOCKS: tuple[int, ...] = (16, 8, 4)


#: Knots (fractions of a gate's size) of the per-gate hinge features.
HINGES: tuple[float, ...] = (0.125, 0.25, 0.5, 0.75)


def cost_features(structure: CostStructure, gates: Mapping[str, np.ndarray],
                  blocks: Sequence[int] = ALIGN_BLOCKS) -> np.ndarray:
    """[B, L·(len(blocks)+2)] cost features (millions), all with non-negative coefficients:
    per layer its MACs split by the alignment class of its active input channels (out channels
    padded to that block), then its output elements."""
    terms = structure.layer_terms(gates)
    a_in, a_out = terms["active_in"], terms["active_out"]
    kpos = np.array([lay.kernel * lay.spatial for lay in structure.layers], dtype=np.float64)
    dw = np.array([lay.depthwise for lay in structure.layers], dtype=bool)
    cols = []
    rest = np.ones_like(a_in, dtype=bool)
    for b in blocks:
        cls = rest & (a_in % b == 0)
        padded_out = np.ceil(a_out / b) * b
        cols.append(np.where(cls, np.where(dw, padded_out, a_in * padded_out) * kpos, 0.0))
        rest &= ~cls
    cols.append(np.where(rest, terms["macs"], 0.0))
    cols.append(terms["out_elems"])
    return np.concatenate(cols, axis=1) / 1e6


def shape_features(structure: CostStructure, gates: Mapping[str, np.ndarray],
                   blocks: Sequence[int] = ALIGN_BLOCKS) -> np.ndarray:
    """[B, T·(len(blocks)+len(HINGES))] corrections per gated channel set (a region of the
    passes; either sign): is its kept count a multiple of each block, and hinges
    max(0, count − knot·size) — so each layer's cost can bend with its channel count where kernels
    change speed."""
    counts = structure.set_counts(gates)
    cols = []
    for j, channel_set in enumerate(structure.sets):
        size = float(channel_set.size)
        c = counts[:, j]
        cols += [(c % b == 0).astype(np.float64) for b in blocks]
        cols += [np.maximum(0.0, c - q * size) / size for q in HINGES]
    return np.stack(cols, axis=1) if cols else np.zeros((counts.shape[0], 0))


def latency_features(structure: CostStructure, gates: Mapping[str, np.ndarray],
                     shape: bool = True) -> np.ndarray:
    """Cost features (non-negative coefficients), then shape features (free sign) if ``shape``."""
    cost = cost_features(structure, gates)
    return np.concatenate([cost, shape_features(structure, gates)], axis=1) if shape else cost


def traffic_features(structure: CostStructure, gates: Mapping[str, np.ndarray]) -> np.ndarray:
    """[B, 4L] per layer: MACs, input elements read, output elements written, weights (M)."""
    t = structure.layer_terms(gates)
    return np.concatenate([t["macs"], t["in_elems"], t["out_elems"], t["params"]], axis=1) / 1e6


#: The latency models compared by cross-validation: name -> (features(structure, gates),
#: how many leading features take non-negative coefficients (None: all), description).
FEATURE_SETS: dict[str, tuple] = {
    "total-macs": (lambda s, g: s.layer_terms(g)["macs"].sum(axis=1, keepdims=True) / 1e6,
                   None, "total MACs (M)"),
    "layer-macs": (lambda s, g: s.layer_terms(g)["macs"] / 1e6, None, "per layer MACs (M)"),
    "layer-traffic": (traffic_features, None,
                      "per layer MACs, input elements, output elements, weights (M)"),
    "layer-align": (lambda s, g: cost_features(s, g), None,
                    f"per layer MACs (M) by input-channel alignment class {list(ALIGN_BLOCKS)} "
                    "+ unaligned, output elements (M)"),
    "layer-align-shape": (lambda s, g: latency_features(s, g, True),
                          lambda s: n_cost_features(s),
                          "layer-align, then per gated channel set: aligned-to-block flags and "
                          f"hinges at {list(HINGES)} of its size"),
}

#: Ridge strengths tried (relative to the scaled design; 0 = bounded least squares alone).
RIDGES: tuple[float, ...] = (0.0, 1e-5, 1e-4)


def feature_matrix(name: str, structure: CostStructure, gates: Mapping[str, np.ndarray]
                   ) -> tuple[np.ndarray, int]:
    """(features [B, F], number of leading non-negative coefficients) of a feature set."""
    fn, n_pos, _ = FEATURE_SETS[name]
    x = fn(structure, gates)
    return x, x.shape[1] if n_pos is None else n_pos(structure)


def n_cost_features(structure: CostStructure) -> int:
    """How many leading latency features take non-negative coefficients."""
    return (len(ALIGN_BLOCKS) + 2) * len(structure.layers)


def memory_features(structure: CostStructure, gates: Mapping[str, np.ndarray]) -> np.ndarray:
    """[B, 2] features: parameter bytes and the largest intermediate tensor, in MB."""
    terms = structure.memory_terms(gates)
    return np.stack([terms["param_bytes"], terms["peak_bytes"]], axis=1) / 1e6


def mape_accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    """1 − mean absolute percentage error."""
    true = np.asarray(true, dtype=np.float64)
    return float(1.0 - np.mean(np.abs(np.asarray(pred) - true) / np.maximum(np.abs(true), 1e-12)))


@dataclass
class LinearModel:
    """``y = intercept + features · coef``."""

    intercept: float
    coef: list[float]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.intercept + np.asarray(x) @ np.asarray(self.coef)

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, n_positive: int | None = None,
            ridge: float = 0.0) -> "LinearModel":
        """Least squares on relative errors (rows weighted 1/y, so small subnets are predicted
        as well, relatively, as large ones); the first ``n_positive`` coefficients (default:
        all) are constrained non-negative, the rest and the intercept are free; ``ridge``
        penalises the (column-scaled) coefficients, not the intercept."""
        from scipy.optimize import lsq_linear  # scikit-learn's dependency; fit only
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        n_positive = x.shape[1] if n_positive is None else n_positive
        design = np.hstack([np.ones((x.shape[0], 1)), x])
        scale = np.maximum(np.abs(design).max(axis=0), 1e-12)
        w = 1.0 / np.maximum(np.abs(y), 1e-9)
        lower = np.full(design.shape[1], -np.inf)
        lower[1:1 + n_positive] = 0.0
        a, b = design / scale * w[:, None], y * w
        if ridge > 0:
            pen = np.sqrt(ridge * len(y)) * np.eye(design.shape[1])[1:]
            a, b = np.vstack([a, pen]), np.concatenate([b, np.zeros(len(pen))])
        res = lsq_linear(a, b, bounds=(lower, np.full(design.shape[1], np.inf)), method="bvls")
        coef = res.x / scale
        return cls(float(coef[0]), [float(c) for c in coef[1:]])


@dataclass
class Predictor:
    """Latency (ms) and memory (MB) predictions for gate vectors on one target."""

    target: str
    structure: CostStructure
    latency: LinearModel
    memory: LinearModel
    meta: dict[str, Any] = field(default_factory=dict)
    features: str = "layer-align-shape"    # the latency model's feature set (FEATURE_SETS)

    def predict(self, gates: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(latency_ms [B], memory_mb [B]) for gates given as [size] or [B, size] arrays."""
        lat = self.latency(feature_matrix(self.features, self.structure, gates)[0])
        mem = self.memory(memory_features(self.structure, gates))
        return np.maximum(lat, 1e-6), np.maximum(mem, 1e-6)

    @property
    def margins(self) -> tuple[float, float]:
        """Relative safety margins (latency, memory): the calibrated quantile of how far
        measurements exceeded cross-validated predictions (older profiles: held-out p90)."""
        cal = self.meta.get("margin")
        if cal:
            return float(cal["latency"]), float(cal["memory"])
        acc = self.meta.get("accuracy", {})
        return (float(acc.get("latency", {}).get("p90_rel_error", 0.0)),
                float(acc.get("memory", {}).get("p90_rel_error", 0.0)))

    # ---- persistence
    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "target": self.target, **self.meta,
                "structure": self.structure.to_json(),
                "latency_model": {"intercept": self.latency.intercept,
                                  "coef": self.latency.coef, "feature_set": self.features,
                                  "features": FEATURE_SETS[self.features][2]},
                "memory_model": {"intercept": self.memory.intercept, "coef": self.memory.coef,
                                 "features": "parameter MB, largest intermediate tensor MB"}}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the predictor JSON atomically."""
        return write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Predictor":
        """Read a predictor JSON through :func:`nnfc.jsonfile.read_json` (:data:`nnfc.file_schemas.PREDICTOR`: every
        coefficient finite, margins and reference latency non-negative, thread counts
        sane); one NnfcError naming the file and the field."""
        from nnfc.file_schemas import PREDICTOR
        from nnfc.jsonfile import read_json
        path = Path(path)
        data = read_json(path, Obj(), what="predictor")
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise NnfcError(f"{path} is not an nnfc predictor (version {VERSION}); "
                            "make it again with `nnfc profile`")
        try:
            PREDICTOR.check(data)
        except SchemaError as exc:
            raise NnfcError(f"predictor {path}: field {exc.field}: {exc.message}") from None
        meta = {k: v for k, v in data.items()
                if k not in ("format", "version", "target", "structure", "latency_model",
                             "memory_model")}
        try:
            structure = structure_from_json(data["structure"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise NnfcError(f"predictor {path}: field structure is malformed "
                            f"({type(exc).__name__}: {exc}); make it again with "
                            "`nnfc profile`") from None
        lat = data["latency_model"]
        features = lat.get("feature_set") or (  # profiles made before the feature sets
            "layer-align-shape" if len(lat["coef"]) > n_cost_features(structure)
            else "layer-align")
        if features not in FEATURE_SETS:
            raise NnfcError(f"{path}: unknown latency feature set {features!r}; make it again "
                            "with `nnfc profile`")
        predictor = cls(data["target"], structure, LinearModel(lat["intercept"], lat["coef"]),
                        LinearModel(data["memory_model"]["intercept"],
                                    data["memory_model"]["coef"]), meta, features)
        predictor.check_fits(path)
        return predictor

    def check_fits(self, path) -> None:
        """One prediction of the full subnet: the coefficients must fit the structure's features
        and give finite figures (a file from someone else fails here, not mid-compile)."""
        try:
            full = {g: np.ones((1, n), np.float32)
                    for g, n in zip(self.structure.gates, self.structure.sizes)}
            with np.errstate(all="ignore"):  # an overflow is reported below, as not finite
                lat, mem = self.predict(full)
            ok = lat.shape == (1,) and mem.shape == (1,) and np.all(np.isfinite([lat, mem]))
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
            raise NnfcError(f"predictor {path}: its coefficients do not fit its structure "
                            f"({type(exc).__name__}: {exc}); make it again with "
                            "`nnfc profile`") from None
        if not ok:
            raise NnfcError(f"predictor {path}: the full subnet's prediction is not finite; "
                            "make it again with `nnfc profile`")




def kfold_predictions(x: np.ndarray, y: np.ndarray, n_pos: int, ridge: float = 0.0,
                      k: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions of a ``LinearModel`` fitted on the other k-1 folds."""
    folds = np.array_split(np.random.default_rng(seed).permutation(len(y)), k)
    out = np.empty(len(y))
    for f in folds:
        train = np.setdiff1d(np.arange(len(y)), f)
        out[f] = LinearModel.fit(x[train], y[train], n_pos, ridge)(x[f])
    return out


def error_shares(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """1 − MAPE and the shares within ±5 % / ±10 % of ``true``."""
    rel = np.abs(np.asarray(pred) - true) / np.maximum(np.abs(true), 1e-12)
    return {"accuracy": float(1 - rel.mean()), "within_5": float((rel <= 0.05).mean()),
            "within_10": float((rel <= 0.10).mean()), "p90_rel_error": float(
                np.percentile(rel, 90)), "max_rel_error": float(rel.max())}


def select_latency_model(structure: CostStructure, gates: Mapping[str, np.ndarray],
                         y: np.ndarray, k: int = 5, seed: int = 0
                         ) -> tuple[str, float, np.ndarray, dict[str, dict]]:
    """Pick the feature set and ridge strength with the lowest k-fold CV error (MAPE).

    Returns (feature set, ridge, its out-of-fold predictions, the CV table)."""
    table, best = {}, None
    for name in FEATURE_SETS:
        x, n_pos = feature_matrix(name, structure, gates)
        for ridge in RIDGES:
            pred = kfold_predictions(x, y, n_pos, ridge, k, seed)
            score = error_shares(pred, y)
            table[f"{name} ridge={ridge:g}"] = {**score, "features": int(x.shape[1])}
            if best is None or score["accuracy"] > best[0]:
                best = (score["accuracy"], name, ridge, pred)
    return best[1], best[2], best[3], table


def cv_residuals(structure: CostStructure, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Signed relative 5-fold CV errors (measured / predicted − 1) of each row's latency under
    a cheap, well-conditioned model (per layer MACs and traffic, light ridge)."""
    gates = {g: np.stack([unpack_gates(r["gates"])[g] for r in rows]) for g in structure.gates}
    y = np.array([float(r["latency_ms"]) for r in rows])
    x, n_pos = feature_matrix("layer-traffic", structure, gates)
    pred = kfold_predictions(x, y, n_pos, 1e-3)
    return y / np.maximum(pred, 1e-9) - 1.0


#: Which quantile of "measured above prediction" the latency/memory safety margins cover.
MARGIN_QUANTILE = 0.9


def fit_predictor(structure: CostStructure, target: str, rows: Sequence[Mapping[str, Any]],
                  test_fraction: float = 0.2, min_test: int = 50, seed: int = 0,
                  memory_key: str = "graph_memory_mb", meta: Mapping[str, Any] | None = None,
                  folds: int = 5) -> tuple[Predictor, dict[str, np.ndarray]]:
    """Fit on profiled rows (``gates``, ``latency_ms``, ``memory_key``).

    The latency model (feature set and ridge, ``FEATURE_SETS`` x ``RIDGES``) is chosen by
    ``folds``-fold cross-validation; its CV errors calibrate the safety margins. A held-out
    split (``max(min_test, test_fraction·n)`` rows, at most half) is scored as well; the final
    model is refitted on all rows. Returns the predictor and the out-of-fold arrays for plots.
    """
    n = len(rows)
    if n < 10:
        raise NnfcError(f"need at least 10 profiled subnets to fit a predictor, have {n}")
    gates = {g: np.stack([unpack_gates(r["gates"])[g] for r in rows]) for g in structure.gates}
    n_test = min(n // 2, max(min_test, int(round(test_fraction * n))))
    y_lat = np.array([float(r["latency_ms"]) for r in rows])
    y_mem = np.array([float(r[memory_key]) for r in rows])
    x_mem = memory_features(structure, gates)
    k = max(2, min(folds, n // 5))
    features, ridge, cv_lat, table = select_latency_model(structure, gates, y_lat, k, seed)
    x_lat, n_pos = feature_matrix(features, structure, gates)
    cv_mem = kfold_predictions(x_mem, y_mem, x_mem.shape[1], 0.0, k, seed)
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    lat_m = LinearModel.fit(x_lat[train], y_lat[train], n_pos, ridge)
    mem_m = LinearModel.fit(x_mem[train], y_mem[train])
    p_lat, p_mem = lat_m(x_lat[test]), mem_m(x_mem[test])

    def score(pred, true):
        return {**error_shares(pred, true), "n_test": int(len(true)), "n_train": int(len(train))}

    def above(pred, true):  # how far measurements exceed predictions, by quantile
        r = true / np.maximum(pred, 1e-12) - 1.0
        return {f"q{int(q * 100)}": float(np.quantile(r, q)) for q in (0.5, 0.9, 0.95, 0.99)} | {
            "max": float(r.max())}

    lat_above, mem_above = above(cv_lat, y_lat), above(cv_mem, y_mem)
    q = f"q{int(MARGIN_QUANTILE * 100)}"
    accuracy = {"latency": score(p_lat, y_lat[test]), "memory": score(p_mem, y_mem[test]),
                "latency_cv": {**error_shares(cv_lat, y_lat), "folds": k, "n": n},
                "memory_cv": {**error_shares(cv_mem, y_mem), "folds": k, "n": n},
                "latency_model": {"feature_set": features, "ridge": ridge,
                                  "cv_table": table,
                                  "selected_by": f"lowest {k}-fold CV MAPE"},
                "latency_shape_terms": features.endswith("shape"),
                "memory_target": memory_key, "metric": "1 - MAPE on held-out subnets",
                "runtime_memory_check": _runtime_memory_check(rows, y_mem)}
    margin = {"latency": max(0.0, lat_above[q]), "memory": max(0.0, mem_above[q]),
              "quantile": MARGIN_QUANTILE, "latency_above_prediction": lat_above,
              "memory_above_prediction": mem_above,
              "source": f"{k}-fold CV: measured / predicted - 1"}
    predictor = Predictor(target, structure, LinearModel.fit(x_lat, y_lat, n_pos, ridge),
                          LinearModel.fit(x_mem, y_mem),
                          {**dict(meta or {}), "accuracy": accuracy, "margin": margin,
                           "n_subnets": n}, features)
    held = {"latency_pred": cv_lat, "latency_true": y_lat, "memory_pred": cv_mem,
            "memory_true": y_mem}
    return predictor, held


def _runtime_memory_check(rows: Sequence[Mapping[str, Any]], graph_mb: np.ndarray) -> dict:
    """How the runtime's own memory reading relates to the graph figure (where it has one)."""
    rt = np.array([float(r["runtime_memory_mb"]) if r.get("runtime_memory_mb") is not None
                   else np.nan for r in rows])
    ok = np.isfinite(rt)
    if ok.sum() < 3:
        return {"note": "the measurements carry no runtime memory reading"}
    rt, g = rt[ok], graph_mb[ok]
    corr = float(np.corrcoef(g, rt)[0, 1]) if rt.std() > 0 and g.std() > 0 else None
    ratio = rt / np.maximum(g, 1e-9)
    return {"subnets": int(ok.sum()),
            "runtime_median_mb": float(np.median(rt)), "graph_median_mb": float(np.median(g)),
            "runtime_over_graph": {f"p{q}": float(np.percentile(ratio, q))
                                   for q in (5, 50, 95)},
            "runtime_minus_graph_mb": {f"p{q}": float(np.percentile(rt - g, q))
                                       for q in (5, 50, 95)},
            "zero_readings": int((rt <= 0).sum()), "correlation": corr,
            "note": "runtime reading = peak RSS growth of a fresh process that loads and runs "
                    "the subnet (every few subnets); the computed graph figure (parameters + "
                    "largest tensor) is the memory the predictor and budgets use"}


def plot_accuracy(held: Mapping[str, np.ndarray], accuracy: Mapping[str, Any],
                  path: str | os.PathLike, title: str = "") -> Path | None:
    """Predicted vs measured scatter (latency, memory) as a PNG; None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, key, unit in ((axes[0], "latency", "ms"), (axes[1], "memory", "MB")):
        true, pred = held[f"{key}_true"], held[f"{key}_pred"]
        lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.scatter(true, pred, s=12, alpha=0.7)
        ax.set_xlabel(f"measured {key} ({unit})")
        ax.set_ylabel(f"predicted {key} ({unit})")
        cv = accuracy.get(f"{key}_cv") or accuracy[key]
        ax.set_title(f"{key}: 1-MAPE {cv['accuracy']:.1%}, ±5% {cv.get('within_5', 0):.0%}, "
                     f"±10% {cv.get('within_10', 0):.0%}\n({len(true)} subnets, out-of-fold)",
                     fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_file(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png", metadata={"Software": "nnfc profile"})
    finally:
        plt.close(fig)
    return path


# ---- gate packing for JSON profiles: "0110..." strings keep files small and readable
def pack_gates(gates: Mapping[str, np.ndarray]) -> dict[str, str]:
    return {k: "".join("1" if v > 0.5 else "0" for v in np.asarray(a).reshape(-1))
            for k, a in gates.items()}


def unpack_gates(packed: Mapping[str, str | Sequence[float]]) -> dict[str, np.ndarray]:
    out = {}
    for k, v in packed.items():
        if isinstance(v, str):
            out[k] = (np.frombuffer(v.encode("ascii"), dtype=np.uint8) == ord("1")).astype(
                np.float32)
        else:
            out[k] = np.asarray(v, dtype=np.float32)
    return out
