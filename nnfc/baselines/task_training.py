"""Train one network on one task with the factory's recipe (optimizer, learning-rate schedule,
batch size, samples per epoch, augmentation, seeds), checkpointing after every epoch.

Used by Retrain (from scratch) and by Prune&Tune (fine-tuning the pruned supernet). A checkpoint
is the trainer's (safetensors + JSON) plus a ``run`` record: resuming a checkpoint of another run
is refused, and resuming a finished one trains nothing.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from nnfc.baselines import task_data
from nnfc.errors import NnfcError
from nnfc.training.checkpoint import load_checkpoint, save_checkpoint


def make_optimizer(cfg, net: nn.Module) -> torch.optim.Optimizer:
    """The factory's optimizer (SGD with Nesterov momentum or AdamW) over ``net``."""
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(net.parameters(), lr=t.lr, momentum=t.momentum,
                               weight_decay=t.weight_decay, nesterov=True)
    return torch.optim.AdamW(net.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def lr_at(cfg, progress: float) -> float:
    """The factory's schedule (warm-up, then cosine) at ``progress`` epochs."""
    from nnfc.training.schedule import lr_at as _lr_at
    return _lr_at(cfg, progress)


def read_state(ckpt: Path) -> dict[str, Any] | None:
    """The checkpoint's JSON state, or None when there is none."""
    from nnfc.jsonfile import read_json
    from nnfc.schema import Obj
    path = ckpt / "state.json"
    if not path.is_file():
        return None
    return read_json(path, Obj(), what="checkpoint state", max_bytes=16 << 20)


def check_run(state: dict[str, Any], run: dict[str, Any], ckpt: Path) -> None:
    """Refuse to resume a checkpoint made for another run (task, bundle, epochs, ...)."""
    if state.get("run") != run:
        diff = sorted(k for k in set(run) | set(state.get("run") or {})
                      if (state.get("run") or {}).get(k) != run.get(k))
        raise NnfcError(f"--resume: the checkpoint at {ckpt} belongs to another run (differs in "
                        f"{', '.join(diff) or 'its record'}); use the same options or drop "
                        "--resume to start afresh")


def train_task(net: nn.Module, cfg, family, task: Sequence[str], ckpt: Path, run: dict[str, Any],
               *, stage: str, resume: bool, extra_state: dict[str, Any] | None = None,
               progress: bool = True, log: Callable[[str], None] = print,
               stop_after: int | None = None) -> dict[str, Any]:
    """Train ``net`` on ``task`` for ``cfg.train.epochs`` epochs, checkpointing to ``ckpt`` after
    each (state: ``run``, ``stage``, ``epoch``, ``history``, ``extra_state``).

    With ``resume`` and a checkpoint of this stage, continue after its last epoch (nothing left:
    no training). ``stop_after``: stop after that many epochs (tests, interrupted runs).
    Returns ``{"history", "epochs_run", "seconds"}``; ``seconds`` sums every session's epochs.
    """
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    opt = make_optimizer(cfg, net)
    start, history = 0, []
    state = read_state(ckpt) if resume else None
    if state is not None and state.get("stage") == stage:
        check_run(state, run, ckpt)
        load_checkpoint(ckpt, net, opt)
        start, history = int(state["epoch"]) + 1, list(state.get("history", []))
        if start < t.epochs:
            log(f"resuming {stage} from {ckpt} after epoch {start}")
    steps = len(range(0, t.samples_per_epoch - t.batch_size + 1, t.batch_size))
    ran = 0
    for epoch in range(start, t.epochs):
        if stop_after is not None and ran >= stop_after:
            break
        t0 = time.perf_counter()
        data = task_data.task_epoch(cfg, family, task, epoch)
        order = np.random.default_rng([cfg.seed, epoch, 1]).permutation(
            task_data.batch_size_of(data))
        torch.manual_seed(cfg.seed * 100003 + epoch * 101)
        net.train()
        loss_sum = count = 0.0
        bar = tqdm(range(steps), desc=f"{stage} epoch {epoch + 1}/{t.epochs}",
                   disable=not progress, dynamic_ncols=True)
        for step in bar:
            idx = order[step * t.batch_size:(step + 1) * t.batch_size]
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, epoch + step / steps)
            loss = task_data.batch_loss(net, family, task_data.rows(data, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            count += len(idx)
            bar.set_postfix(loss=f"{loss_sum / count:.3f}", refresh=False)
        bar.close()
        history.append({"epoch": epoch + 1, "loss": round(loss_sum / count, 4),
                        "seconds": round(time.perf_counter() - t0, 2)})
        save_checkpoint(ckpt, net, opt, {"run": run, "stage": stage, "epoch": epoch,
                                         "config": cfg.to_dict(), "history": history,
                                         **(extra_state or {})})
        ran += 1
    net.eval()
    return {"history": history, "epochs_run": ran,
            "epochs_done": len(history),
            "seconds": round(sum(h["seconds"] for h in history), 2)}


def training_record(cfg, factory_epochs: int, trained: dict[str, Any], ckpt: Path
                    ) -> dict[str, Any]:
    """The report's account of a training run (epochs vs the factory's, history, checkpoint)."""
    return {"epochs": cfg.train.epochs, "factory_epochs": factory_epochs, "lr": cfg.train.lr,
            "samples_per_epoch": cfg.train.samples_per_epoch,
            "epochs_this_session": trained["epochs_run"], "history": trained["history"],
            "checkpoint": str(ckpt)}


def with_epochs(cfg, epochs: int, lr: float | None = None):
    """``cfg`` with ``train.epochs`` (and ``train.lr``) replaced."""
    changes: dict[str, Any] = {"epochs": epochs}
    if lr is not None:
        changes["lr"] = lr
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes))
