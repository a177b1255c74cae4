"""Improved semantic hashing (Kaiser & Bengio), as NN-Factory trains its gates.

For a gater score ``v``: ``g_alpha = 1(v > 0)`` and ``g_beta = clamp(1.2·sigmoid(v) − 0.1, 0, 1)``.
In training a random half of the samples use ``g_alpha`` (its gradient is ``g_beta``'s:
straight-through) and the other half ``g_beta``; evaluation always uses discrete gates.
Note ``g_alpha = 1(g_beta > 0.5)``, so "gates = weight > 0.5" with ``weight = g_beta``.
"""

from __future__ import annotations

import torch


def soft_gate(v: torch.Tensor) -> torch.Tensor:
    """``g_beta = clamp(1.2·sigmoid(v) − 0.1, 0, 1)``."""
    return torch.clamp(1.2 * torch.sigmoid(v) - 0.1, 0.0, 1.0)


def hard_gate(v: torch.Tensor) -> torch.Tensor:
    """``g_alpha = 1(v > 0)`` (float 0/1), no gradient."""
    return (v > 0).to(v.dtype)


def straight_through(v: torch.Tensor) -> torch.Tensor:
    """Discrete values ``g_alpha`` with the gradient of ``g_beta``."""
    soft = soft_gate(v)
    return soft + (hard_gate(v) - soft).detach()


def semhash(v: torch.Tensor, training: bool, generator: torch.Generator | None = None,
            hard_fraction: float = 0.5) -> torch.Tensor:
    """Gates for scores ``v`` of shape [B, D].

    Training: per sample, with probability ``hard_fraction`` the straight-through discrete gates,
    otherwise the soft gates. Eval: discrete gates.
    """
    if not training:
        return hard_gate(v)
    pick = torch.rand(v.shape[0], 1, generator=generator, device="cpu").to(v.device) < hard_fraction
    return torch.where(pick, straight_through(v), soft_gate(v))
