"""Prune&Tune: the factory's supernet trained on all tasks, every gate on, pruned structurally
with torch-pruning step by step until the budget holds by the factory's predictor, then
fine-tuned on the task for a set number of epochs with the factory's recipe; exported and
measured like a compile output.

Resumable: the checkpoint holds the pruning (torch-pruning's history, replayed on the supernet)
and then each fine-tuning epoch; ``--resume`` skips what is done.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from nnfc.baselines import task_data
from nnfc.baselines.artifact import finish
from nnfc.baselines.context import (BaselineContext, BaselineRequest, default_checkpoint,
                                   open_context)
from nnfc.baselines.pruning import (Budget, gated_roots, gates_from_kept, prune_to_budget,
                                    replay)
from nnfc.baselines.task_training import (check_run, read_state, train_task, training_record,
                                          with_epochs)
from nnfc.errors import NnfcError
from nnfc.training.checkpoint import save_checkpoint

#: Fine-tuning epochs default to this share of the factory's (the paper: 4 h vs 66 h ≈ 1/16;
#: at least one epoch).
FINETUNE_SHARE = 1 / 8


@dataclasses.dataclass
class PruneTuneRequest(BaselineRequest):
    """``epochs``: fine-tuning epochs, None = ``FINETUNE_SHARE`` of the factory's."""

    importance: str = "magnitude"      # or "taylor"
    step: float = 0.02                 # share of each gated layer's channels per pruning step
    global_ranking: bool = False
    margin: float | None = None        # None: the predictor's held-out p90 error (as compile)
    lr: float | None = None            # fine-tuning peak learning rate; None: the factory's


def default_finetune_epochs(factory_epochs: int) -> int:
    return max(1, round(factory_epochs * FINETUNE_SHARE))


def load_supernet(ctx: BaselineContext, cfg) -> torch.nn.Module:
    """The factory's trained supernet (``supernet.safetensors``), every gate on."""
    path = ctx.bundle.weights_path
    if not path.is_file():
        raise NnfcError(f"{ctx.bundle.root}: supernet.safetensors is missing; Prune&Tune starts "
                        "from the trained supernet's weights")
    net = task_data.build_network(cfg, ctx.family)
    task_data.load_weights(net, path)
    return net.eval()


def prune_tune(req: PruneTuneRequest, log: Callable[[str], None] = print
               ) -> dict[str, Any] | None:
    """Prune to the budget, fine-tune, export, measure, evaluate; returns the report (None when
    stopped early)."""
    if req.lat_ms is None and req.mem_mb is None:
        raise NnfcError("give a budget: --lat (e.g. 5ms) and/or --mem (e.g. 50MB)")
    if not 0 < req.step <= 0.5:
        raise NnfcError("--step must lie in (0, 0.5]")
    ctx = open_context(req.bundle, req.task, req.target, req.profile, req.out)
    factory_epochs = ctx.cfg.train.epochs
    cfg = with_epochs(ctx.cfg, req.epochs or default_finetune_epochs(factory_epochs), req.lr)
    margins = ctx.predictor.margins if req.margin is None else (req.margin, req.margin)
    budget = Budget(req.lat_ms, req.mem_mb, margins)
    ckpt = Path(req.checkpoint) if req.checkpoint else default_checkpoint(req.out)
    run = {"method": "prune-tune", "task": list(ctx.task), "target": ctx.target_name,
           "supernet_sha256": ctx.supernet_sha256, "lat_ms": req.lat_ms, "mem_mb": req.mem_mb,
           "margins": list(margins), "importance": req.importance, "step": req.step,
           "global_ranking": req.global_ranking, "epochs": cfg.train.epochs,
           "lr": cfg.train.lr}
    net = load_supernet(ctx, cfg)
    roots = gated_roots(net)
    state = read_state(ckpt) if req.resume else None
    if state is not None and "pruning" in state:
        check_run(state, run, ckpt)
        pruning = state["pruning"]
        replay(net, ctx.image_shape, pruning["history"])
        log(f"pruning restored from {ckpt} ({pruning['trace'][-1]['pruned_ratio']:.0%} of the "
            "gated channels removed)")
    else:
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng([cfg.seed, 4242])

        def taylor_batch():
            data = task_data.sample_batch(ctx.family, ctx.task, 256, rng)
            return task_data.rows(data, np.arange(task_data.batch_size_of(data)))

        result = prune_to_budget(net, ctx.image_shape, ctx.predictor, budget,
                                 importance=req.importance, step=req.step,
                                 global_ranking=req.global_ranking, taylor_batch=taylor_batch,
                                 loss_fn=lambda n, b: task_data.batch_loss(n, ctx.family, b),
                                 progress=req.progress)
        pruning = result.to_json()
        save_checkpoint(ckpt, net, torch.optim.SGD(net.parameters(), lr=0.0),
                        {"run": run, "stage": "pruned", "epoch": -1, "pruning": pruning})
    gates = gates_from_kept(pruning["kept"], roots)
    trained = train_task(net, cfg, ctx.family, ctx.task, ckpt, run, stage="finetune",
                         resume=req.resume, extra_state={"pruning": pruning},
                         progress=req.progress, log=log, stop_after=req.stop_after)
    if trained["epochs_done"] < cfg.train.epochs:
        log(f"stopped after fine-tuning epoch {trained['epochs_done']}/{cfg.train.epochs}; "
            f"checkpoint in {ckpt} (continue with --resume)")
        return None
    customization = {"seconds": 0.0,
                     "parts_s": {"pruning": pruning["seconds"], "fine-tuning": trained["seconds"]},
                     "importance": req.importance, "step": req.step,
                     "global_ranking": req.global_ranking,
                     "pruned_ratio": pruning["trace"][-1]["pruned_ratio"],
                     "pruning_steps": len(pruning["trace"]) - 1,
                     "kept_channels": {roots[m][0]: len(k) for m, k in pruning["kept"].items()},
                     "safety_margin": {"latency": margins[0], "memory": margins[1]},
                     **training_record(cfg, factory_epochs, trained, ckpt)}
    return finish(ctx, out=Path(req.out), net=net, gates=gates, lat_ms=req.lat_ms,
                  mem_mb=req.mem_mb, method="prune-tune", customization=customization,
                  extra_files={"pruning.json": pruning})
