"""What a factory knows, for ``nnfc info``, ``nnfc factory list`` and ``nnfc.load_factory``:
attributes, seen/unseen tasks, gate layers, the full supernet's size, the profiles this machine
can use (with the full supernet's predicted latency) and the training recipe."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnfc.bundle import Bundle, read_bundle
from nnfc.errors import NnfcError


@dataclass(frozen=True)
class Factory:
    """A factory bundle opened for reading (``nnfc.load_factory``)."""

    bundle: Bundle

    @property
    def path(self) -> Path:
        return self.bundle.root

    @property
    def attributes(self) -> list[str]:
        return self.bundle.attributes

    @property
    def seen_tasks(self) -> list[list[str]]:
        return self.bundle.tasks("seen")

    @property
    def unseen_tasks(self) -> list[list[str]]:
        return self.bundle.tasks("unseen")

    @property
    def gate_layers(self) -> list[dict[str, Any]]:
        return self.bundle.gate_layers

    @property
    def family(self) -> str | None:
        return (self.bundle.manifest.get("task_family") or {}).get("family")

    def size(self) -> dict[str, Any]:
        """The full supernet at batch 1: parameters, FLOPs, memory (MB) and bytes on disk."""
        import onnx

        from nnfc.compiler.graph_stats import graph_stats
        stats = graph_stats(onnx.load(str(self.bundle.supernet_path)))
        disk = sum((self.path / n).stat().st_size for n in self.bundle.manifest["files"])
        return {"params": stats.params, "flops": stats.flops, "memory_mb": stats.memory_mb,
                "bundle_mb": disk / 1e6}

    def profiles(self) -> list[dict[str, Any]]:
        """Profiles found for this factory: this machine's cache and the bundle's own."""
        from nnfc.profile_cache import cache_root, fingerprint
        found = []
        cached = cache_root() / "profiles" / fingerprint(self.path)
        for where, folder in (("cache", cached), ("bundle", self.path / "profiles")):
            for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
                if not path.name.endswith(".measurements.json"):
                    found.append(_profile_row(path, where, self.bundle))
        return [row for row in found if row is not None]

    def recipe(self) -> dict[str, Any]:
        """The training recipe (config) and the metrics the trainer recorded."""
        training = self.bundle.manifest.get("training") or {}
        return {"config": training.get("config"), "seed": training.get("seed"),
                "metrics": {k: v for k, v in (training.get("metrics") or {}).items()
                            if k != "history"}}

    def info(self) -> dict[str, Any]:
        """Everything above as one JSON-ready dict (``nnfc info --json``)."""
        m = self.bundle.manifest
        from nnfc.profile_cache import fingerprint
        return {"path": str(self.path), "fingerprint": fingerprint(self.path),
                "family": self.family,
                "backbone": m.get("backbone", {}).get("family"),
                "input": m.get("input"), "attributes": self.attributes,
                "tasks": {"seen": self.seen_tasks, "unseen": self.unseen_tasks},
                "gate_layers": self.gate_layers, "size": self.size(),
                "profiles": self.profiles(), "training": self.recipe()}


def _profile_row(path: Path, where: str, bundle: Bundle) -> dict[str, Any] | None:
    """One profile's target, precision, host, accuracy and full-supernet latency."""
    import numpy as np

    from nnfc.compiler.predictor import Predictor
    try:
        predictor = Predictor.load(path)
    except (NnfcError, OSError, ValueError, KeyError):
        return None
    meta = predictor.meta
    acc = meta.get("accuracy", {})
    full = {g: np.ones((1, s)) for g, s in zip(predictor.structure.gates,
                                                predictor.structure.sizes)}
    lat, _ = predictor.predict(full)
    host = meta.get("host", {})
    return {"target": predictor.target, "precision": meta.get("precision", "fp32"),
            "host": f"{host.get('cpu', '?')}, {host.get('cores', '?')} cores",
            "measured_here": bool(meta.get("measured_locally", True)), "where": where,
            "path": str(path), "full_latency_ms": float(lat[0]),
            "latency_accuracy": (acc.get("latency") or {}).get("accuracy"),
            "memory_accuracy": (acc.get("memory") or {}).get("accuracy")}


def load_factory(path: str | os.PathLike | None = None) -> Factory:
    """Open a factory bundle (a directory or a known factory's name; None: the default
    factory). Bad bundles raise :class:`nnfc.NnfcError`."""
    from nnfc.factories import resolve_factory
    return Factory(read_bundle(resolve_factory(path)))


def describe(info: dict[str, Any]) -> str:
    """``nnfc info``'s text: a few lines a person reads."""
    from nnfc.units import format_mb, format_ms
    size, tasks = info["size"], info["tasks"]
    lines = [f"factory  {info['path']}",
             f"family   {info['family'] or '?'} on a {info['backbone'] or '?'} supernet, input "
             f"{'x'.join(map(str, (info['input'] or {}).get('shape', [])))}",
             f"attributes ({len(info['attributes'])})  {', '.join(info['attributes'])}",
             f"tasks    {len(tasks['seen'])} seen: "
             + "; ".join(",".join(t) for t in tasks["seen"][:6])
             + (" …" if len(tasks["seen"]) > 6 else ""),
             f"         {len(tasks['unseen'])} unseen (never trained): "
             + "; ".join(",".join(t) for t in tasks["unseen"][:6])
             + (" …" if len(tasks["unseen"]) > 6 else ""),
             f"gates    {len(info['gate_layers'])} layers, "
             f"{sum(g['size'] for g in info['gate_layers'])} channels",
             f"supernet {size['params'] / 1e6:.2f} M params, {size['flops'] / 1e6:.0f} MFLOPs, "
             f"{format_mb(size['memory_mb'])} (params + largest tensor); bundle "
             f"{size['bundle_mb']:.1f} MB on disk"]
    if info["profiles"]:
        lines.append("profiles")
        for p in info["profiles"]:
            acc = p["latency_accuracy"]
            lines.append(f"  {p['target']:8s} {p['precision']:5s} full supernet "
                         f"{format_ms(p['full_latency_ms'])}; latency accuracy "
                         + (f"{acc:.1%}" if acc is not None else "?")
                         + f"; {p['host']} ({p['where']}: {p['path']})")
    else:
        lines.append("profiles none yet (a first nnfc compile profiles this machine)")
    cfg = (info["training"] or {}).get("config") or {}
    train = cfg.get("train") or {}
    if train:
        lines.append(f"recipe   {train.get('epochs')} epochs x {train.get('samples_per_epoch')} "
                     f"samples, {train.get('optimizer')} lr {train.get('lr')}, gate loss "
                     f"{train.get('gate_loss')} (lambda {train.get('lambda_gate')}), seed "
                     f"{info['training'].get('seed')}")
    metrics = (info["training"] or {}).get("metrics") or {}
    for split in ("seen", "unseen"):
        row = metrics.get(split)
        if isinstance(row, dict) and row:
            name = metrics.get("metric", "metric")
            lines.append(f"  {split:6s} {name} by limit: " + ", ".join(
                f"{k}: {v.get(name, '?')}" for k, v in row.items() if isinstance(v, dict)))
    return "\n".join(lines)


def to_json(info: dict[str, Any]) -> str:
    return json.dumps(info, indent=1)
