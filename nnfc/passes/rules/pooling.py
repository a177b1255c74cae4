"""Pooling and reductions over axes other than the channel axis: a constant plane stays that
constant (average pooling only without counted padding)."""

from __future__ import annotations

import onnx_ir as ir

from nnfc.passes.channel_state import ChannelState, same
from nnfc.passes.graph_utils import attr, const_array, rank_of
from nnfc.passes.rules.base import PassThroughRule


def _reduce_axes(node: ir.Node) -> list[int] | None:
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = const_array(node.inputs[1])
        return None if axes is None else [int(a) for a in axes]
    return attr(node, "axes")


class PoolRule(PassThroughRule):
    """MaxPool, AveragePool, the global pools and ReduceMean/Max/Min."""

    role = "channelwise"

    def layouts(self, node, value, layout, gated=None):
        x, out, axis = node.inputs[0], node.outputs[0], layout.axis
        rank = rank_of(x)
        if rank is None:
            return None
        if node.op_type.startswith("Reduce"):
            if value is out and not attr(node, "keepdims", 1):
                return None
            chan = rank + axis
            axes = _reduce_axes(node)
            if axes is None or chan in [a % rank for a in axes]:
                return None
            if not attr(node, "keepdims", 1):  # reduced axes after the channel axis go away
                after = sum(1 for a in axes if a % rank > chan)
                return {x: layout, out: layout.with_axis(axis + after)}
        elif rank + axis != 1:
            return None
        return {x: layout, out: layout}

    def zero_preserving(self, node) -> bool:
        return False

    def transfer(self, node, out, layout, src, ctx) -> ChannelState:
        if node.op_type == "AveragePool" and attr(node, "count_include_pad", 0) \
                and any(attr(node, "pads") or []):
            return ChannelState.unknown(ctx.size)
        return same(src)
