"""A gated anchor-free detector (CenterNet-style) for AttrOD: backbone features + gated head.

The backbone (gated ResNet or MobileNetV2) gives features at several scales; the head joins them
top-down like a light FPN — a gated 1×1 lateral conv per scale, nearest ``Resize`` ×2 and ``Add``
— down to the finest scale (stride 4), then a gated 3×3 conv and two 1×1 outputs: ``heatmap``
[B,1,h,w] (logits of "an object matching the task is centred here") and ``box`` [B,4,h,w] (log
of the left/top/right/bottom distances in strides). The task enters only through the gates: the
assembler switches on the channels that respond to the task's colours and category.

Loss: penalty-reduced focal loss on the heatmap (CenterNet) + GIoU and L1 on the decoded boxes at
the cells next to each matching object's centre.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnfc.training.gating import Gate, Gates
from nnfc.training.model import FamilyModel

HEATMAP, BOX = "heatmap", "box"


class _GatedConv(nn.Module):
    GATED_PARAMS = (("conv.weight", 0, "gate"), ("bn.weight", 0, "gate"), ("bn.bias", 0, "gate"))

    def __init__(self, name: str, cin: int, cout: int, k: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, 1, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.gate = Gate(name, cout, "conv")

    def forward(self, x: torch.Tensor, gates: Gates | None) -> torch.Tensor:
        return self.gate(torch.relu(self.bn(self.conv(x))), gates)


class DetectionHead(nn.Module):
    """Gated FPN-lite + CenterNet outputs over the backbone's last ``scales`` features (finest
    first, each half the size of the one before); the outputs are at the finest of them."""

    def __init__(self, feature_channels: Sequence[int], width: int = 64, scales: int = 4,
                 prior: float = 0.05):
        super().__init__()
        if not 2 <= scales <= len(feature_channels):
            raise ValueError(f"head scales = {scales} needs 2 .. {len(feature_channels)} "
                             "backbone feature maps")
        self.scales = scales
        chans = list(feature_channels)[-scales:]
        self.laterals = nn.ModuleList(_GatedConv(f"head.lateral{i}", c, width, 1)
                                      for i, c in enumerate(chans))
        self.tower = _GatedConv("head.tower", width, width, 3)
        self.heatmap = nn.Conv2d(width, 1, 1)
        self.box = nn.Conv2d(width, 4, 1)
        nn.init.constant_(self.heatmap.bias, -math.log((1 - prior) / prior))
        nn.init.normal_(self.box.weight, std=0.01)
        nn.init.constant_(self.box.bias, math.log(2.0))

    def forward(self, features: Sequence[torch.Tensor],
                gates: Gates | None) -> dict[str, torch.Tensor]:
        feats = list(features)[-self.scales:]
        for fine, coarse in zip(feats, feats[1:]):
            if fine.shape[-1] != 2 * coarse.shape[-1] or fine.shape[-2] != 2 * coarse.shape[-2]:
                raise ValueError("the detection head needs feature maps that halve in size from "
                                 f"scale to scale, got {tuple(fine.shape[-2:])} then "
                                 f"{tuple(coarse.shape[-2:])} (MobileNet: last_width = 0)")
        p = self.laterals[-1](feats[-1], gates)
        for i in range(len(feats) - 2, -1, -1):
            p = self.laterals[i](feats[i], gates) + F.interpolate(p, scale_factor=2.0,
                                                                   mode="nearest")
        t = self.tower(p, gates)
        return {HEATMAP: self.heatmap(t), BOX: self.box(t)}


def build_detector(family: str, backbone: Mapping[str, Any],
                   head: Mapping[str, Any]) -> FamilyModel:
    """A gated ``family`` backbone ("resnet" or "mobilenet", no classifier) + the detection
    head: ``forward(x, gates) -> {heatmap, box}``."""
    from nnfc.training.backbones import build_backbone

    bb = build_backbone(family, **{**dict(backbone), "num_classes": None})
    return FamilyModel(bb, AttrODTraining().build_head(bb.feature_channels(), head))


# --- loss --------------------------------------------------------------------------------------

def focal_heatmap_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0,
                       beta: float = 4.0) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of peaks (>= 1)."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.ge(0.999).float()
    logp, log1mp = F.logsigmoid(logits), F.logsigmoid(-logits)
    pos_loss = -((1 - p) ** alpha) * logp * pos
    neg_loss = -((1 - target) ** beta) * (p ** alpha) * log1mp * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − GIoU of ltrb distance boxes sharing an anchor point, per box [N]."""
    pl, pt, pr, pb = pred.unbind(-1)
    tl, tt, tr, tb = target.unbind(-1)
    pa, ta = (pl + pr) * (pt + pb), (tl + tr) * (tt + tb)
    iw = torch.minimum(pl, tl) + torch.minimum(pr, tr)
    ih = torch.minimum(pt, tt) + torch.minimum(pb, tb)
    inter = iw.clamp(min=0) * ih.clamp(min=0)
    union = pa + ta - inter
    enc = (torch.maximum(pl, tl) + torch.maximum(pr, tr)) * (torch.maximum(pt, tt)
                                                             + torch.maximum(pb, tb))
    iou = inter / union.clamp(min=1e-6)
    return 1 - (iou - (enc - union) / enc.clamp(min=1e-6))


def detection_loss(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
                   stride: int, box_weight: float = 2.0, l1_weight: float = 0.5) -> dict:
    """Heatmap focal loss + weighted GIoU and L1 (log-distance) box losses."""
    heat = focal_heatmap_loss(outputs[HEATMAP], batch["heatmap"])
    w = batch["box_weight"][:, 0]  # [B,h,w]
    mask = w > 0
    if not bool(mask.any()):
        zero = outputs[BOX].sum() * 0
        return {"loss": heat + zero, "heatmap": heat.detach(), "box": zero.detach()}
    raw = outputs[BOX].permute(0, 2, 3, 1)[mask]  # [N,4] log distances in strides
    tgt = batch["box"].permute(0, 2, 3, 1)[mask] / stride  # [N,4] distances in strides
    ww = w[mask]
    pred = torch.exp(raw.clamp(max=6.0))
    giou = (giou_loss(pred, tgt) * ww).sum() / ww.sum()
    l1 = ((raw - torch.log(tgt.clamp(min=1e-3))).abs().sum(1) * ww).sum() / ww.sum()
    box = box_weight * giou + l1_weight * l1
    return {"loss": heat + box, "heatmap": heat.detach(), "box": box.detach()}


class AttrODTraining:
    """The torch half of the AttrOD family (:class:`nnfc.families.base.TrainingFamily`): the
    gated detection head and the detection loss. ``[head]`` keys: ``width`` (channels of the
    laterals and the tower, default 64), ``scales`` (feature maps joined, default 4)."""

    def __init__(self, stride: int = 4, box_weight: float = 2.0, l1_weight: float = 0.5):
        self.stride, self.box_weight, self.l1_weight = stride, box_weight, l1_weight

    def build_head(self, feature_channels: Sequence[int],
                   config: Mapping[str, Any]) -> DetectionHead:
        bad = set(config) - {"width", "scales"}
        if bad:
            raise ValueError(f"unknown key(s) {', '.join(sorted(bad))}; known: width, scales")
        return DetectionHead(feature_channels, int(config.get("width", 64)),
                             int(config.get("scales", 4)))

    def loss(self, outputs: Mapping[str, torch.Tensor],
             batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return detection_loss(outputs, batch, self.stride, self.box_weight,
                              self.l1_weight)["loss"]
