"""Joint training of a gated supernet and its assembler (NN-Factory §3.3–3.4).

Every step draws samples ``(task, limit, batch)`` mixed across tasks and limits from the task
family (``family.batch``): ``loss = L(model(x, gates), batch) + λ · GL(ratio, limit)`` with the
family's task loss ``L`` (``TrainingFamily.loss``), ``gates = Assembler(task, limit)``
(improved SemHash in training) and ``GL = mean(relu(ratio − limit)²)``; ``ratio`` is the per-sample
share of active gate entries over all gate layers, computed on the discrete (straight-through)
gates so that the penalty tracks the ratio the pruned model will have.

Runs in one process or under ``torchrun`` (DistributedDataParallel; gloo on CPU, nccl on GPU):
each rank takes its slice of the epoch's shuffled samples. Deterministic for a given seed
(data from ``numpy.random.default_rng([seed, epoch])``, torch seeded per epoch and rank).
Checkpoints after every epoch; ``resume`` continues from the last one.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from nnfc.errors import NnfcError
from nnfc.families import family_class
from nnfc.training.assembler import Assembler, active_ratio, cap_masks, gate_loss
from nnfc.training.backbones import build_backbone
from nnfc.training.checkpoint import load_checkpoint, save_checkpoint
from nnfc.training.config import FactoryConfig, config_from_dict
from nnfc.training.gating import GatedSupernet
from nnfc.training.heads import training_family
from nnfc.training.metrics import evaluate, history_eval, summarize
from nnfc.training.model import FamilyModel
from nnfc.training.schedule import lr_at, sample_limits
from nnfc.training.semhash import semhash, straight_through


class FactoryNet(nn.Module):
    """Supernet + assembler as one module (what DDP wraps)."""

    def __init__(self, supernet: GatedSupernet, assembler: Assembler, hard_fraction: float = 0.5,
                 cap: bool = False):
        super().__init__()
        self.supernet, self.assembler = supernet, assembler
        self.hard_fraction = hard_fraction
        self.cap = cap  # train the subnets inference's cap leaves (train.cap_in_training)

    def forward(self, x: torch.Tensor, task: torch.Tensor,
                limit: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The model's named outputs and the per-sample discrete active ratio [B]
        (straight-through gradient; uncapped, so the gate loss still pushes the assembler's
        own choice under the limit)."""
        layers = self.assembler.layers
        scores = self.assembler.scores(task, limit)
        masks = cap_masks(scores, limit) if self.cap else [1.0] * len(scores)
        gates = {l.name: semhash(v, self.training, hard_fraction=self.hard_fraction) * m
                 for l, v, m in zip(layers, scores, masks)}
        hard = {l.name: straight_through(v) for l, v in zip(layers, scores)}
        return self.supernet(x, gates), active_ratio(hard, layers)


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def _pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise NnfcError("train.device = 'cuda' but no CUDA device is available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def build_task_family(cfg: FactoryConfig):
    """The task family object a config's ``[task]`` table describes."""
    return family_class(cfg.task["family"]).from_config(cfg.task)


def build_models(cfg: FactoryConfig, family) -> tuple[FamilyModel, Assembler]:
    """Supernet (gated backbone features + the family's head; input channels from the family)
    and its assembler."""
    bb = dict(cfg.backbone)
    name = bb.pop("family")
    bb.setdefault("in_channels", family.image_shape[0])
    bb["num_classes"] = None  # the family's head replaces the backbone's classifier
    if name.startswith("vit") or bb.get("image_size"):
        bb.setdefault("image_size", family.image_shape[1])
    try:
        backbone = build_backbone(name, **bb)
    except (TypeError, ValueError) as exc:
        raise NnfcError(f"[backbone]: {exc}") from exc
    try:
        head = training_family(family.name).build_head(backbone.feature_channels(), cfg.head)
    except (TypeError, ValueError) as exc:
        raise NnfcError(f"[head]: {exc}") from exc
    supernet = FamilyModel(backbone, head)
    a = cfg.assembler
    groups = getattr(family, "attribute_groups", None) if a.factorized else None
    if a.factorized and not groups:
        raise NnfcError(f"[assembler] factorized: the {family.name} task family has no "
                        "attribute groups")
    try:
        assembler = Assembler(len(family.attributes), supernet.gate_layers(), hidden=a.hidden,
                              depth=a.depth, gater_hidden=a.gater_hidden, experts=a.experts,
                              limit_dim=a.limit_dim, limit_scale=a.limit_scale,
                              init_bias=a.init_bias, cap_at_limit=a.cap_at_limit,
                              attribute_groups=groups)
    except ValueError as exc:
        raise NnfcError(f"[assembler]: {exc}") from exc
    return supernet, assembler


def recipe(cfg: FactoryConfig) -> dict:
    """The config without the settings that only decide where and how fast it runs (device,
    threads): what a resumed run must share with the checkpoint."""
    d = cfg.to_dict()
    d["train"] = {k: v for k, v in d["train"].items() if k not in ("device", "threads")}
    return d


def train_factory(cfg: FactoryConfig, out: str | os.PathLike, *, resume: bool = False,
                  checkpoint_dir: str | os.PathLike | None = None, progress: bool = True,
                  log: Callable[[str], None] = print,
                  stop_after: int | None = None, force: bool = False) -> Path | None:
    """Train a factory and write its bundle to ``out`` (rank 0). Returns the bundle path on
    rank 0, None on other ranks. ``stop_after``: stop after that epoch with only a checkpoint
    written (continue later with ``resume``). ``out`` and the checkpoint directory are checked
    before training (see :mod:`nnfc.outputs`; ``force`` as there)."""
    from nnfc.outputs import check_output_dir
    out = Path(out)
    ckpt = Path(checkpoint_dir) if checkpoint_dir else out.with_name(out.name + ".ckpt")
    check_output_dir(out, "bundle", force=force, inputs=[ckpt], option="--out")
    check_output_dir(ckpt, "checkpoint", force=force, inputs=[out], option="--checkpoint-dir")
    device = _pick_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    di = _init_distributed(device)
    try:
        return _train(cfg, out, ckpt, resume, progress, log, device, di, stop_after, force)
    finally:
        if di.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: FactoryConfig, out: Path, ckpt: Path, resume: bool, progress: bool,
           log: Callable[[str], None], device: torch.device, di: DistInfo,
           stop_after: int | None, force: bool = False) -> Path | None:
    t = cfg.train
    torch.manual_seed(cfg.seed)
    family = build_task_family(cfg)
    trainer_half = training_family(family.name)
    supernet, assembler = build_models(cfg, family)
    net = FactoryNet(supernet, assembler, t.hard_fraction, t.cap_in_training).to(device)
    if t.optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=t.lr, momentum=t.momentum,
                              weight_decay=t.weight_decay, nesterov=True)
    else:
        opt = torch.optim.AdamW(net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    start_epoch, start_step, start_sums, history = 0, 0, None, []
    if resume:
        if not (ckpt / "state.json").is_file():
            raise NnfcError(f"--resume: no checkpoint at {ckpt}")
        meta = load_checkpoint(ckpt, net, opt)
        try:
            saved = config_from_dict(meta["config"], f"{ckpt}/state.json")
        except TypeError as exc:
            raise NnfcError(f"--resume: {ckpt}/state.json holds a config this nnfc cannot read "
                            f"({exc}); start afresh without --resume") from exc
        if recipe(saved) != recipe(cfg):
            raise NnfcError(f"--resume: the checkpoint at {ckpt} was made with a different "
                            "config; use the same config or start afresh")
        start_epoch, history = int(meta["epoch"]) + 1, list(meta.get("history", []))
        if meta.get("step"):  # a mid-epoch checkpoint: continue that epoch at that step
            start_epoch, start_step = int(meta["epoch"]), int(meta["step"])
            start_sums = np.asarray(meta["sums"], float)
        if di.main:
            log(f"resuming from {ckpt} at epoch {start_epoch + 1}"
                + (f", step {start_step}" if start_step else ""))
    model: nn.Module = net
    if di.world > 1:
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    seen = family.seen_tasks
    task_enc = torch.from_numpy(family.encode(seen))
    per_task = max(1, t.samples_per_epoch // len(seen))
    steps = (per_task * len(seen)) // (t.batch_size * di.world)
    if steps < 1:
        raise NnfcError("train.samples_per_epoch is too small for batch_size x processes")
    t0 = time.time()
    for epoch in range(start_epoch, t.epochs):
        rng = np.random.default_rng([cfg.seed, epoch])
        data = family.batch(seen, per_task, "train", rng, augment=True)
        n_all = len(data["task"])
        lim_all = sample_limits(cfg, n_all, rng, epoch)
        order = rng.permutation(n_all)[di.rank::di.world][: steps * t.batch_size]
        torch.manual_seed(cfg.seed * 100003 + epoch * 101 + di.rank)
        model.train()
        sums = np.zeros(3)  # loss, ratio, count
        first = start_step if epoch == start_epoch else 0
        if first:
            sums = start_sums
        bar = tqdm(range(first, steps), desc=f"epoch {epoch + 1}/{t.epochs}",
                   disable=not (progress and di.main), initial=first, total=steps, leave=True,
                   dynamic_ncols=True)
        for step in bar:
            idx = order[step * t.batch_size:(step + 1) * t.batch_size]
            lr = lr_at(cfg, epoch + step / steps)
            for group in opt.param_groups:
                group["lr"] = lr
            batch = _slice_batch(data, idx, device)
            task = task_enc[data["task"][idx]].to(device)
            limit = torch.from_numpy(lim_all[idx]).to(device)
            outputs, ratio = model(batch["image"], task, limit)
            task_loss = trainer_half.loss(outputs, batch)
            lam = t.lambda_gate * min(1.0, (epoch + step / steps) / t.gate_warmup_epochs) \
                if t.gate_warmup_epochs > 0 else t.lambda_gate
            target = torch.clamp(limit - t.limit_margin, min=1e-3)
            loss = task_loss + lam * gate_loss(ratio, target, t.gate_loss == "relative")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n = len(idx)
            sums += [float(loss.detach()) * n, float((ratio - limit).detach().mean()) * n, n]
            bar.set_postfix(loss=f"{sums[0] / sums[2]:.3f}", over=f"{sums[1] / sums[2]:+.3f}",
                            lr=f"{lr:.3g}", refresh=False)
            every = t.checkpoint_every
            if every and (step + 1) % every == 0 and step + 1 < steps and di.main:
                save_checkpoint(ckpt, net, opt, {"epoch": epoch, "step": step + 1,
                                                 "sums": sums.tolist(), "config": cfg.to_dict(),
                                                 "history": history})
        bar.close()
        if di.world > 1:
            tot = torch.tensor(sums, dtype=torch.float64, device=device)
            dist.all_reduce(tot)
            sums = tot.cpu().numpy()
        row = {"epoch": epoch + 1, "loss": round(sums[0] / sums[2], 4),
               "ratio_minus_limit": round(sums[1] / sums[2], 4),
               "elapsed_s": round(time.time() - t0, 1)}
        if di.main and t.history_eval_every and ((epoch + 1) % t.history_eval_every == 0
                                                 or epoch + 1 == t.epochs):
            row["eval"] = history_eval(supernet, assembler, family, t.eval_limits,
                                       t.history_eval_per_task, cfg.seed, device)
            net.train()
        history.append(row)
        if di.main:
            save_checkpoint(ckpt, net, opt, {"epoch": epoch, "config": cfg.to_dict(),
                                             "history": history}, force=force)
            if not progress:
                log(json.dumps(row))
        if di.world > 1:
            dist.barrier()
        if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < t.epochs:
            if di.main:
                log(f"stopped after epoch {epoch + 1}; checkpoint in {ckpt} (continue with "
                    "--resume)")
            return None
    if not di.main:
        return None
    net.cpu()
    return finish_factory(cfg, family, supernet, assembler, out, history,
                          {"world_size": di.world, "device": device.type}, force=force,
                          inputs=[ckpt])


def finish_factory(cfg: FactoryConfig, family, supernet: GatedSupernet, assembler: Assembler,
                   out: str | os.PathLike, history: list[dict[str, Any]],
                   extra: dict[str, Any] | None = None, *, force: bool = False,
                   inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """Evaluate on the test split (torch, discrete gates) and write the bundle (``force`` and
    ``inputs`` as in :func:`nnfc.outputs.output_dir`)."""
    t = cfg.train
    seen = family.seen_tasks
    results = evaluate(supernet, assembler, family, seen + family.unseen_tasks, t.eval_limits,
                       t.eval_per_task, cfg.seed)
    metrics = summarize(results, seen, family.metric)
    metrics["metric"] = family.metric
    metrics["history"] = history
    from nnfc.training.bundle_export import export_factory  # ONNX export needs onnxscript
    bundle = export_factory(
        out, supernet, assembler, family,
        training={"config": cfg.to_dict(), "seed": cfg.seed, "metrics": metrics,
                  **(extra or {})},
        opset=cfg.export.opset, force=force, inputs=inputs)
    return bundle.root


def trained_modules(root: str | os.PathLike):
    """A trained bundle's config, task family, supernet and assembler (torch, eval mode) and
    its manifest's ``training`` table."""
    from nnfc.bundle import WEIGHTS, read_bundle
    from nnfc.bundle_weights import torch_state
    from nnfc.training.bundle_export import ASSEMBLER_WEIGHTS

    src = Path(root)
    bundle = read_bundle(src)
    training = bundle.manifest.get("training", {})
    cfg = config_from_dict(training.get("config", {}), f"{src}/manifest.json")
    family = build_task_family(cfg)
    supernet, assembler = build_models(cfg, family)
    supernet.load_state_dict(legacy_state_dict(torch_state(src / WEIGHTS), supernet.family))
    assembler.load_state_dict(torch_state(src / ASSEMBLER_WEIGHTS))
    return cfg, family, supernet.eval(), assembler.eval(), training


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike,
                      force: bool = False) -> Path:
    """Write a bundle from a training checkpoint, or re-export an existing bundle (its
    manifest's config and its safetensors weights), e.g. after an exporter change. ``out`` may
    not be, contain or lie inside ``checkpoint``."""
    from nnfc.outputs import check_output_dir
    src = Path(checkpoint)
    state_path = src / "state.json"
    if not (src / "manifest.json").is_file() and not state_path.is_file():
        raise NnfcError(f"{checkpoint} is neither a training checkpoint (no state.json) nor a "
                        "factory bundle (no manifest.json)")
    check_output_dir(out, "bundle", force=force, inputs=[src], option="--out")
    if (src / "manifest.json").is_file():
        cfg, family, supernet, assembler, training = trained_modules(src)
        history = list(training.get("metrics", {}).get("history", []))
        return finish_factory(cfg, family, supernet, assembler, out, history,
                              {k: v for k, v in training.items()
                               if k not in ("config", "seed", "metrics")},
                              force=force, inputs=[src])
    from nnfc.training.checkpoint import read_state
    meta = read_state(src)
    cfg = config_from_dict(meta["config"], str(state_path))
    family = build_task_family(cfg)
    supernet, assembler = build_models(cfg, family)
    net = FactoryNet(supernet, assembler)
    load_checkpoint(checkpoint, net)
    return finish_factory(cfg, family, supernet, assembler, out, list(meta.get("history", [])),
                          {"from_checkpoint_epoch": int(meta["epoch"]) + 1}, force=force,
                          inputs=[src])


def _slice_batch(data: dict[str, Any], idx: np.ndarray, device: torch.device) -> dict[str, Any]:
    """Rows ``idx`` of a family batch: numpy arrays as tensors on ``device``, lists per row."""
    out: dict[str, Any] = {}
    for key, val in data.items():
        if isinstance(val, np.ndarray):
            out[key] = torch.from_numpy(np.ascontiguousarray(val[idx])).to(device)
        elif isinstance(val, (list, tuple)):
            out[key] = [val[i] for i in idx]
        else:
            out[key] = val
    return out


def legacy_state_dict(state: dict[str, torch.Tensor], backbone: str) -> dict[str, torch.Tensor]:
    """Weights saved before backbones and heads were split (a classifier inside the backbone:
    ``fc.*``, ViT ``head.*``) renamed to ``backbone.*`` / ``head.fc.*``; newer ones unchanged."""
    if any(k.startswith("backbone.") for k in state):
        return state
    classifier = "head." if backbone == "vit" else "fc."
    return {("head.fc." + k[len(classifier):] if k.startswith(classifier) else "backbone." + k): v
            for k, v in state.items()}
