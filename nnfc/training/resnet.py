"""Gated ResNet (basic and bottleneck blocks).

Every conv of a block is gated except the last one, whose output feeds the residual add (its shape
must match the skip path), exactly as the paper places the modules. BN belongs to its conv, so the
gate sits after ``relu(bn(conv(x)))``.
"""

from __future__ import annotations

import torch
from torch import nn

from nnfc.training.gating import Gate, GatedSupernet, Gates


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    expansion = 1
    GATED_PARAMS = (("conv1.weight", 0, "gate1"), ("bn1.weight", 0, "gate1"),
                    ("bn1.bias", 0, "gate1"), ("conv2.weight", 1, "gate1"))

    def __init__(self, name: str, cin: int, width: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, width, 3, stride)
        self.gate1 = Gate(f"{name}.conv1", width, "conv")
        self.conv2, self.bn2 = _conv_bn(width, width, 3)
        self.downsample = _shortcut(cin, width, stride)

    def forward(self, x: torch.Tensor, gates: Gates | None) -> torch.Tensor:
        out = self.gate1(torch.relu(self.bn1(self.conv1(x))), gates)
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    expansion = 4
    GATED_PARAMS = (("conv1.weight", 0, "gate1"), ("bn1.weight", 0, "gate1"),
                    ("bn1.bias", 0, "gate1"), ("conv2.weight", 1, "gate1"),
                    ("conv2.weight", 0, "gate2"), ("bn2.weight", 0, "gate2"),
                    ("bn2.bias", 0, "gate2"), ("conv3.weight", 1, "gate2"))

    def __init__(self, name: str, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = _conv_bn(cin, width, 1)
        self.gate1 = Gate(f"{name}.conv1", width, "conv")
        self.conv2, self.bn2 = _conv_bn(width, width, 3, stride)
        self.gate2 = Gate(f"{name}.conv2", width, "conv")
        self.conv3, self.bn3 = _conv_bn(width, cout, 1)
        self.downsample = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor, gates: Gates | None) -> torch.Tensor:
        out = self.gate1(torch.relu(self.bn1(self.conv1(x))), gates)
        out = self.gate2(torch.relu(self.bn2(self.conv2(out))), gates)
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.downsample(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(*_conv_bn(cin, cout, 1, stride))


class GatedResNet(GatedSupernet):
    """ResNet with gated block convs.

    ``depths``/``widths`` per stage; ``block`` "basic" or "bottleneck"; ``stem`` "imagenet"
    (7x7/2 + maxpool, for 224² inputs) or "small" (3x3/1, for 28-64 px inputs).
    ``features`` are the outputs of the stages (strides 1/2/4… of the stem's output);
    ``num_classes`` adds a classifier (global mean pool + ``fc``) as ``forward``; ``None``
    leaves the features to a task family's head.
    """

    family = "resnet"

    def __init__(
        self,
        depths: tuple[int, ...] = (2, 2, 2, 2),
        widths: tuple[int, ...] = (64, 128, 256, 512),
        block: str = "basic",
        in_channels: int = 3,
        num_classes: int | None = 1000,
        stem: str = "imagenet",
        stem_width: int | None = None,
    ):
        super().__init__()
        self.config = dict(depths=list(depths), widths=list(widths), block=block,
                           in_channels=in_channels, num_classes=num_classes, stem=stem,
                           stem_width=stem_width)
        block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[block]
        stem_width = stem_width or widths[0]
        if stem == "imagenet":
            self.stem = nn.Sequential(nn.Conv2d(in_channels, stem_width, 7, 2, 3, bias=False),
                                      nn.BatchNorm2d(stem_width), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))
        elif stem == "small":
            self.stem = nn.Sequential(*_conv_bn(in_channels, stem_width, 3), nn.ReLU())
        else:
            raise ValueError(f"unknown stem {stem!r} (imagenet, small)")
        blocks: list[nn.Module] = []
        self._stage_ends: list[int] = []  # index of each stage's last block
        self._channels: list[int] = []
        cin = stem_width
        for stage, (depth, width) in enumerate(zip(depths, widths), start=1):
            for i in range(depth):
                stride = 2 if (i == 0 and stage > 1) else 1
                blocks.append(block_cls(f"layer{stage}.{i}", cin, width, stride))
                cin = width * block_cls.expansion
            if depth:
                self._stage_ends.append(len(blocks) - 1)
                self._channels.append(cin)
        self.blocks = nn.ModuleList(blocks)
        if num_classes:
            self.fc = nn.Linear(cin, num_classes)

    def feature_channels(self) -> list[int]:
        return list(self._channels)

    def features(self, x: torch.Tensor, gates: Gates | None = None) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for i, blk in enumerate(self.blocks):
            x = blk(x, gates)
            if i in self._stage_ends:
                out.append(x)
        return out
