"""Gate layers: the modular unit of an NN-Factory supernet.

A gated layer multiplies its activation by a binary gate vector ``g`` (one entry per conv filter or
FFN hidden unit): ``O = act(F * x) * g``. Gates are passed to ``forward`` as a dict keyed by the
gate layer name; a missing gate means "all on". A gate may be 1-D ``[size]`` (one subnet for the
whole batch, the export contract) or 2-D ``[B, size]`` (per-sample gates, used in joint training).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Mapping

import torch
from torch import nn

GateKind = Literal["conv", "depthwise", "ffn"]
Gates = Mapping[str, torch.Tensor]

GATE_INPUT_PREFIX = "gate."


@dataclass(frozen=True)
class GateLayer:
    """One gate layer: ``name`` (graph input ``gate.<name>``), ``size`` channels, ``kind``."""

    name: str
    size: int
    kind: GateKind

    @property
    def input_name(self) -> str:
        return GATE_INPUT_PREFIX + self.name

    def to_json(self) -> dict:
        return asdict(self)


class Gate(nn.Module):
    """Multiplies an activation by its gate. ``channel_axis`` 1 for NCHW, -1 for tokens."""

    def __init__(self, name: str, size: int, kind: GateKind, channel_axis: int = 1):
        super().__init__()
        self.layer = GateLayer(name, size, kind)
        self.channel_axis = channel_axis

    def forward(self, x: torch.Tensor, gates: Gates | None) -> torch.Tensor:
        if not gates or self.layer.name not in gates:
            return x
        g = gates[self.layer.name].to(x.dtype)
        if self.channel_axis == -1:
            # [size] broadcasts over [B, T, size]; [B, size] needs a token axis.
            return x * (g if g.dim() == 1 else g.unsqueeze(1))
        if g.dim() == 1:
            return x * g.reshape(1, -1, 1, 1)
        return x * g.reshape(g.shape[0], -1, 1, 1)


def global_pool(feature: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C] (mean over space); [B, C] unchanged."""
    if feature.dim() == 4:
        return torch.flatten(torch.mean(feature, dim=(2, 3), keepdim=True), 1)
    return feature


class GatedSupernet(nn.Module):
    """Base class of every gated network: ``forward(x, gates)`` and the ordered gate layers.

    A backbone also gives its gated features: ``feature_channels()`` and
    ``features(x, gates) -> list[Tensor]`` (finest scale first; the last is the deepest), which a
    task family's head turns into its named outputs (``nnfc.training.model.FamilyModel``). Built
    with ``num_classes``, a backbone's ``forward`` is a plain classifier over its last feature
    (the presets the pass tests and benchmarks use).
    """

    #: Backbone family name written to the manifest ("resnet", "mobilenet", "vit").
    family: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.config: dict = {}

    def feature_channels(self) -> list[int]:
        """Channels of each tensor :meth:`features` returns."""
        raise NotImplementedError

    def features(self, x: torch.Tensor, gates: Gates | None = None) -> list[torch.Tensor]:
        """The gated feature maps (or final feature) for a head."""
        raise NotImplementedError

    def classify(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The built-in classifier (``num_classes``): global mean pool of the last feature + fc."""
        return self.fc(global_pool(features[-1]))

    def forward(self, x: torch.Tensor, gates: Gates | None = None) -> torch.Tensor:
        return self.classify(self.features(x, gates))

    def gate_layers(self) -> list[GateLayer]:
        """Gate layers in forward order (the order of the supernet's gate inputs)."""
        seen: dict[str, GateLayer] = {}
        for module in self.modules():
            if isinstance(module, Gate) and module.layer.name not in seen:
                seen[module.layer.name] = module.layer
        return list(seen.values())

    def gated_param_axes(self) -> dict[str, dict[int, str]]:
        """Parameter name -> {axis: gate layer} for every parameter a gate slices (out-channel
        axis 0 of the gated layer's weights/BN, in-channel axis 1 of its consumers). Declared by
        blocks in ``GATED_PARAMS`` as (relative param name, axis, gate attribute)."""
        axes: dict[str, dict[int, str]] = {}
        for prefix, module in self.named_modules():
            for rel, axis, gate_attr in getattr(module, "GATED_PARAMS", ()):
                gate = getattr(module, gate_attr, None)
                param = f"{prefix}.{rel}" if prefix else rel
                if gate is None or param not in dict(self.named_parameters()):
                    continue
                axes.setdefault(param, {})[axis] = gate.layer.name
        return axes

    def full_gates(self, batch: int | None = None) -> dict[str, torch.Tensor]:
        """All-ones gates (the full supernet)."""
        shape = (lambda s: (s,)) if batch is None else (lambda s: (batch, s))
        return {g.name: torch.ones(shape(g.size)) for g in self.gate_layers()}
