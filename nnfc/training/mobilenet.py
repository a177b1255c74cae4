"""Gated MobileNetV2 / EfficientNet-style inverted residual network.

One gate per inverted-residual block covers the expansion conv and its depthwise conv together
(the depthwise groups follow the expanded channels): the same gate multiplies the expansion
activation and the depthwise activation. The projection conv feeds the residual and is not gated.
``act="silu"`` with ``se_ratio>0`` gives the EfficientNet-style MBConv (swish + squeeze-excite).
"""

from __future__ import annotations

import torch
from torch import nn

from nnfc.training.gating import Gate, GatedSupernet, Gates

# (expansion t, out channels c, repeats n, stride s) — MobileNetV2's table.
MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _act(name: str) -> nn.Module:
    return {"relu6": nn.ReLU6, "silu": nn.SiLU, "relu": nn.ReLU}[name]()


def _round(c: float, divisor: int = 8) -> int:
    return max(divisor, int(c + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int, act: str):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = _act(act)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.mean(x, dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(s))))


class InvertedResidual(nn.Module):
    GATED_PARAMS = (("expand.0.weight", 0, "gate"), ("expand.1.weight", 0, "gate"),
                    ("expand.1.bias", 0, "gate"), ("dw.0.weight", 0, "gate"),
                    ("dw.1.weight", 0, "gate"), ("dw.1.bias", 0, "gate"),
                    ("se.fc1.weight", 1, "gate"), ("se.fc2.weight", 0, "gate"),
                    ("se.fc2.bias", 0, "gate"), ("project.0.weight", 1, "gate"))
    def __init__(self, name: str, cin: int, cout: int, stride: int, expand: int, act: str,
                 se_ratio: float):
        super().__init__()
        hidden = cin * expand
        self.expand = None
        if expand != 1:
            self.expand = nn.Sequential(nn.Conv2d(cin, hidden, 1, bias=False),
                                        nn.BatchNorm2d(hidden), _act(act))
        self.dw = nn.Sequential(nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                                nn.BatchNorm2d(hidden), _act(act))
        self.gate = Gate(name, hidden, "depthwise")
        self.se = SqueezeExcite(hidden, max(1, int(cin * se_ratio)), act) if se_ratio > 0 else None
        self.project = nn.Sequential(nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor, gates: Gates | None) -> torch.Tensor:
        h = x
        if self.expand is not None:
            h = self.gate(self.expand(h), gates)
        h = self.gate(self.dw(h), gates)
        if self.se is not None:
            h = self.se(h)
        h = self.project(h)
        return x + h if self.residual else h


class GatedMobileNet(GatedSupernet):
    """MobileNetV2-style supernet. ``setting`` rows are (t, c, n, s); ``width_mult`` scales c.

    ``features`` are the last block's output at each resolution, then the final 1x1 conv's
    (``last_width``; 0 leaves that conv out and ends at the last block); ``num_classes`` adds a
    classifier (global mean pool + ``fc``) as ``forward``, ``None`` leaves the features to a task
    family's head.
    """

    family = "mobilenet"

    def __init__(
        self,
        setting: tuple[tuple[int, int, int, int], ...] = MOBILENET_V2,
        width_mult: float = 1.0,
        in_channels: int = 3,
        num_classes: int | None = 1000,
        stem_width: int = 32,
        stem_stride: int = 2,
        last_width: int = 1280,
        act: str = "relu6",
        se_ratio: float = 0.0,
    ):
        super().__init__()
        self.config = dict(setting=[list(r) for r in setting], width_mult=width_mult,
                           in_channels=in_channels, num_classes=num_classes,
                           stem_width=stem_width, stem_stride=stem_stride, last_width=last_width,
                           act=act, se_ratio=se_ratio)
        cin = _round(stem_width * width_mult)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, cin, 3, stem_stride, 1, bias=False),
                                  nn.BatchNorm2d(cin), _act(act))
        blocks: list[nn.Module] = []
        strides: list[int] = []
        for t, c, n, s in setting:
            cout = _round(c * width_mult)
            for i in range(n):
                blocks.append(InvertedResidual(f"blocks.{len(blocks)}", cin, cout,
                                               s if i == 0 else 1, t, act, se_ratio))
                strides.append(s if i == 0 else 1)
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        # a feature wherever the next block downsamples, and after the last block
        self._taps = [i for i in range(len(blocks))
                      if i == len(blocks) - 1 or strides[i + 1] > 1]
        self._channels = [blocks[i].project[1].num_features for i in self._taps]
        self.head = None
        if last_width:
            last = _round(last_width * max(1.0, width_mult))
            self.head = nn.Sequential(nn.Conv2d(cin, last, 1, bias=False),
                                      nn.BatchNorm2d(last), _act(act))
            self._channels.append(last)
        if num_classes:
            self.fc = nn.Linear(self._channels[-1], num_classes)

    def feature_channels(self) -> list[int]:
        return list(self._channels)

    def features(self, x: torch.Tensor, gates: Gates | None = None) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for i, blk in enumerate(self.blocks):
            x = blk(x, gates)
            if i in self._taps:
                out.append(x)
        if self.head is not None:
            out.append(self.head(x))
        return out
