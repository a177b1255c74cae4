"""``com.microsoft.FusedConv``: a ``Conv`` with its activation fused in (what ONNX Runtime's
extended graph optimizations write for ``Conv → Relu`` and friends): ``act(conv(x, W) + B)``,
optionally ``+ Z`` before the activation (not handled: the region stops there)."""

from __future__ import annotations

import numpy as np

from nnfc.passes.channel_state import ChannelState
from nnfc.passes.graph_utils import attr
from nnfc.passes.rules.conv import ConvRule


def _activation(node, x: np.ndarray) -> np.ndarray | None:
    """The fused activation on float64 ``x``, or None for one nnfc does not evaluate."""
    act = attr(node, "activation", "")
    params = list(attr(node, "activation_params", []) or [])
    if act in ("", "Identity"):
        return x
    if act == "Relu":
        return np.maximum(x, 0)
    if act == "LeakyRelu":
        return np.where(x < 0, (params[0] if params else 0.01) * x, x)
    if act == "Sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if act == "Tanh":
        return np.tanh(x)
    if act == "HardSigmoid":
        alpha, beta = (params + [0.2, 0.5][len(params):])[:2]
        return np.clip(alpha * x + beta, 0, 1)
    if act == "Clip" and len(params) == 2:
        return np.clip(x, params[0], params[1])
    return None


class FusedConvRule(ConvRule):
    """As :class:`ConvRule` (plain, grouped, depthwise) when there is no ``Z`` input; a removed
    input channel's constant folds into ``B`` (inside the activation, as for a ``Conv``); output
    channels become exact zeros only where the activation maps 0 to 0."""

    def _plain(self, node) -> bool:
        return (len(node.inputs) < 4 or node.inputs[3] is None) \
            and _activation(node, np.zeros(1)) is not None

    def creates(self, node, axis) -> bool:
        return self._plain(node) and super().creates(node, axis)

    def consumes(self, node, index, axis) -> bool:
        return self._plain(node) and super().consumes(node, index, axis)

    def layouts(self, node, value, layout, gated=None):
        return super().layouts(node, value, layout, gated) if self._plain(node) else None

    def transfer(self, node, out, layout, src, ctx) -> ChannelState:
        state = super().transfer(node, out, layout, src, ctx)
        val = _activation(node, state.val.astype(np.float64)).astype(np.float32)
        return ChannelState(state.const, np.where(state.const, val, 0).astype(np.float32))

    def can_zero_outputs(self, node, size) -> bool:
        return self._plain(node) and float(_activation(node, np.zeros(1))[0]) == 0.0 \
            and super().can_zero_outputs(node, size)

    def zero_outputs(self, node, channels) -> bool:
        return self.can_zero_outputs(node, -1) and super().zero_outputs(node, channels)
