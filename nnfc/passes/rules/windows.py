"""Ops that put channels side by side or take a window of them: ``Concat`` (a part's channels at
an offset in the whole), ``Split`` and ``Slice`` (a window of the whole). Slicing re-counts each
window over the kept positions."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from nnfc.passes.channel_state import ChannelState
from nnfc.passes.graph_utils import attr, const_array, dim_of, new_initializer, rank_of
from nnfc.passes.layout import Layout
from nnfc.passes.rules.base import GateFlow, OpRule, PassThroughRule
from nnfc.passes.rules.resample import channel_axis


def _parts(whole: ir.Value, layout: Layout, parts, offsets: np.ndarray, alone: bool = False
           ) -> dict[ir.Value, Layout] | None:
    """``whole``'s layout and each part's window of it (parts holding no region channel are
    left out). ``alone``: a part that another ``Concat`` also reads makes it None (DenseNet's
    features feed every later Concat: cut there rather than walk the whole block)."""
    result = {whole: layout}
    for part, start, stop in zip(parts, offsets[:-1], offsets[1:]):
        window = layout.window(int(start), int(stop))
        if not window.absent.all():
            if alone and any(u.node.op_type == "Concat" and u.node is not whole.producer()
                             for u in part.uses()):
                return None
            result[part] = window
    return result


def _kept_before(slicer, layout: Layout) -> np.ndarray:
    """For each index of the axis, how many kept positions come before it."""
    kept = np.zeros(layout.full, bool)
    kept[slicer.keep_index(layout)] = True
    return np.concatenate([[0], np.cumsum(kept)])


class ConcatRule(OpRule):
    """From an input: its channels sit at an offset in the output. From the output: each input
    holds the window of the output's channels it contributed (reached backwards)."""

    role = "channelwise"

    def layouts(self, node, value, layout, gated=None):
        rank = rank_of(value)
        out = node.outputs[0]
        if rank is None or (value is not out and list(node.inputs).count(value) != 1):
            return None
        if attr(node, "axis") % rank != rank + layout.axis:
            return None
        sizes = [dim_of(v, layout.axis) for v in node.inputs]
        if any(s is None for s in sizes):
            return None
        offsets = np.cumsum([0] + sizes)
        if value is out:
            if len(set(node.inputs)) != len(node.inputs):
                return None
            return _parts(out, layout, node.inputs, offsets, alone=True)
        offset = int(offsets[list(node.inputs).index(value)])
        return {value: layout, out: layout.shifted(offset, int(offsets[-1]))}

    def carries_gate(self, node, data, gated: GateFlow) -> bool:
        return len(data) > 1 and all(gated(v) for v in data)

    def transfer(self, node, out, layout, src, ctx) -> ChannelState:
        """Each channel's state comes from the input(s) holding it (all must agree)."""
        size = ctx.size
        const, val, held = np.ones(size, bool), np.zeros(size, np.float32), np.zeros(size, bool)
        for value in node.inputs:
            if value not in ctx.layouts:
                continue
            present = ~ctx.layouts[value].absent
            state = ctx.states.get(value, ChannelState.unknown(size))
            agree = ~held | (state.val == val)
            const &= np.where(present, state.const & agree, True)
            val = np.where(present & ~held, state.val, val)
            held |= present
        const &= held
        return ChannelState(const, np.where(const, val, 0).astype(np.float32))


def split_sizes(node: ir.Node, total: int) -> list[int] | None:
    """Sizes of a Split's outputs along its axis (``total`` long), or None when not static."""
    split = const_array(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] is not None \
        else attr(node, "split")
    n = len(node.outputs)
    if split is not None:
        return [int(s) for s in split]
    step = -(-total // n)  # opset 18: the last chunk may be smaller
    return [min(step, total - i * step) for i in range(n)]


class SplitRule(PassThroughRule):
    role = "channelwise"

    def layouts(self, node, value, layout, gated=None):
        x = node.inputs[0]
        chan = channel_axis(x, layout)
        if chan is None or attr(node, "axis", 0) % rank_of(x) != chan:
            return None
        total = dim_of(x, layout.axis) if value is not x else layout.full
        sizes = split_sizes(node, total) if total is not None else None
        if sizes is None or sum(sizes) != total:
            return None
        offsets = np.cumsum([0] + sizes)
        if value is not x:
            j = list(node.outputs).index(value)
            return {x: layout.shifted(int(offsets[j]), total), value: layout}
        return _parts(x, layout, node.outputs, offsets)


    def slice(self, slicer, node, region) -> None:
        layout = region.layout(node.inputs[0])
        rank = rank_of(node.inputs[0])
        if attr(node, "axis", 0) % rank != rank + layout.axis:
            return
        edges = np.cumsum([0] + split_sizes(node, layout.full))
        sizes = np.diff(_kept_before(slicer, layout)[edges]).astype(np.int64)
        if "num_outputs" in node.attributes:
            del node.attributes["num_outputs"]
        if "split" in node.attributes:  # opset < 13
            node.attributes["split"] = ir.AttrInt64s("split", [int(v) for v in sizes])
        else:
            node.resize_inputs(2)
            node.replace_input_with(1, new_initializer(slicer.graph, sizes, "split_sizes"))


def slice_window(node: ir.Node, chan: int, rank: int, total: int) -> tuple[int, int] | None:
    """``(start, stop)`` a step-1 Slice (opset >= 10) keeps of axis ``chan``, or None."""
    args = [const_array(v) if v is not None else None for v in node.inputs[1:5]]
    starts, ends = args[0], args[1]
    if starts is None or ends is None or len(node.inputs) < 3:
        return None
    axes = args[2] if len(args) > 2 and args[2] is not None else np.arange(len(starts))
    steps = args[3] if len(args) > 3 and args[3] is not None else np.ones(len(starts), np.int64)
    if len(node.inputs) > 3 and node.inputs[3] is not None and args[2] is None:
        return None
    if len(node.inputs) > 4 and node.inputs[4] is not None and args[3] is None:
        return None
    axes = [int(a) % rank for a in axes]
    if chan not in axes:
        return 0, total
    i = axes.index(chan)
    if int(steps[i]) != 1:
        return None
    start, stop, _ = slice(int(starts[i]), int(ends[i])).indices(total)
    return start, max(start, stop)


class SliceRule(PassThroughRule):
    """A step-1 ``Slice`` (opset >= 10: starts/ends/axes/steps as inputs)."""

    role = "channelwise"

    def layouts(self, node, value, layout, gated=None):
        x, out = node.inputs[0], node.outputs[0]
        chan = channel_axis(x, layout)
        total = layout.full if value is x else dim_of(x, layout.axis)
        if chan is None or total is None:
            return None
        window = slice_window(node, chan, rank_of(x), total)
        if window is None:
            return None
        if value is out:
            return {x: layout.shifted(window[0], total), out: layout}
        part = layout.window(*window)
        return {x: layout} if part.absent.all() else {x: layout, out: part}


    def slice(self, slicer, node, region) -> None:
        layout = region.layout(node.inputs[0])
        rank = rank_of(node.inputs[0])
        chan = rank + layout.axis
        window = slice_window(node, chan, rank, layout.full)
        if window is None or window == (0, layout.full):
            return
        before = _kept_before(slicer, layout)
        starts, ends = const_array(node.inputs[1]).copy(), const_array(node.inputs[2]).copy()
        axes = const_array(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] is not None \
            else np.arange(len(starts))
        i = [int(a) % rank for a in axes].index(chan)
        starts[i], ends[i] = before[window[0]], before[window[1]]
        node.replace_input_with(1, new_initializer(slicer.graph, starts, "slice_starts"))
        node.replace_input_with(2, new_initializer(slicer.graph, ends, "slice_ends"))
