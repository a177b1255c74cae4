"""Joint training of a gated detector and its assembler on AttrOD (``nnfc train``, family attrod).

Like the classification trainer (same assembler, SemHash gates, gate loss, limits, learning-rate
schedule and checkpoint format), but each step draws ``batch_size`` (task, limit) pairs uniformly
from the seen tasks with one fresh procedural scene (or COCO image) each, and the task loss is
:func:`nnfc.training.detection.detection_loss`. Data for step ``s`` of epoch ``e`` come from
``default_rng([seed, e, s])``, so a run resumed from a mid-epoch checkpoint sees the same data.
Checkpoints every ``CHECKPOINT_EVERY`` steps and after every epoch; every ``EVAL_EVERY`` epochs a
quick mAP@0.5 (a few seen and unseen tasks, full supernet and a 25 % limit) goes into the history.

Backbone keys ``head_width`` / ``head_scales`` in ``[backbone]`` size the detection head.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from nnfc.errors import NnfcError
from nnfc.training.assembler import Assembler, active_ratio, gate_loss
from nnfc.training.checkpoint import load_checkpoint, save_checkpoint
from nnfc.training.config import FactoryConfig, config_from_dict
from nnfc.training.detection import GatedDetector, build_detector, detection_loss

CHECKPOINT_EVERY = 25
EVAL_EVERY = 5
QUICK_EVAL_TASKS = 6
QUICK_EVAL_SAMPLES = 16


def build_family(cfg: FactoryConfig):
    from nnfc.families.attrod import AttrOD

    t = cfg.task
    return AttrOD(seen=t.seen, unseen=t.unseen, split_seed=t.split_seed)


def build_detection_models(cfg: FactoryConfig, family) -> tuple[GatedDetector, Assembler]:
    bb = dict(cfg.backbone)
    name = bb.pop("family")
    head = {"width": bb.pop("head_width", 64), "scales": bb.pop("head_scales", 4)}
    bb.setdefault("in_channels", family.image_shape[0])
    try:
        det = build_detector(name, bb, head)
    except (TypeError, ValueError, KeyError) as exc:
        raise NnfcError(f"[backbone]: {exc}") from exc
    a = cfg.assembler
    assembler = Assembler(len(family.attributes), det.gate_layers(), hidden=a.hidden,
                          depth=a.depth, gater_hidden=a.gater_hidden, experts=a.experts,
                          limit_dim=a.limit_dim, limit_scale=a.limit_scale,
                          init_bias=a.init_bias, cap_at_limit=a.cap_at_limit)
    return det, assembler


def torch_runner(det: GatedDetector, assembler: Assembler, family, task: Sequence[str],
                 limit: float) -> tuple[Callable, float]:
    """A ``run`` function (images -> raw outputs) for the supernet under the assembler's
    discrete gates for (task, limit), and the activation ratio of those gates."""
    det.eval(), assembler.eval()
    with torch.no_grad():
        gates = assembler(torch.from_numpy(family.encode([task])), torch.tensor([float(limit)]))
        ratio = float(active_ratio(gates, assembler.layers)[0])
    g1 = {k: v[0] for k, v in gates.items()}

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = det(torch.from_numpy(images), g1)
        return {k: v.numpy() for k, v in out.items()}

    return run, ratio


def evaluate_detector(det: GatedDetector, assembler: Assembler, family,
                      tasks: Sequence[Sequence[str]], limits: Sequence[float], samples: int,
                      seed: int, progress: bool = False) -> list[dict[str, Any]]:
    """mAP@0.5 and activation ratio per (task, limit) on the procedural test split."""
    rows = []
    for task in tqdm(tasks, desc="eval", disable=not progress, leave=False):
        for limit in limits:
            run, ratio = torch_runner(det, assembler, family, task, limit)
            rows.append({"task": list(task), "limit": float(limit),
                         "map50": round(family.evaluate(task, run, samples, seed), 4),
                         "activation_ratio": round(ratio, 4)})
    return rows


def summarize(rows: list[dict[str, Any]], seen: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Mean mAP@0.5 / activation ratio per limit for seen and unseen tasks."""
    from nnfc.training.trainer import summarize as summarize_metric

    return summarize_metric(rows, seen, "map50")


def train_detection(cfg: FactoryConfig, out: Path, ckpt: Path, resume: bool, progress: bool,
                    log: Callable[[str], None], stop_after: int | None) -> Path | None:
    from nnfc.training.trainer import FactoryNet, _lr_at, sample_limits

    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(cfg.seed)
    family = build_family(cfg)
    det, assembler = build_detection_models(cfg, family)
    net = FactoryNet(det, assembler, t.hard_fraction)
    opt = torch.optim.AdamW(net.parameters(), lr=t.lr, weight_decay=t.weight_decay) \
        if t.optimizer == "adamw" else torch.optim.SGD(net.parameters(), lr=t.lr,
                                                       momentum=t.momentum, nesterov=True,
                                                       weight_decay=t.weight_decay)
    start_epoch, start_step, history = 0, 0, []
    if resume:
        if not (ckpt / "state.json").is_file():
            raise NnfcError(f"--resume: no checkpoint at {ckpt}")
        meta = load_checkpoint(ckpt, net, opt)
        saved = config_from_dict(meta.get("config", {}), f"{ckpt}/state.json")
        if saved.to_dict() != cfg.to_dict():
            raise NnfcError(f"--resume: the checkpoint at {ckpt} was made with a different "
                            "config; use the same config or start afresh")
        start_epoch, history = int(meta["epoch"]), list(meta.get("history", []))
        start_step = int(meta.get("step", 0))
        log(f"resuming from {ckpt} at epoch {start_epoch + 1}, step {start_step}")
    seen = family.seen_tasks
    enc_all = torch.from_numpy(family.encode(seen))
    steps = max(1, t.samples_per_epoch // t.batch_size)
    stride = family.stride
    t0 = time.time() - (history[-1]["elapsed_s"] if history else 0.0)
    for epoch in range(start_epoch, t.epochs):
        net.train()
        sums = np.zeros(5)  # loss, heatmap, box, ratio-limit, count
        if start_step:
            sums = np.asarray(meta.get("sums", sums), float)
        bar = tqdm(range(start_step, steps), desc=f"epoch {epoch + 1}/{t.epochs}",
                   disable=not progress, initial=start_step, total=steps, dynamic_ncols=True)
        for step in bar:
            rng = np.random.default_rng([cfg.seed, epoch, step])
            tids = rng.integers(len(seen), size=t.batch_size)
            b = family.batch([seen[i] for i in tids], 1, "train", rng, augment=True)
            limit = torch.from_numpy(sample_limits(cfg, t.batch_size, rng))
            torch.manual_seed(cfg.seed * 100003 + epoch * 1009 + step)
            lr = _lr_at(cfg, epoch + step / steps)
            for group in opt.param_groups:
                group["lr"] = lr
            batch = {k: torch.from_numpy(b[k]) for k in ("heatmap", "box", "box_weight")}
            outputs, ratio = net(torch.from_numpy(b["image"]), enc_all[tids], limit)
            losses = detection_loss(outputs, batch, stride)
            lam = t.lambda_gate * min(1.0, (epoch + step / steps) / t.gate_warmup_epochs) \
                if t.gate_warmup_epochs > 0 else t.lambda_gate
            target = torch.clamp(limit - t.limit_margin, min=1e-3)
            loss = losses["loss"] + lam * gate_loss(ratio, target, t.gate_loss == "relative")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
            n = t.batch_size
            sums += [float(loss.detach()) * n, float(losses["heatmap"]) * n,
                     float(losses["box"]) * n, float((ratio - limit).detach().mean()) * n, n]
            bar.set_postfix(loss=f"{sums[0] / sums[4]:.3f}", hm=f"{sums[1] / sums[4]:.3f}",
                            box=f"{sums[2] / sums[4]:.3f}", over=f"{sums[3] / sums[4]:+.3f}",
                            lr=f"{lr:.3g}", refresh=False)
            if (step + 1) % CHECKPOINT_EVERY == 0 and step + 1 < steps:
                save_checkpoint(ckpt, net, opt, {"epoch": epoch, "step": step + 1,
                                                 "sums": sums.tolist(), "config": cfg.to_dict(),
                                                 "history": history})
        bar.close()
        start_step = 0
        row = {"epoch": epoch + 1, "loss": round(sums[0] / sums[4], 4),
               "heatmap_loss": round(sums[1] / sums[4], 4),
               "box_loss": round(sums[2] / sums[4], 4),
               "ratio_minus_limit": round(sums[3] / sums[4], 4),
               "elapsed_s": round(time.time() - t0, 1)}
        if (epoch + 1) % EVAL_EVERY == 0 or epoch + 1 == t.epochs:
            quick = evaluate_detector(det, assembler, family, seen[::max(1, len(seen)
                                                                        // QUICK_EVAL_TASKS)]
                                      + family.unseen_tasks[:3], [1.0, 0.25],
                                      QUICK_EVAL_SAMPLES, cfg.seed)
            row["quick_eval"] = summarize(quick, seen)
        history.append(row)
        save_checkpoint(ckpt, net, opt, {"epoch": epoch + 1, "step": 0, "config": cfg.to_dict(),
                                         "history": history})
        log(json.dumps(row))
        if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < t.epochs:
            log(f"stopped after epoch {epoch + 1}; checkpoint in {ckpt} (continue with --resume)")
            return None
    return finish_detection(cfg, family, det, assembler, out, history, progress=progress)


def finish_detection(cfg: FactoryConfig, family, det: GatedDetector, assembler: Assembler,
                     out: str | Path, history: list, extra: dict | None = None,
                     progress: bool = False) -> Path:
    """Evaluate (torch, discrete gates) and write the bundle."""
    from nnfc.training.detection_export import export_detection_factory

    t = cfg.train
    seen = family.seen_tasks
    rows = evaluate_detector(det, assembler, family, seen + family.unseen_tasks, t.eval_limits,
                             t.eval_per_task, cfg.seed, progress=progress)
    metrics = summarize(rows, seen)
    metrics["history"] = history
    bundle = export_detection_factory(out, det, assembler, family,
                                      training={"config": cfg.to_dict(), "seed": cfg.seed,
                                                "metrics": metrics, **(extra or {})},
                                      opset=cfg.export.opset)
    return bundle.root


def export_detection_checkpoint(src: Path, out: str | Path) -> Path:
    """A bundle from a detection training checkpoint (``nnfc export`` of a running training)."""
    meta = json.loads((src / "state.json").read_text(encoding="utf-8"))
    cfg = config_from_dict(meta["config"], str(src / "state.json"))
    from nnfc.training.trainer import FactoryNet

    family = build_family(cfg)
    det, assembler = build_detection_models(cfg, family)
    load_checkpoint(src, FactoryNet(det, assembler, cfg.train.hard_fraction))
    return finish_detection(cfg, family, det, assembler, out, list(meta.get("history", [])),
                            {"from_checkpoint_epoch": int(meta["epoch"]),
                             "from_checkpoint_step": int(meta.get("step", 0))})
