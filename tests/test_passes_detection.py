"""A small CenterNet/FPN-style gated detector exported by torch (dynamo and TorchScript
exporters): nearest Resize upsampling, an Add and a Concat merge, gated head convs and two outputs
(heatmap, boxes). Every output of the pruned model equals the gated one for random gates."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from onnx_text import check_pruned, weight_shapes
from real_archs import torch_export
from supernets import randomize

GATES = {"gate.c3": 8, "gate.c4": 12, "gate.lat3": 8, "gate.lat4": 8, "gate.p3": 8,
         "gate.head": 10, "gate.box": 6}


def _cbr(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


class GatedDetector(nn.Module):
    """Backbone (two stages) -> FPN (lateral 1x1, nearest x2 upsample, Add) -> Concat of the
    merged level with an upsampled top level -> CenterNet heads (heatmap + boxes)."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.stem = _cbr(3, 8, 2)
        self.c3 = _cbr(8, 8, 2)
        self.c4 = _cbr(8, 12, 2)
        self.lat3 = nn.Conv2d(8, 8, 1)
        self.lat4 = nn.Conv2d(12, 8, 1)
        self.p3 = _cbr(8, 8)
        self.head = _cbr(16, 10)
        self.heat = nn.Conv2d(10, classes, 1)
        self.box_conv = nn.Conv2d(16, 6, 3, padding=1)
        self.box = nn.Conv2d(6, 4, 1)

    def forward(self, x, c3, c4, lat3, lat4, p3, head, box):
        g = lambda t, v: t * v.view(1, -1, 1, 1)  # noqa: E731
        f3 = g(self.c3(self.stem(x)), c3)
        f4 = g(self.c4(f3), c4)
        l4 = g(self.lat4(f4), lat4)
        merged = g(self.lat3(f3), lat3) + F.interpolate(l4, scale_factor=2.0, mode="nearest")
        q3 = g(self.p3(merged), p3)
        feats = torch.cat([q3, F.interpolate(l4, scale_factor=2.0, mode="nearest")], 1)
        heat = torch.sigmoid(self.heat(g(self.head(feats), head)))
        boxes = self.box(g(F.relu(self.box_conv(feats)), box))
        return heat, boxes


@functools.lru_cache(maxsize=None)
def exported(dynamo: bool) -> onnx.ModelProto:
    net = randomize(GatedDetector(), seed=3)
    example = (torch.randn(1, 3, 32, 32), *[torch.ones(s) for s in GATES.values()])
    model = torch_export(net, example, ["x", *GATES], ["heatmap", "boxes"], dynamo)
    assert [i.name for i in model.graph.input][1:] == list(GATES)
    return onnx.shape_inference.infer_shapes(model)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("seed", range(3))
def test_detector_random_gates_every_output_exact(dynamo, seed):
    rng = np.random.default_rng(seed)
    gates = {n: (rng.random(s) < 0.5).astype(np.float32) for n, s in GATES.items()}
    for g in gates.values():
        g[rng.integers(len(g))] = 1
    check_pruned(exported(dynamo), gates, seed)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_detector_prunes_heads_fpn_and_merge(dynamo):
    gates = {n: np.ones(s, np.float32) for n, s in GATES.items()}
    gates["gate.head"][:5] = 0              # head conv: 10 -> 5 filters, heatmap reads 5
    gates["gate.box"][::2] = 0              # box conv: 6 -> 3
    gates["gate.lat3"][:4] = 0              # FPN merge: channels 0..1 off in both operands
    gates["gate.lat4"][:2] = 0
    gates["gate.c4"][6:] = 0                # backbone stage: 12 -> 6
    pruned, reports = check_pruned(exported(dynamo), gates)
    convs = sorted(weight_shapes(pruned).values())
    # the Concat drops l4's two channels that are off: head convs read 16 - 2
    assert (5, 14, 3, 3) in convs and (3, 5, 1, 1) in convs   # head and heatmap
    assert (3, 14, 3, 3) in convs and (4, 3, 1, 1) in convs   # box branch
    assert (6, 8, 3, 3) in convs and (8, 6, 1, 1) not in convs  # c4 -> lat4 reads 6
    assert (6, 8, 1, 1) in convs and (6, 6, 1, 1) in convs       # lat3 / lat4 keep 6 (union)
    assert reports["gate.lat3"].kept == reports["gate.lat4"].kept == 6
    assert reports["gate.head"].kept == 5
