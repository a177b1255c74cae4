"""Constant-carry analysis: for every tensor of a region, which channels hold a value that is the
same constant everywhere (e.g. exactly 0 right after a gate, or a bias pushed through an
activation), and what that constant is. A removed channel that still carries a constant into a
sink is folded into the sink's bias; a channel that carries data must be kept."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from nnfc.passes.channel_ops import (BINARY, CONST_PRESERVING_POOLS, RESIZES, UNARY,
                                     conv_has_padding, eval_pointwise, is_depthwise_conv)
from nnfc.passes.graph_utils import attr, const_array, rank_of
from nnfc.passes.layout import Layout
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


def per_channel(array: np.ndarray, rank: int, layout: Layout, size: int) -> ChannelState:
    """Split a constant that broadcasts against a rank-``rank`` tensor into per-channel values
    (channel ``c`` at ``layout.positions[c]``); ``const`` is False where it is not uniform."""
    arr = np.asarray(array, dtype=np.float32)
    arr = arr.reshape((1,) * (rank - arr.ndim) + arr.shape)
    arr = np.moveaxis(arr, rank + layout.axis, 0)
    if arr.shape[0] == 1:
        arr = np.broadcast_to(arr, (layout.full,) + arr.shape[1:])
    flat = arr[np.maximum(layout.positions, 0).ravel()].reshape(size, -1)
    return ChannelState(np.all(flat == flat[:, :1], axis=1), flat[:, 0].copy())


def analyze(region: Region, order: dict[ir.Node, int]) -> dict[ir.Value, ChannelState]:
    """States of the region's tensors (sliced and cut), evaluated in graph order."""
    size = region.size
    layouts = {**region.tensors, **region.cut}
    states: dict[ir.Value, ChannelState] = {}
    for node in sorted({*region.nodes, *region.cut_producers}, key=order.__getitem__):
        for out in node.outputs:
            if out in layouts:
                state = _transfer(node, out, layouts, states, size)
                absent = layouts[out].absent  # channels this tensor does not hold add nothing
                state.const[absent], state.val[absent] = True, 0
                states[out] = state
    return states


def _input_state(value: ir.Value | None, rank: int, layout: Layout, layouts: dict,
                 states: dict, size: int) -> ChannelState:
    if value is None:
        return ChannelState.unknown(size)
    if value in states:
        return states[value]
    arr = const_array(value)
    if arr is not None and value not in layouts:
        return per_channel(arr, rank, layout, size)
    return ChannelState.unknown(size)


def _transfer(node: ir.Node, out: ir.Value, layouts: dict, states: dict, size: int
              ) -> ChannelState:
    layout = layouts[out]
    rank = rank_of(out) or -layout.axis
    op = node.op_type
    shape = [1] * rank
    shape[rank + layout.axis] = size
    if op in BINARY:
        ins = [_input_state(v, rank, layout, layouts, states, size) for v in node.inputs[:2]]
        const = ins[0].const & ins[1].const
        val = eval_pointwise(node, [s.val.reshape(shape) for s in ins]).reshape(-1)
        if op == "Mul":  # 0 * anything finite is 0
            zero = ins[0].zero | ins[1].zero
            const, val = const | zero, np.where(zero, 0, val).astype(np.float32)
        return ChannelState(const, np.where(const, val, 0).astype(np.float32))
    if op == "Concat":
        return _concat_state(node, layouts, states, size)
    else:
        data = node.inputs[0]
    src = _input_state(data, rank, layout, layouts, states, size)
    if op in UNARY or op == "BatchNormalization":
        extra = [const_array(v) if v is not None else None for v in node.inputs[1:]]
        if op == "BatchNormalization":  # per-channel parameters at the region's positions
            extra = [a[layout.positions[:, 0]] for a in extra[:4]]
        val = eval_pointwise(node, [src.val.reshape(shape), *extra]).reshape(-1)
        return ChannelState(src.const.copy(), np.where(src.const, val, 0).astype(np.float32))
    if op == "Conv" and is_depthwise_conv(node):
        rows = layout.positions[:, 0]
        w = const_array(node.inputs[1]).reshape(layout.full, -1)[rows].astype(np.float64)
        b = const_array(node.inputs[2])[rows] if len(node.inputs) > 2 and \
            node.inputs[2] is not None else np.zeros(size)
        const = src.const & ((src.val == 0) | (not conv_has_padding(node)))
        val = (src.val * w.sum(axis=1) + b).astype(np.float32)
        return ChannelState(const, np.where(const, val, 0).astype(np.float32))
    if op in RESIZES and attr(node, "coordinate_transformation_mode", "") != "tf_crop_and_resize":
        # interpolation weights sum to one: a constant plane stays that constant
        return ChannelState(src.const.copy(), src.val.copy())
    if op in ("Split", "Slice", "Transpose"):
        return ChannelState(src.const.copy(), src.val.copy())
    if op == "Pad":  # a uniform plane stays uniform when padded with its own value or edges
        mode = attr(node, "mode", "constant")
        if mode in ("edge", "reflect", "wrap"):
            return ChannelState(src.const.copy(), src.val.copy())
        fill = const_array(node.inputs[2]) if len(node.inputs) > 2 and \
            node.inputs[2] is not None else None
        fill = 0.0 if fill is None or fill.size == 0 else float(fill.reshape(-1)[0])
        const = src.const & (src.val == fill)
        return ChannelState(const, np.where(const, src.val, 0).astype(np.float32))
    if op in CONST_PRESERVING_POOLS or op in ("Flatten", "Reshape", "Concat") or (
            op == "AveragePool" and (attr(node, "count_include_pad", 0) == 0
                                     or not any(attr(node, "pads") or []))):
        return ChannelState(src.const.copy(), src.val.copy())
    return ChannelState.unknown(size)


def _concat_state(node: ir.Node, layouts: dict, states: dict, size: int) -> ChannelState:
    """Each channel's state comes from the input(s) holding it (all must agree)."""
    const, val = np.ones(size, bool), np.zeros(size, np.float32)
    held = np.zeros(size, bool)
    for value in node.inputs:
        if value not in layouts:
            continue
        present = ~layouts[value].absent
        state = states.get(value, ChannelState.unknown(size))
        agree = ~held | (state.val == val)
        const &= np.where(present, state.const & agree, True)
        val = np.where(present & ~held, state.val, val)
        held |= present
    const &= held
    return ChannelState(const, np.where(const, val, 0).astype(np.float32))
