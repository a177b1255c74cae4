"""Profile random subnets of a factory on a target: prune each random gate vector with the passes,
lower it, measure it (batch 1, warm-up, best of several rounds' medians; see ``measure``) and record latency and memory.

Gate vectors cover the whole range of activation ratios: subnet *i* gets a target ratio from a
shuffled even grid over [2%, 100%], and each layer jitters around it. The measurement file is
rewritten atomically after every subnet and resumed from where it stopped.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import onnx

from nnfc.bundle import Bundle, sha256_file
from nnfc.compiler.graph_stats import graph_stats
from nnfc.compiler.measure import measure
from nnfc.compiler.predictor import host_info, pack_gates, write_json_atomic
from nnfc.errors import NnfcError

MEASUREMENTS_FORMAT = "nnfc-profile-measurements"


def random_gates(names: Sequence[str], sizes: Sequence[int], count: int, seed: int = 0,
                 min_ratio: float = 0.02) -> list[dict[str, np.ndarray]]:
    """``count`` random gate vectors whose activation ratios spread evenly over [min_ratio, 1].

    The first is the full supernet. Each layer's ratio is the subnet's ratio plus noise, and
    at least one channel per layer stays on."""
    rng = np.random.default_rng(seed)
    ratios = rng.permutation(np.linspace(min_ratio, 1.0, max(1, count - 1)))
    out = [{n: np.ones(s, dtype=np.float32) for n, s in zip(names, sizes)}]
    for r in ratios[: count - 1]:
        gates = {}
        spread = rng.uniform(0.0, 0.25)
        for name, size in zip(names, sizes):
            layer_ratio = float(np.clip(r + rng.normal(0.0, spread), 0.0, 1.0))
            k = int(np.clip(round(layer_ratio * size), 1, size))
            g = np.zeros(size, dtype=np.float32)
            g[rng.choice(size, k, replace=False)] = 1.0
            gates[name] = g
        out.append(gates)
    return out[:count]


def bundle_fingerprint(bundle: Bundle) -> dict[str, str]:
    """What a profile belongs to: the bundle path and its supernet's sha256."""
    digest = bundle.manifest.get("files", {}).get("supernet.onnx") or sha256_file(
        bundle.supernet_path)
    return {"path": str(bundle.root), "supernet_sha256": digest}


def load_measurements(path: Path, fingerprint: dict, target: str) -> dict[str, Any] | None:
    """An existing measurement file for the same bundle and target, or None."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if (data.get("format") != MEASUREMENTS_FORMAT or data.get("target") != target
            or data.get("bundle", {}).get("supernet_sha256") != fingerprint["supernet_sha256"]):
        return None
    return data


def profile_subnets(bundle: Bundle, target, path: str | os.PathLike, subnets: int = 300,
                    runs: int = 10, warmup: int = 3, rounds: int = 10, seed: int = 0,
                    resume: bool = True,
                    progress: bool = True,
                    on_row: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Measure ``subnets`` random subnets on ``target``; write and return the measurements.

    Each row: packed gates, activation ratio, median/p90 latency (ms), the runtime's memory
    reading, and the pruned graph's exact params, FLOPs, parameter bytes and largest tensor."""
    from nnfc.passes import apply_gates  # the passes import onnx-ir: load only when profiling
    path = Path(path)
    fingerprint = bundle_fingerprint(bundle)
    data = load_measurements(path, fingerprint, target.name) if resume else None
    if data is None or data.get("seed") != seed:
        data = {"format": MEASUREMENTS_FORMAT, "version": 1, "target": target.name,
                "bundle": fingerprint, "host": host_info(), "seed": seed,
                "target_options": dict(getattr(target, "options", {}) or {}),
                "runs": runs, "warmup": warmup, "rounds": rounds,
                "latency": "min over rounds of the median of runs (batch 1)", "rows": []}
    names = [f"gate.{g['name']}" for g in bundle.gate_layers]
    sizes = [int(g["size"]) for g in bundle.gate_layers]
    plan = random_gates(names, sizes, max(subnets, len(data["rows"])), seed)
    supernet = onnx.load(str(bundle.supernet_path))
    done = len(data["rows"])
    if done >= subnets:
        return data
    from tqdm import tqdm
    bar = tqdm(total=subnets, initial=done, desc=f"profiling {target.name}", unit="subnet",
               disable=not progress)
    with tempfile.TemporaryDirectory(prefix="nnfc-profile-") as tmp:
        for i in range(done, subnets):
            gates = plan[i]
            t0 = time.perf_counter()
            pruned = apply_gates(supernet, gates)
            stats = graph_stats(pruned)
            work = Path(tmp) / f"subnet{i}"
            work.mkdir()
            onnx.save_model(pruned, str(work / "model.onnx"))
            artifact = target.lower(work / "model.onnx", work)
            result = measure(target, artifact, runs=runs, warmup=warmup, rounds=rounds)
            on = sum(float(g.sum()) for g in gates.values())
            row = {"index": i, "gates": pack_gates(gates),
                   "activation_ratio": on / max(1, sum(sizes)),
                   "latency_ms": result.latency_ms, "latency_p90_ms": result.p90_ms,
                   "round_medians_ms": result.round_medians,
                   "runtime_memory_mb": result.runtime_memory_mb,
                   "graph_memory_mb": stats.memory_mb, "params": stats.params,
                   "param_bytes": stats.param_bytes, "peak_tensor_bytes": stats.peak_tensor_bytes,
                   "flops": stats.flops, "seconds": time.perf_counter() - t0}
            data["rows"].append(row)
            write_json_atomic(path, data)
            if on_row:
                on_row(row)
            bar.set_postfix(lat=f"{result.latency_ms:.2f}ms", ratio=f"{row['activation_ratio']:.2f}")
            bar.update(1)
            for f in work.iterdir():
                f.unlink()
            work.rmdir()
    bar.close()
    return data


def read_measurements(path: str | os.PathLike) -> dict[str, Any]:
    """A measurement file written by ``nnfc profile`` or converted from device-side runs.

    Needs ``rows`` with ``gates`` ({gate: "0101…" or [0,1,…]}), ``latency_ms`` and a memory
    figure (``graph_memory_mb`` or ``runtime_memory_mb``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NnfcError(f"measurement file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NnfcError(f"cannot read measurements {path}: {exc}") from exc
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise NnfcError(f"{path} has no measurement rows (expected {{'rows': [...]}})")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "gates" not in row or "latency_ms" not in row:
            raise NnfcError(f"{path}: row {i} needs 'gates' and 'latency_ms'")
    return data
