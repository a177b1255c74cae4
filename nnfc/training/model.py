"""The trained network of a factory: a gated backbone's features + a task family's head."""

from __future__ import annotations

import torch
from torch import nn

from nnfc.training.gating import GatedSupernet, Gates


class FamilyModel(GatedSupernet):
    """``forward(x, gates) -> {output name: tensor}`` in the family's ``output_spec`` order.

    Its gate layers are the backbone's, then the head's (a head may hold gated convs); its
    ``family``/``config`` are the backbone's (the manifest's ``backbone`` section).
    """

    def __init__(self, backbone: GatedSupernet, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.family = backbone.family
        self.config = dict(backbone.config)

    def feature_channels(self) -> list[int]:
        return self.backbone.feature_channels()

    def features(self, x: torch.Tensor, gates: Gates | None = None) -> list[torch.Tensor]:
        return self.backbone.features(x, gates)

    def forward(self, x: torch.Tensor, gates: Gates | None = None) -> dict[str, torch.Tensor]:
        return self.head(self.backbone.features(x, gates), gates)
