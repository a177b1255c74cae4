"""The torch half of each task family (:class:`nnfc.families.TrainingFamily`): its head and loss.

:data:`TRAINING_FAMILIES` maps a task family's name to ``"module:Class"`` of its training half,
imported on first use (a family of one's own: :func:`register_training_family`);
:func:`training_family` returns an instance. NumVQA's lives here: a
linear classifier over the globally pooled deepest feature, trained with cross-entropy.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnfc.errors import NnfcError
from nnfc.families.base import TrainingFamily
from nnfc.training.gating import Gates, global_pool

TRAINING_FAMILIES: dict[str, str] = {
    "numvqa": "nnfc.training.heads:NumVQATraining",
    "attrod": "nnfc.training.detection:AttrODTraining",
}


def register_training_family(name: str, target: str) -> None:
    """Register the training half of a family of one's own as ``"package.module:Class"``."""
    TRAINING_FAMILIES[name] = target


def training_family(name: str) -> TrainingFamily:
    """The training half registered for task family ``name``."""
    if name not in TRAINING_FAMILIES:
        raise NnfcError(f"task family {name!r} has no training half; known: "
                        f"{', '.join(sorted(TRAINING_FAMILIES))}")
    module, _, cls = TRAINING_FAMILIES[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


class ClassificationHead(nn.Module):
    """``{name: fc(global_pool(features[-1]))}``: logits [B, classes]."""

    def __init__(self, channels: int, classes: int, name: str):
        super().__init__()
        self.name = name
        self.fc = nn.Linear(channels, classes)

    def forward(self, features: Sequence[torch.Tensor], gates: Gates | None = None
                ) -> dict[str, torch.Tensor]:
        return {self.name: self.fc(global_pool(features[-1]))}


class NumVQATraining:
    """NumVQA: yes/no logits from the deepest feature; cross-entropy against ``label``."""

    def build_head(self, feature_channels: Sequence[int], config: Mapping[str, Any]) -> nn.Module:
        from nnfc.families.numvqa import CLASSES, OUTPUT
        if config:
            raise NnfcError(f"[head]: numvqa's classifier takes no options (got "
                            f"{', '.join(sorted(config))})")
        return ClassificationHead(int(feature_channels[-1]), len(CLASSES), OUTPUT)

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        from nnfc.families.numvqa import OUTPUT
        return F.cross_entropy(outputs[OUTPUT], batch["label"])
