"""Constant-carry analysis: for every tensor of a region, which channels hold a value that is the
same constant everywhere (e.g. exactly 0 right after a gate, or a bias pushed through an
activation), and what that constant is. A removed channel that still carries a constant into a
sink is folded into the sink's bias; a channel that carries data must be kept. Each op's rule says how a state passes
through it (``OpRule.transfer``); ``plan.analyze`` evaluates a region in graph order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import onnx_ir as ir

from nnfc.passes.graph_utils import const_array, rank_of
from nnfc.passes.layout import Layout


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
    g = layout.positions.shape[1]
    flat = arr[np.maximum(layout.positions, 0).ravel()].reshape(size, g, -1)
    valid = (layout.positions >= 0)[:, :, None]   # positions -1 hold nothing
    first = flat[np.arange(size), np.argmax(valid[:, :, 0], axis=1), 0]
    const = np.all(~valid | (flat == first[:, None, None]), axis=(1, 2))
    return ChannelState(const, first.copy())


@dataclass
class TransferContext:
    """What a rule's ``transfer`` sees: every region tensor's layout and the states so far."""

    layouts: dict[ir.Value, Layout]
    states: dict[ir.Value, ChannelState]
    size: int

    def shape(self, out: ir.Value) -> list[int]:
        """Broadcast shape of a per-channel vector against ``out``."""
        layout = self.layouts[out]
        rank = rank_of(out) or -layout.axis
        shape = [1] * rank
        shape[rank + layout.axis] = self.size
        return shape

    def input_state(self, value: ir.Value | None, out: ir.Value) -> ChannelState:
        """The state of a node input: computed for region tensors, read from constants."""
        if value is None:
            return ChannelState.unknown(self.size)
        if value in self.states:
            return self.states[value]
        arr = const_array(value)
        if arr is not None and value not in self.layouts:
            layout = self.layouts[out]
            return per_channel(arr, rank_of(out) or -layout.axis, layout, self.size)
        return ChannelState.unknown(self.size)



def same(src: ChannelState) -> ChannelState:
    """A constant plane stays that constant (reshapes, max/mean pools, Split, nearest Resize)."""
    return ChannelState(src.const.copy(), src.val.copy())


def columns(layout: Layout) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """(valid [C] bool, rows [C]) for each position column of a layout (a channel may sit at
    several positions: after a Flatten, or coupled through a Concat)."""
    for j in range(layout.positions.shape[1]):
        col = layout.positions[:, j]
        yield col >= 0, np.maximum(col, 0)


def agreeing(src: ChannelState, per_column) -> ChannelState:
    """A channel is constant when every position it holds computes the same constant."""
    const, val, first = src.const.copy(), np.zeros_like(src.val), None
    for valid, v in per_column:
        if first is None:
            val, first = np.where(valid, v, 0).astype(np.float32), valid.copy()
            continue
        const &= ~valid | ~first | (v == val)
        val = np.where(~first & valid, v, val).astype(np.float32)
        first |= valid
    return ChannelState(const, np.where(const, val, 0).astype(np.float32))
