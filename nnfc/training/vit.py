"""Gated Vision Transformer: each FFN hidden unit is a module.

FFN: ``h = x W1 + b1; h' = h * g; F = act(h') W2 + b2`` — the gate multiplies the hidden
pre-activation (GELU(0) = 0, so a gated-off unit contributes nothing).
"""

from __future__ import annotations

import torch
from torch import nn

from nnfc.training.gating import Gate, GatedSupernet, Gates


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, t, d))


class GatedFFN(nn.Module):
    GATED_PARAMS = (("fc1.weight", 0, "gate"), ("fc1.bias", 0, "gate"), ("fc2.weight", 1, "gate"))
    def __init__(self, name: str, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.gate = Gate(name, hidden, "ffn", channel_axis=-1)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, gates: Gates | None) -> torch.Tensor:
        return self.fc2(self.act(self.gate(self.fc1(x), gates)))


class Block(nn.Module):
    def __init__(self, name: str, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = GatedFFN(f"{name}.ffn", dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, gates: Gates | None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x), gates)


class GatedViT(GatedSupernet):
    """ViT with a class token; ``image_size`` must be a multiple of ``patch``.

    ``features`` is the normalised class token [B, dim]; ``num_classes`` adds a linear
    classifier (``head``) as ``forward``, ``None`` leaves the feature to a task family's head.
    """

    family = "vit"

    def __init__(
        self,
        image_size: int = 224,
        patch: int = 16,
        in_channels: int = 3,
        num_classes: int | None = 1000,
        dim: int = 384,
        depth: int = 12,
        heads: int = 6,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not a multiple of patch {patch}")
        self.config = dict(image_size=image_size, patch=patch, in_channels=in_channels,
                           num_classes=num_classes, dim=dim, depth=depth, heads=heads,
                           mlp_ratio=mlp_ratio)
        tokens = (image_size // patch) ** 2 + 1
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(f"blocks.{i}", dim, heads, mlp_ratio)
                                    for i in range(depth))
        self.norm = nn.LayerNorm(dim)
        self._dim = dim
        if num_classes:
            self.head = nn.Linear(dim, num_classes)

    def feature_channels(self) -> list[int]:
        return [self._dim]

    def features(self, x: torch.Tensor, gates: Gates | None = None) -> list[torch.Tensor]:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x, gates)
        return [self.norm(x)[:, 0]]

    def classify(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.head(features[-1])
