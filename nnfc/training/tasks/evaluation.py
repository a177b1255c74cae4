"""Evaluate a factory bundle without torch: assembler (ORT) -> apply_gates -> pruned model (ORT)
on the task family's test split. Used by ``nnfc eval``."""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from nnfc.bundle import Bundle
from nnfc.errors import NnfcError
from nnfc.training.tasks import FAMILIES

DEFAULT_LIMITS = (0.03, 0.05, 0.1, 0.25, 1.0)


@dataclass(frozen=True)
class EvalRow:
    task: list[str]
    limit: float
    accuracy: float
    activation_ratio: float
    seen: bool

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "limit": self.limit, "accuracy": round(self.accuracy, 4),
                "activation_ratio": round(self.activation_ratio, 4), "seen": self.seen}


def task_family_of(bundle: Bundle):
    """Rebuild the bundle's task family (same source and train/test split as in training)."""
    info = bundle.manifest.get("task_family", {})
    cfg = bundle.manifest.get("training", {}).get("config", {}).get("task", {})
    name = info.get("family") or cfg.get("family")
    if name not in FAMILIES:
        raise NnfcError(f"{bundle.root}: unknown task family {name!r} in the manifest")
    return FAMILIES[name](mnist_dir=cfg.get("mnist_dir") or None,
                          test_fraction=cfg.get("test_fraction", 0.25),
                          split_seed=cfg.get("split_seed", 0),
                          unseen=bundle.tasks("unseen"), seen=bundle.tasks("seen"))


def run_assembler(bundle: Bundle, tasks: Sequence[Sequence[str]],
                  limits: Sequence[float]) -> dict[str, np.ndarray]:
    """One batched assembler call: row ``i`` = (tasks[i], limits[i]); gate.<layer> -> [B,size]."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(bundle.assembler_path), providers=["CPUExecutionProvider"])
    task = np.asarray([bundle.encode_task(list(t)) for t in tasks], np.float32)
    limit = np.asarray(limits, np.float32)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {"task": task, "limit": limit})))


def activation_ratio(gates: dict[str, np.ndarray]) -> float:
    """Active gate entries over all gate layers / their total size."""
    total = sum(g.size for g in gates.values())
    return float(sum(float(np.sum(g)) for g in gates.values()) / total)


def evaluate_bundle(bundle: Bundle, tasks: Sequence[Sequence[str]], limits: Iterable[float],
                    samples: int = 200, progress: Callable[[Iterable], Iterable] = lambda x: x,
                    ) -> list[EvalRow]:
    """Accuracy and actual activation ratio of the pruned model per (task, limit)."""
    import onnx
    import onnxruntime as ort

    from nnfc.passes import apply_gates

    family = task_family_of(bundle)
    limits = [float(x) for x in limits]
    for x in limits:
        if not 0 < x <= 1:
            raise NnfcError(f"limit {x:g} must lie in (0, 1] (a fraction of active gates)")
    for t in tasks:
        bundle.encode_task(list(t))  # unknown attributes: one clear error naming the vocabulary
    tasks = [family.parse_task(t) for t in tasks]
    seen = {tuple(t) for t in bundle.tasks("seen")}
    pairs = [(t, x) for t in tasks for x in limits]
    gates = run_assembler(bundle, [p[0] for p in pairs], [p[1] for p in pairs])
    supernet = onnx.load(str(bundle.supernet_path))
    in_name = bundle.input_spec.get("name", "input")
    data: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    sessions: dict[str, Any] = {}
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    rows = []
    for i in progress(range(len(pairs))):
        task, limit = pairs[i]
        g = {name: arr[i] for name, arr in gates.items()}
        key = hashlib.sha1(b"".join(np.ascontiguousarray(g[k], np.float32).tobytes()
                                    for k in sorted(g))).hexdigest()
        if key not in sessions:
            pruned = apply_gates(supernet, g)
            sessions[key] = ort.InferenceSession(pruned.SerializeToString(), opts,
                                                 providers=["CPUExecutionProvider"])
        if task not in data:
            rng = np.random.default_rng([zlib.crc32(",".join(task).encode()), 2024])
            x, _, y = family.sample([task], samples, "test", rng)
            data[task] = (x, y)
        x, y = data[task]
        logits = sessions[key].run(None, {in_name: x})[0]
        acc = float((logits.argmax(1) == y).mean())
        rows.append(EvalRow(list(task), limit, acc, activation_ratio(g), task in seen))
    return rows


def summary_rows(rows: Sequence[EvalRow]) -> list[dict[str, Any]]:
    """Mean accuracy / activation per (seen|unseen, limit)."""
    out = []
    for group in (True, False):
        for limit in sorted({r.limit for r in rows}):
            rs = [r for r in rows if r.seen == group and r.limit == limit]
            if rs:
                out.append({"group": "seen" if group else "unseen", "limit": limit,
                            "tasks": len(rs),
                            "accuracy": float(np.mean([r.accuracy for r in rs])),
                            "activation_ratio": float(np.mean([r.activation_ratio for r in rs])),
                            "max_activation_ratio": float(max(r.activation_ratio for r in rs))})
    return out
