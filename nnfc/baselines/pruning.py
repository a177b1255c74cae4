"""Structural pruning of a gated supernet with torch-pruning (DepGraph), step by step until a
latency/memory budget holds by the factory's predictor.

The channels pruned are the factory's modular ones — the output channels of every gated layer —
so a pruned network is exactly a subnet of the supernet: its kept channels are a gate vector, and
the predictor (``nnfc/compiler/predictor.py``) prices it as it prices ``nnfc compile``'s
candidates, with the same safety margins. DepGraph finds the coupled parameters (the layer's BN,
the consumer's input channels); every other conv/linear is left whole (residual streams are not
gated in the factory either). Ranking: magnitude (L2 of the group) or Taylor (|w·∂L/∂w| on a batch
of the task's training samples); per layer (local) or across layers (global).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from nnfc.errors import NnfcError

IMPORTANCES = ("magnitude", "taylor")


def gated_roots(net) -> dict[str, tuple[str, int]]:
    """Module name -> (gate layer, size) for every module whose output channels a gate selects
    (the roots torch-pruning prunes)."""
    modules = dict(net.named_modules())
    sizes = {g.name: g.size for g in net.gate_layers()}
    roots = {}
    for param, axes in net.gated_param_axes().items():
        owner = param.rsplit(".", 1)[0]
        if 0 in axes and isinstance(modules.get(owner), (nn.Conv2d, nn.Linear)):
            roots[owner] = (axes[0], sizes[axes[0]])
    if not roots:
        raise NnfcError("the supernet has no gated conv/linear layer torch-pruning could prune")
    return roots


def gates_from_kept(kept: Mapping[str, list[int]], roots: Mapping[str, tuple[str, int]]
                    ) -> dict[str, np.ndarray]:
    """Gate inputs (``gate.<layer>``: 0/1 over the supernet's channels) of the kept channel
    indices, as the predictor and the passes take them."""
    from nnfc.training.gating import GATE_INPUT_PREFIX
    gates = {}
    for module, (layer, size) in roots.items():
        g = np.zeros(size, np.float32)
        g[list(kept[module])] = 1.0
        gates[GATE_INPUT_PREFIX + layer] = g
    return gates


@dataclass
class Budget:
    """A latency/memory budget checked on predictions inflated by the safety margins."""

    lat_ms: float | None
    mem_mb: float | None
    margins: tuple[float, float] = (0.0, 0.0)

    def holds(self, lat: float, mem: float) -> bool:
        return ((self.lat_ms is None or lat * (1 + self.margins[0]) <= self.lat_ms)
                and (self.mem_mb is None or mem * (1 + self.margins[1]) <= self.mem_mb))


@dataclass
class PruneResult:
    kept: dict[str, list[int]]
    gates: dict[str, np.ndarray]
    history: list                     # torch-pruning's pruning history (JSON-able)
    trace: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"kept": self.kept, "history": self.history, "trace": self.trace,
                "seconds": round(self.seconds, 3)}


def predict(predictor, gates: Mapping[str, np.ndarray]) -> tuple[float, float]:
    lat, mem = predictor.predict(gates)
    return float(np.ravel(lat)[0]), float(np.ravel(mem)[0])


def smallest(roots: Mapping[str, tuple[str, int]], max_ratio: float) -> dict[str, list[int]]:
    """The fewest channels per layer the schedule can reach (at least one each)."""
    return {m: list(range(max(1, size - int(math.floor(size * max_ratio + 1e-9)))))
            for m, (_, size) in roots.items()}


def prune_to_budget(net: nn.Module, image_shape: tuple[int, ...], predictor, budget: Budget,
                    *, importance: str = "magnitude", step: float = 0.02,
                    global_ranking: bool = False,
                    taylor_batch: Callable[[], Mapping[str, Any]] | None = None,
                    loss_fn: Callable | None = None, progress: bool = True) -> PruneResult:
    """Prune ``net`` in place, ``step`` of each gated layer's channels at a time, until the
    predicted latency/memory (with margins) fit ``budget``. One clear error, before any
    pruning, when even the smallest structure the schedule reaches does not fit."""
    import time

    import torch_pruning as tp
    from tqdm import tqdm

    if importance not in IMPORTANCES:
        raise NnfcError(f"unknown importance {importance!r} ({', '.join(IMPORTANCES)})")
    t0 = time.perf_counter()
    roots = gated_roots(net)
    max_ratio = 1.0 - 1.0 / min(size for _, size in roots.values())
    floor = predict(predictor, gates_from_kept(smallest(roots, max_ratio), roots))
    if not budget.holds(*floor):
        from nnfc.units import format_mb, format_ms
        raise NnfcError(
            "no pruning of the gated channels reaches this budget: the smallest structure "
            f"(one channel in the narrowest layer) is predicted at {format_ms(floor[0])} and "
            f"{format_mb(floor[1])} (with the predictor's margins "
            f"+{budget.margins[0]:.1%} / +{budget.margins[1]:.1%})")
    kept = {m: list(range(size)) for m, (_, size) in roots.items()}
    lat, mem = predict(predictor, gates_from_kept(kept, roots))
    trace = [{"step": 0, "pruned_ratio": 0.0, "latency_ms": lat, "memory_mb": mem}]
    if budget.holds(lat, mem):
        return PruneResult(kept, gates_from_kept(kept, roots), [], trace,
                           time.perf_counter() - t0)
    modules = dict(net.named_modules())
    name_of = {m: n for n, m in modules.items()}
    ignored = [m for n, m in modules.items()
               if isinstance(m, (nn.Conv2d, nn.Linear)) and n not in roots]
    imp = (tp.importance.GroupTaylorImportance() if importance == "taylor"
           else tp.importance.GroupMagnitudeImportance(p=2))
    steps = max(1, math.ceil(max_ratio / step))
    net.eval()
    pruner = tp.pruner.BasePruner(net, torch.randn(1, *image_shape), importance=imp,
                                  global_pruning=global_ranking, pruning_ratio=max_ratio,
                                  iterative_steps=steps, ignored_layers=ignored)
    bar = tqdm(range(1, steps + 1), desc=f"pruning ({importance})", disable=not progress,
               dynamic_ncols=True)
    for i in bar:
        if importance == "taylor":  # |w·∂L/∂w| on a batch of the task
            net.zero_grad(set_to_none=True)
            loss_fn(net, taylor_batch()).backward()
        for group in pruner.step(interactive=True):
            for item in group:
                dep = item.dep
                name = name_of.get(dep.target.module)
                if name in roots and pruner.DG.is_out_channel_pruning_fn(dep.handler):
                    drop = {int(j) for j in item.idxs}
                    kept[name] = [c for j, c in enumerate(kept[name]) if j not in drop]
            group.prune()
        lat, mem = predict(predictor, gates_from_kept(kept, roots))
        ratio = 1 - sum(map(len, kept.values())) / sum(s for _, s in roots.values())
        trace.append({"step": i, "pruned_ratio": round(ratio, 4), "latency_ms": lat,
                      "memory_mb": mem})
        bar.set_postfix(pruned=f"{ratio:.0%}", lat=f"{lat:.3g}ms", mem=f"{mem:.3g}MB",
                        refresh=False)
        if budget.holds(lat, mem):
            break
    bar.close()
    net.zero_grad(set_to_none=True)
    if not budget.holds(lat, mem):  # the schedule's last step stopped short of the estimate
        raise NnfcError(f"pruning stopped at {trace[-1]['pruned_ratio']:.0%} of the gated "
                        f"channels, predicted {lat:.3g} ms / {mem:.3g} MB: over the budget")
    history = [[n, bool(o), [int(j) for j in idx]] for n, o, idx in pruner.pruning_history()]
    return PruneResult(kept, gates_from_kept(kept, roots), history, trace,
                       time.perf_counter() - t0)


def replay(net: nn.Module, image_shape: tuple[int, ...], history: list) -> None:
    """Prune ``net`` (the unpruned supernet) in place exactly as a saved history did."""
    import torch_pruning as tp
    if not history:
        return
    graph = tp.DependencyGraph().build_dependency(net, example_inputs=torch.randn(1, *image_shape))
    graph.load_pruning_history([(n, o, list(idx)) for n, o, idx in history])
