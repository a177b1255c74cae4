"""Constant-carry analysis: for every tensor of a region, which channels hold a value that is the
same constant everywhere (e.g. exactly 0 right after a gate, or a bias pushed through an
activation), and what that constant is. A removed channel that still carries a constant into a
sink is folded into the sink's bias; a channel that carries data must be kept."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from nnfc.passes.channel_ops import (BINARY, CONST_PRESERVING_POOLS, UNARY, conv_has_padding,
                                     eval_pointwise, is_depthwise_conv)
from nnfc.passes.graph_utils import attr, const_array, rank_of
from nnfc.passes.regions import Region


@dataclass
class ChannelState:
    """Per channel: ``const`` (spatially constant) and its value ``val`` (float32)."""

    const: np.ndarray
    val: np.ndarray

    @classmethod
    def unknown(cls, size: int) -> "ChannelState":
        return cls(np.zeros(size, bool), np.zeros(size, np.float32))

    @property
    def zero(self) -> np.ndarray:
        return self.const & (self.val == 0)


def per_channel(array: np.ndarray, rank: int, axis: int, size: int) -> ChannelState:
    """Split a constant that broadcasts against a rank-``rank`` tensor into per-channel values
    along negative ``axis``; ``const`` is False where it varies along other axes."""
    arr = np.asarray(array, dtype=np.float32)
    arr = arr.reshape((1,) * (rank - arr.ndim) + arr.shape)
    arr = np.moveaxis(arr, rank + axis, 0)
    if arr.shape[0] == 1:
        arr = np.broadcast_to(arr, (size,) + arr.shape[1:])
    flat = arr.reshape(size, -1)
    return ChannelState(np.all(flat == flat[:, :1], axis=1), flat[:, 0].copy())


def analyze(region: Region, order: dict[ir.Node, int]) -> dict[ir.Value, ChannelState]:
    """States of the region's tensors (sliced and cut), evaluated in graph order."""
    size = region.size
    axes = {**region.tensors, **region.cut}
    states: dict[ir.Value, ChannelState] = {}
    for node in sorted({*region.nodes, *region.cut_producers}, key=order.__getitem__):
        for out in node.outputs:
            if out in axes:
                states[out] = _transfer(node, out, axes, states, size)
    return states


def _input_state(value: ir.Value | None, rank: int, axis: int, axes: dict, states: dict,
                 size: int) -> ChannelState:
    if value is None:
        return ChannelState.unknown(size)
    if value in states:
        return states[value]
    arr = const_array(value)
    if arr is not None and value not in axes:
        return per_channel(arr, rank, axis, size)
    return ChannelState.unknown(size)


def _transfer(node: ir.Node, out: ir.Value, axes: dict, states: dict, size: int) -> ChannelState:
    axis = axes[out]
    rank = rank_of(out) or -axis
    op = node.op_type
    data = node.inputs[0]
    if op in BINARY:
        ins = [_input_state(v, rank, axis, axes, states, size) for v in node.inputs[:2]]
        const = ins[0].const & ins[1].const
        shape = [1] * rank
        shape[rank + axis] = size
        val = eval_pointwise(node, [s.val.reshape(shape) for s in ins]).reshape(-1)
        if op == "Mul":  # 0 * anything finite is 0
            zero = ins[0].zero | ins[1].zero
            const, val = const | zero, np.where(zero, 0, val).astype(np.float32)
        return ChannelState(const, np.where(const, val, 0).astype(np.float32))
    src = _input_state(data, rank, axis, axes, states, size)
    if op in UNARY or op == "BatchNormalization":
        shape = [1] * rank
        shape[rank + axis] = size
        extra = [const_array(v) if v is not None else None for v in node.inputs[1:]]
        val = eval_pointwise(node, [src.val.reshape(shape), *extra]).reshape(-1)
        return ChannelState(src.const.copy(), np.where(src.const, val, 0).astype(np.float32))
    if op == "Conv" and is_depthwise_conv(node):
        w = const_array(node.inputs[1]).reshape(size, -1).astype(np.float64)
        b = const_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None \
            else np.zeros(size)
        const = src.const & ((src.val == 0) | (not conv_has_padding(node)))
        val = (src.val * w.sum(axis=1) + b).astype(np.float32)
        return ChannelState(const, np.where(const, val, 0).astype(np.float32))
    if op in CONST_PRESERVING_POOLS or op in ("Flatten", "Reshape") or (
            op == "AveragePool" and (attr(node, "count_include_pad", 0) == 0
                                     or not any(attr(node, "pads") or []))):
        return ChannelState(src.const.copy(), src.val.copy())
    return ChannelState.unknown(size)
