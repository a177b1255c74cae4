"""Evaluate a factory bundle without torch: assembler (ORT) -> apply_gates -> pruned model (ORT)
-> the task family's metric (``TaskFamily.evaluate``) on its test split. Used by ``nnfc eval``."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from nnfc.bundle import Bundle
from nnfc.errors import NnfcError
from nnfc.families import TaskFamily, family_from_manifest

DEFAULT_LIMITS = (0.05, 0.1, 0.25, 0.5, 1.0)
KEPT_SESSIONS = 4  # pruned models' sessions kept for reuse while evaluating


@dataclass(frozen=True)
class EvalRow:
    """One (task, limit): the family's metric ``metric`` = ``value`` of the pruned model."""

    task: list[str]
    limit: float
    metric: str
    value: float
    activation_ratio: float
    seen: bool

    def to_json(self) -> dict[str, Any]:
        """``{"task", "limit", "metric", "value", <metric>: value, "activation_ratio", "seen"}``
        (a classification family's rows keep their ``accuracy`` key)."""
        v = round(self.value, 4)
        return {"task": self.task, "limit": self.limit, "metric": self.metric, "value": v,
                self.metric: v, "activation_ratio": round(self.activation_ratio, 4),
                "seen": self.seen}


def task_family_of(bundle: Bundle) -> TaskFamily:
    """Rebuild the bundle's task family (same source and train/test split as in training)."""
    try:
        return family_from_manifest(bundle.manifest)
    except NnfcError as exc:
        raise NnfcError(f"{bundle.root}: {exc}") from exc


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
                    family: TaskFamily | None = None) -> list[EvalRow]:
    """The family's metric and the actual activation ratio of the pruned model per
    (task, limit); ``samples`` test samples per task. ``family``: the bundle's task family with
    other test data (default: the bundle's own)."""
    import onnx
    import onnxruntime as ort

    from nnfc.passes import apply_gates

    family = family or task_family_of(bundle)
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
    out_names = [o["name"] for o in bundle.output_spec]
    # identical gates (e.g. two limits the assembler answers alike) share a session; a few are
    # kept, not all: each holds its weights and activation arena (hundreds of MB at 160x160)
    sessions: OrderedDict[str, Any] = OrderedDict()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    rows = []
    for i in progress(range(len(pairs))):
        task, limit = pairs[i]
        g = {name: arr[i] for name, arr in gates.items()}
        key = hashlib.sha1(b"".join(np.ascontiguousarray(g[k], np.float32).tobytes()
                                    for k in sorted(g))).hexdigest()
        if key not in sessions:
            while len(sessions) >= KEPT_SESSIONS:
                sessions.popitem(last=False)
            pruned = apply_gates(supernet, g)
            sessions[key] = ort.InferenceSession(pruned.SerializeToString(), opts,
                                                 providers=["CPUExecutionProvider"])
        sessions.move_to_end(key)
        session = sessions[key]

        def run(x: np.ndarray, session=session) -> dict[str, np.ndarray]:
            return dict(zip(out_names, session.run(out_names, {in_name: x})))

        value = family.evaluate(task, run, samples)
        rows.append(EvalRow(list(task), limit, family.metric, value, activation_ratio(g),
                            task in seen))
    return rows


def summary_rows(rows: Sequence[EvalRow]) -> list[dict[str, Any]]:
    """Mean metric / activation per (seen|unseen, limit): ``{"group", "limit", "tasks",
    "metric", <metric>, "activation_ratio", "max_activation_ratio"}``."""
    out = []
    for group in (True, False):
        for limit in sorted({r.limit for r in rows}):
            rs = [r for r in rows if r.seen == group and r.limit == limit]
            if rs:
                out.append({"group": "seen" if group else "unseen", "limit": limit,
                            "tasks": len(rs),
                            "metric": rs[0].metric,
                            rs[0].metric: float(np.mean([r.value for r in rs])),
                            "activation_ratio": float(np.mean([r.activation_ratio for r in rs])),
                            "max_activation_ratio": float(max(r.activation_ratio for r in rs))})
    return out


def unseen_gaps(rows: Sequence[EvalRow]) -> list[dict[str, Any]]:
    """Per limit with both groups: how far the unseen tasks' mean metric trails the seen tasks'
    (``gap``), and the standard error of the unseen mean over its tasks (``unseen_sem``; None
    for one unseen task)."""
    out = []
    for limit in sorted({r.limit for r in rows}):
        seen = [r.value for r in rows if r.limit == limit and r.seen]
        unseen = [r.value for r in rows if r.limit == limit and not r.seen]
        if seen and unseen:
            sem = float(np.std(unseen, ddof=1) / np.sqrt(len(unseen))) if len(unseen) > 1 \
                else None
            out.append({"limit": limit, "gap": float(np.mean(seen) - np.mean(unseen)),
                        "unseen_sem": sem})
    return out
