"""Retrain: the factory's network at full width (every gate on, no assembler) trained from scratch
on one task with the factory's recipe — same data, split, augmentation, optimizer, schedule,
samples per epoch and seed handling — then exported and measured like a compile output. The
budget is recorded but ignored, as in the paper."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from nnfc.baselines import task_data
from nnfc.baselines.artifact import finish
from nnfc.baselines.context import BaselineRequest, default_checkpoint, open_context
from nnfc.baselines.task_training import train_task, training_record, with_epochs


@dataclasses.dataclass
class RetrainRequest(BaselineRequest):
    """``epochs``: None = the factory's."""


def retrain(req: RetrainRequest, log: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Train, export, measure, evaluate; returns the report (None when stopped early)."""
    ctx = open_context(req.bundle, req.task, req.target, req.profile, req.out)
    factory_epochs = ctx.cfg.train.epochs
    cfg = with_epochs(ctx.cfg, req.epochs or factory_epochs)
    torch.manual_seed(cfg.seed)
    net = task_data.build_network(cfg, ctx.family)
    ckpt = Path(req.checkpoint) if req.checkpoint else default_checkpoint(req.out)
    # the target is not part of the run: one trained model serves every target and budget
    run = {"method": "retrain", "task": list(ctx.task), "supernet_sha256": ctx.supernet_sha256,
           "epochs": cfg.train.epochs, "lr": cfg.train.lr}
    trained = train_task(net, cfg, ctx.family, ctx.task, ckpt, run, stage="retrain",
                         resume=req.resume, progress=req.progress, log=log,
                         stop_after=req.stop_after)
    if trained["epochs_done"] < cfg.train.epochs:
        log(f"stopped after epoch {trained['epochs_done']}/{cfg.train.epochs}; checkpoint in "
            f"{ckpt} (continue with --resume)")
        return None
    full = {g.input_name: np.ones(g.size, np.float32) for g in net.gate_layers()}
    customization = {"seconds": trained["seconds"], "parts_s": {"training": trained["seconds"]},
                     **training_record(cfg, factory_epochs, trained, ckpt)}
    return finish(ctx, out=Path(req.out), net=net, gates=full, lat_ms=req.lat_ms,
                  mem_mb=req.mem_mb, method="retrain", customization=customization)
