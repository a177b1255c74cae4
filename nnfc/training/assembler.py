"""The assembler: (task attributes, activation limit) -> one gate vector per gate layer.

``enc_req = concat(task multi-hot [B,A], sinusoidal(limit) [B,E])``;
``enc_sel = ReLU(BN(FC(enc_req)))`` (``depth`` such layers); per gate layer ``l`` a gater
``FC+BN+ReLU`` (its own BN) followed by a linear score head ``v_l ∈ R^{D_l}``. Optionally
``experts > 1`` gaters per layer mixed by a small softmax gating network (the paper's MoE detail).
``depth = 0`` with ``gater_hidden = 0`` is the *additive* assembler: ``v_l = W_l·task +
U_l·sinusoidal(limit) + b_l``, so each attribute shifts the scores by the same amount whatever it
is combined with. On NumVQA that is what carries trained attributes over to unseen combinations
(unseen-task accuracy 81 % → 98 % at a 100 % limit, same ResNet and epochs), and the shipped
ResNet config uses it; the FC+BN+ReLU stacks learn attribute interactions that do not transfer.
*Factorized* (``attribute_groups``, additive only): every gate entry listens to one group of
attributes (entry ``i`` to group ``i mod G``; AttrOD: colours, categories), its weights for the
others held at zero. No entry can then single out one colour-category pair: the network has to
combine colour channels and category channels itself, and an unseen pair is a new combination of
trained ones. Factorized gaters may have ``experts > 1``: the mix then reads only the limit's
encoding, so the scores stay additive in the attributes at every limit (experts per limit range).
``weight_l = clamp(1.2σ(v_l) − 0.1, 0, 1)`` and gates ``= weight_l > 0.5`` (i.e. ``v_l > 0``);
training uses improved SemHash (see semhash.py). At inference ``cap_at_limit`` (default on) keeps
at most ``floor(limit · total)`` active entries per request — the highest-scoring ones across all
layers — so the activation ratio is guaranteed not to exceed the limit (the trained gaters nearly
always respect it; the cap trims the rare overshoot of a channel or two at very small limits).

The limit's positional encoding is part of the module, so the exported ``assembler.onnx`` takes
just ``task`` [B,A] and ``limit`` [B] and returns 0/1 float gates ``gate.<layer>`` [B,size].
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from nnfc.training.gating import GateLayer
from nnfc.training.semhash import hard_gate, semhash


def limit_encoding(limit: torch.Tensor, dim: int, scale: float) -> torch.Tensor:
    """Sinusoidal encoding of ``limit`` [B] at position ``scale·limit``: [B, dim] (+1 raw limit)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=limit.device)
                      * (-math.log(10000.0) * 2.0 / dim))
    pos = (limit.to(torch.float32) * scale).unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat([torch.sin(pos), torch.cos(pos), limit.to(torch.float32).unsqueeze(1)], 1)


def _fc_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, cout), nn.BatchNorm1d(cout), nn.ReLU())


class Gater(nn.Module):
    """FC+BN+ReLU then a linear score per gate entry; ``experts`` of them mixed by softmax."""

    def __init__(self, cin: int, hidden: int, size: int, experts: int = 1,
                 mask: torch.Tensor | None = None, num_attributes: int = 0):
        super().__init__()
        # hidden = 0: a plain linear score per gate entry (additive in the task attributes,
        # which helps unseen attribute combinations)
        self.experts = nn.ModuleList(
            nn.Sequential(_fc_bn_relu(cin, hidden), nn.Linear(hidden, size)) if hidden
            else nn.Sequential(nn.Linear(cin, size))
            for _ in range(experts))
        self.mix = nn.Linear(cin, experts) if experts > 1 else None
        if mask is not None:  # [size, cin] 0/1: which inputs each score may read
            if hidden:
                raise ValueError("a factorized gater is additive: gater_hidden = 0")
            self.register_buffer("mask", mask.to(torch.float32))
            # factorized experts are mixed by the limit alone (the mix ignores the task), so
            # the scores stay additive in the task attributes at every limit: one expert per
            # range of limits (the paper's remedy for broad sparsity ranges)
            mix_mask = torch.ones(experts, cin)
            mix_mask[:, :num_attributes] = 0.0
            self.register_buffer("mix_mask", mix_mask if experts > 1 else None,
                                 persistent=False)  # derived from the config, not a weight
        else:
            self.mask = self.mix_mask = None

    def _expert(self, i: int, enc: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            return self.experts[i](enc)
        linear = self.experts[i][0]
        return nn.functional.linear(enc, linear.weight * self.mask, linear.bias)

    def forward(self, enc: torch.Tensor) -> torch.Tensor:
        if self.mix is None:
            return self._expert(0, enc)
        mix_w = self.mix.weight if self.mix_mask is None else self.mix.weight * self.mix_mask
        weights = torch.softmax(nn.functional.linear(enc, mix_w, self.mix.bias), dim=1)  # [B, E]
        scores = torch.stack([self._expert(i, enc) for i in range(len(self.experts))],
                             dim=2)  # [B, D, E]
        return (scores * weights.unsqueeze(1)).sum(2)


class Assembler(nn.Module):
    """Task + limit -> gater scores / gates for every gate layer of a supernet."""

    def __init__(self, num_attributes: int, gate_layers: Sequence[GateLayer], hidden: int = 128,
                 depth: int = 1, gater_hidden: int = 64, experts: int = 1,
                 limit_dim: int = 20, limit_scale: float = 100.0, init_bias: float = 1.0,
                 cap_at_limit: bool = True,
                 attribute_groups: Sequence[Sequence[int]] | None = None):
        super().__init__()
        groups = [list(map(int, g)) for g in attribute_groups] if attribute_groups else None
        self.config = dict(hidden=hidden, depth=depth, gater_hidden=gater_hidden,
                           experts=experts, limit_dim=limit_dim, limit_scale=limit_scale,
                           init_bias=init_bias, cap_at_limit=cap_at_limit,
                           **({"attribute_groups": groups} if groups else {}))
        self.cap_at_limit = cap_at_limit
        self.num_attributes = num_attributes
        self.layers = list(gate_layers)
        self.limit_dim, self.limit_scale = limit_dim, limit_scale
        cin = num_attributes + 2 * (limit_dim // 2) + 1
        enc: list[nn.Module] = []
        for _ in range(depth):
            enc.append(_fc_bn_relu(cin, hidden))
            cin = hidden
        self.encoder = nn.Sequential(*enc)
        if groups and depth:
            raise ValueError("a factorized assembler is additive: depth = 0")
        self.gaters = nn.ModuleList(
            Gater(cin, gater_hidden, g.size, experts,
                  factor_mask(groups, g.size, num_attributes, cin) if groups else None,
                  num_attributes)
            for g in self.layers)
        for g in self.gaters:  # init_bias > 0 starts with most gates on, 0 with task-dependent ones
            for e in g.experts:
                nn.init.constant_(e[-1].bias, init_bias)

    def scores(self, task: torch.Tensor, limit: torch.Tensor) -> list[torch.Tensor]:
        """Gater scores ``v_l`` [B, size] per gate layer (gate = v > 0)."""
        enc = torch.cat([task.to(torch.float32),
                         limit_encoding(limit, self.limit_dim, self.limit_scale)], 1)
        enc = self.encoder(enc)
        return [g(enc) for g in self.gaters]

    def discrete_gates(self, task: torch.Tensor, limit: torch.Tensor) -> list[torch.Tensor]:
        """Inference gates (0/1) per layer: ``v > 0``, and with ``cap_at_limit`` at most
        ``floor(limit · total)`` entries per sample (the highest scores across all layers), so
        the activation ratio never exceeds the limit."""
        scores = self.scores(task, limit)
        gates = [hard_gate(v) for v in scores]
        if not self.cap_at_limit:
            return gates
        return [g * m for g, m in zip(gates, cap_masks(scores, limit))]

    def forward(self, task: torch.Tensor, limit: torch.Tensor,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Gates per layer name: SemHash mix in training, discrete 0/1 in eval."""
        if not self.training:
            return {layer.name: g for layer, g in zip(self.layers,
                                                       self.discrete_gates(task, limit))}
        return {layer.name: semhash(v, self.training, generator)
                for layer, v in zip(self.layers, self.scores(task, limit))}


def cap_masks(scores: Sequence[torch.Tensor], limit: torch.Tensor) -> list[torch.Tensor]:
    """Per layer, 0/1 [B, size]: the ``floor(limit · total)`` highest scores of each sample
    across all layers (the inference cap; ``train.cap_in_training`` applies it in training)."""
    flat = torch.cat([v.detach() for v in scores], dim=1)  # [B, total]
    total = flat.shape[1]
    k = torch.clamp(torch.floor(limit.to(torch.float32) * total + 1e-4), 1, total)
    ranked = torch.sort(flat, dim=1, descending=True).values
    kth = torch.gather(ranked, 1, (k.to(torch.int64) - 1).unsqueeze(1))  # [B, 1]
    return [(v.detach() >= kth).to(v.dtype) for v in scores]


def factor_mask(groups: Sequence[Sequence[int]], size: int, num_attributes: int,
                cin: int) -> torch.Tensor:
    """[size, cin] 0/1: entry ``i`` reads the attributes of group ``i mod len(groups)`` and
    every non-attribute input (the limit's encoding)."""
    mask = torch.ones(size, cin)
    mask[:, :num_attributes] = 0.0
    for i in range(size):
        mask[i, list(groups[i % len(groups)])] = 1.0
    return mask


def active_ratio(gates: dict[str, torch.Tensor], layers: Sequence[GateLayer]) -> torch.Tensor:
    """Per-sample active ratio [B]: sum of gate values over all layers / sum of layer sizes."""
    total = sum(g.size for g in layers)
    return sum(gates[g.name].sum(1) for g in layers) / total


def gate_loss(ratio: torch.Tensor, limit: torch.Tensor, relative: bool = False) -> torch.Tensor:
    """Mean over samples of ``(ratio − limit)²`` where ``ratio > limit``, else 0 (the paper's
    MSE). ``relative``: ``((ratio − limit) / limit)²`` instead, so that overshooting a small
    limit costs as much as overshooting a large one by the same factor."""
    over = torch.relu(ratio - limit)
    if relative:
        over = over / limit
    return (over * over).mean()


class _ExportAssembler(nn.Module):
    """ONNX view: discrete gates, outputs in gate-layer order."""

    def __init__(self, assembler: Assembler):
        super().__init__()
        self.assembler = assembler

    def forward(self, task: torch.Tensor, limit: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.assembler.discrete_gates(task, limit))
