"""Layer-wise latency/memory predictor of pruned subnets on one target (the paper's §3.5).

latency  = bias + Σ_layers (a_l · MACs_l + b_l · output elements_l) + Σ_gates shape terms, where
           each layer's MACs (split by channel-alignment class) and output size follow its active
           input/output channels (``cost_structure``), and the shape terms (alignment flags,
           hinges in the active count) let a layer's cost bend where kernels change speed;
memory   = c0 + c1 · parameter bytes + c2 · largest intermediate tensor, both computed exactly
           from the gates (the pruned graph's own figures; see ``graph_stats``).

Coefficients are fitted by bounded least squares on relative error (scipy; cost terms
non-negative) on profiled subnets; the held-out accuracy is 1 − MAPE. Saved as JSON with the runtime, host and bundle it was made for.
Never imports torch.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from nnfc.atomic import atomic_file, write_json_atomic
from nnfc.compiler.cost_structure import CostStructure
from nnfc.errors import NnfcError

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
    """[B, T·(len(blocks)+len(HINGES))] corrections per gated channel set (either sign): is
    its active count a multiple of each block, and hinges max(0, count − knot·size) — so each
    layer's cost can bend with its channel count where kernels change speed."""
    counts = structure.tag_counts(gates)
    cols = []
    for j, tag in enumerate(structure.tags):
        size = float(structure.sizes[structure.gates.index(tag[0])])
        c = counts[:, j]
        cols += [(c % b == 0).astype(np.float64) for b in blocks]
        cols += [np.maximum(0.0, c - q * size) / size for q in HINGES]
    return np.stack(cols, axis=1) if cols else np.zeros((counts.shape[0], 0))


def latency_features(structure: CostStructure, gates: Mapping[str, np.ndarray],
                     shape: bool = True) -> np.ndarray:
    """Cost features (non-negative coefficients), then shape features (free sign) if ``shape``."""
    cost = cost_features(structure, gates)
    return np.concatenate([cost, shape_features(structure, gates)], axis=1) if shape else cost


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
    def fit(cls, x: np.ndarray, y: np.ndarray, n_positive: int | None = None) -> "LinearModel":
        """Least squares on relative errors (rows weighted 1/y, so small subnets are predicted
        as well, relatively, as large ones); the first ``n_positive`` coefficients (default:
        all) are constrained non-negative, the rest and the intercept are free."""
        from scipy.optimize import lsq_linear  # scikit-learn's dependency; fit only
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        n_positive = x.shape[1] if n_positive is None else n_positive
        design = np.hstack([np.ones((x.shape[0], 1)), x])
        scale = np.maximum(np.abs(design).max(axis=0), 1e-12)
        w = 1.0 / np.maximum(np.abs(y), 1e-9)
        lower = np.full(design.shape[1], -np.inf)
        lower[1:1 + n_positive] = 0.0
        res = lsq_linear(design / scale * w[:, None], y * w,
                         bounds=(lower, np.full(design.shape[1], np.inf)), method="bvls")
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

    def predict(self, gates: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(latency_ms [B], memory_mb [B]) for gates given as [size] or [B, size] arrays."""
        lat = self.latency(latency_features(self.structure, gates,
                                            len(self.latency.coef) > n_cost_features(
                                                self.structure)))
        mem = self.memory(memory_features(self.structure, gates))
        return np.maximum(lat, 1e-6), np.maximum(mem, 1e-6)

    @property
    def margins(self) -> tuple[float, float]:
        """Relative error bounds (held-out 90th percentile) used as a safety margin."""
        acc = self.meta.get("accuracy", {})
        return (float(acc.get("latency", {}).get("p90_rel_error", 0.0)),
                float(acc.get("memory", {}).get("p90_rel_error", 0.0)))

    # ---- persistence
    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "target": self.target, **self.meta,
                "structure": self.structure.to_json(),
                "latency_model": {"intercept": self.latency.intercept,
                                  "coef": self.latency.coef,
                                  "features": "per layer MACs (M) by input-channel alignment "
                                              f"class {list(ALIGN_BLOCKS)} + unaligned, output "
                                              "elements (M); then per gated channel set: "
                                              "aligned-to-block flags and hinges at "
                                              f"{list(HINGES)} of its size"},
                "memory_model": {"intercept": self.memory.intercept, "coef": self.memory.coef,
                                 "features": "parameter MB, largest intermediate tensor MB"}}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the predictor JSON atomically."""
        return write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Predictor":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise NnfcError(f"cannot read predictor {path}: {exc}") from exc
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise NnfcError(f"{path} is not an nnfc predictor (version {VERSION}); "
                            "make it again with `nnfc profile`")
        meta = {k: v for k, v in data.items()
                if k not in ("format", "version", "target", "structure", "latency_model",
                             "memory_model")}
        return cls(data["target"], CostStructure.from_json(data["structure"]),
                   LinearModel(data["latency_model"]["intercept"], data["latency_model"]["coef"]),
                   LinearModel(data["memory_model"]["intercept"], data["memory_model"]["coef"]),
                   meta)


def fit_predictor(structure: CostStructure, target: str, rows: Sequence[Mapping[str, Any]],
                  test_fraction: float = 0.2, min_test: int = 50, seed: int = 0,
                  memory_key: str = "graph_memory_mb", meta: Mapping[str, Any] | None = None
                  ) -> tuple[Predictor, dict[str, np.ndarray]]:
    """Fit on profiled rows (``gates``, ``latency_ms``, ``memory_key``), score on held-out ones.

    Holds out ``max(min_test, test_fraction·n)`` rows (at most half) and refits on all rows
    after scoring. Returns the predictor and the held-out arrays for plotting.
    """
    n = len(rows)
    if n < 10:
        raise NnfcError(f"need at least 10 profiled subnets to fit a predictor, have {n}")
    gates = {g: np.stack([unpack_gates(r["gates"])[g] for r in rows]) for g in structure.gates}
    n_test = min(n // 2, max(min_test, int(round(test_fraction * n))))
    # shape terms need data: 1.5 subnets per coefficient, else cost terms only
    n_shape = len(structure.tags) * (len(ALIGN_BLOCKS) + len(HINGES))
    use_shape = n - n_test >= 1.5 * (n_cost_features(structure) + n_shape)
    x_lat = latency_features(structure, gates, use_shape)
    x_mem = memory_features(structure, gates)
    y_lat = np.array([float(r["latency_ms"]) for r in rows])
    y_mem = np.array([float(r[memory_key]) for r in rows])
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    n_pos = n_cost_features(structure)
    lat_m = LinearModel.fit(x_lat[train], y_lat[train], n_pos)
    mem_m = LinearModel.fit(x_mem[train], y_mem[train])
    p_lat, p_mem = lat_m(x_lat[test]), mem_m(x_mem[test])

    def score(pred, true):
        rel = np.abs(pred - true) / np.maximum(np.abs(true), 1e-12)
        return {"accuracy": float(1 - rel.mean()), "p90_rel_error": float(np.percentile(rel, 90)),
                "max_rel_error": float(rel.max()), "n_test": int(len(true)),
                "n_train": int(len(train))}

    accuracy = {"latency": score(p_lat, y_lat[test]), "memory": score(p_mem, y_mem[test]),
                "latency_shape_terms": bool(use_shape),
                "memory_target": memory_key, "metric": "1 - MAPE on held-out subnets",
                "runtime_memory_check": _runtime_memory_check(rows, y_mem)}
    # final model: all rows
    predictor = Predictor(target, structure, LinearModel.fit(x_lat, y_lat, n_pos),
                          LinearModel.fit(x_mem, y_mem),
                          {**dict(meta or {}), "accuracy": accuracy, "n_subnets": n})
    held = {"latency_pred": p_lat, "latency_true": y_lat[test], "memory_pred": p_mem,
            "memory_true": y_mem[test]}
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
    return {"runtime_median_mb": float(np.median(rt)), "graph_median_mb": float(np.median(g)),
            "zero_readings": int((rt <= 0).sum()), "correlation": corr,
            "note": "runtime reading = resident-memory growth while the session runs; the "
                    "allocator reuses freed pages, so small models often read 0 — the exact "
                    "graph figure is the memory the predictor and budgets use"}


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
        ax.set_title(f"{key}: accuracy {accuracy[key]['accuracy']:.1%} "
                     f"(n={accuracy[key]['n_test']})")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_file(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
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
