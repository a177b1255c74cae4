"""Convolutions: ``Conv`` (plain, grouped and depthwise) and ``ConvTranspose``.

A plain or grouped conv with a constant weight creates channels (its filters and bias are sliced)
and consumes them (its input columns; a grouped conv loses equal counts per group). A depthwise
conv (one filter per channel) is channel-wise: the region flows through it."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from nnfc.passes.channel_state import ChannelState, agreeing, columns
from nnfc.passes.graph_utils import attr, const_array, is_const, new_initializer, rank_of
from nnfc.passes.rules.base import GateFlow, LayerAxes, OpRule, own_constant, zero_entries


def is_depthwise_conv(node: ir.Node) -> bool:
    """Conv with one filter per input channel (groups == in channels == out channels)."""
    if len(node.inputs) < 2 or not is_const(node.inputs[1]):
        return False
    w = node.inputs[1].const_value
    group = attr(node, "group", 1)
    return group > 1 and w.shape[1] == 1 and w.shape[0] == group


def conv_has_padding(node: ir.Node) -> bool:
    pads = attr(node, "pads") or []
    auto = attr(node, "auto_pad", "NOTSET")
    return any(int(p) != 0 for p in pads) or auto in ("SAME_UPPER", "SAME_LOWER")


def add_to_input(graph: ir.Graph, node: ir.Node, index: int, delta: np.ndarray,
                 length: int) -> None:
    """Add ``delta`` to the node's bias input ``index`` (created if absent), copy-on-write."""
    old = node.inputs[index] if len(node.inputs) > index else None
    base = np.zeros(length, np.float64) if old is None else const_array(old).astype(np.float64)
    new = new_initializer(graph, (base + delta.reshape(base.shape if base.ndim else -1)
                                  ).astype(np.float32), f"{node.name or node.op_type}.bias")
    if old is None:
        node.resize_inputs(index + 1)
    node.replace_input_with(index, new)


def _bias(node: ir.Node) -> ir.Value | None:
    return node.inputs[2] if len(node.inputs) > 2 else None


class ConvRule(OpRule):
    """``Conv`` with a constant weight ``[Cout, Cin/group, k...]`` (see module doc)."""

    role = "creates"

    def _weighted(self, node: ir.Node) -> bool:
        return len(node.inputs) > 1 and is_const(node.inputs[1])

    @staticmethod
    def _channels(value: ir.Value, axis: int) -> bool:
        """Whether ``axis`` is the channel axis (1) of ``value`` (1-D, 2-D or 3-D conv)."""
        rank = rank_of(value)
        return axis == -3 if rank is None else rank >= 3 and axis == 1 - rank

    # ---- as a producer / consumer of channels
    def creates(self, node, axis) -> bool:
        return rank_of(node.outputs[0]) is not None and self._channels(node.outputs[0], axis) \
            and self._weighted(node) and not is_depthwise_conv(node)

    def consumes(self, node, index, axis) -> bool:
        return index == 0 and self._channels(node.inputs[0], axis) and self._weighted(node) \
            and not is_depthwise_conv(node)

    def source_constants(self, node) -> list[tuple[int, int]]:
        return [(1, 0)] + ([(2, 0)] if _bias(node) is not None else [])

    def sink_constant(self, node) -> tuple[int, int]:
        return 1, 1

    def groups(self, node) -> int:
        return int(attr(node, "group", 1))

    def slice_sink(self, slicer, node, layout) -> None:
        if self.groups(node) == 1:
            super().slice_sink(slicer, node, layout)
            return
        keep = slicer.keep_index(layout)  # each output row keeps its own group's columns
        w = const_array(node.inputs[1])
        groups = self.groups(node)
        per, rows_per = layout.full // groups, w.shape[0] // groups
        local = [keep[(keep // per) == g] % per for g in range(groups)]
        if len({len(c) for c in local}) != 1:
            raise AssertionError("grouped conv slicing needs equal counts per group")
        sliced = np.concatenate([w[g * rows_per:(g + 1) * rows_per][:, local[g]]
                                 for g in range(groups)])
        name = node.inputs[1].name or "grouped_weight"
        node.replace_input_with(1, new_initializer(slicer.graph, sliced, name))

    def folds_constants(self, node) -> bool:
        return not conv_has_padding(node)  # padding makes a constant plane non-uniform

    def fold_bias(self, graph, node, vals, positions) -> None:
        w = const_array(node.inputs[1]).astype(np.float64)
        groups = self.groups(node)
        kernel = tuple(range(2, w.ndim))
        if groups == 1:  # W[o, position, k...]
            per_channel = np.stack([w[:, p].sum(axis=(1, *kernel)) for p in positions])
        else:  # row o of group j reads input position j * per + l at W[o, l]
            per, rows_per = w.shape[1], w.shape[0] // groups
            row_group = np.arange(w.shape[0]) // rows_per
            sums = w.sum(axis=kernel)
            per_channel = np.stack([sum(np.where(row_group == q // per, sums[:, q % per], 0.0)
                                        for q in p) for p in positions])
        add_to_input(graph, node, 2, vals @ per_channel, w.shape[0])

    def new_bias_axis(self, node) -> int | None:
        return None if _bias(node) is not None else 1

    def can_zero_inputs(self, node, index, axis) -> bool:
        """Any conv (depthwise too): its weight's input columns for those channels become 0."""
        return index == 0 and self._channels(node.inputs[0], axis) \
            and own_constant(node.inputs[1])

    def zero_inputs(self, node, channels) -> None:
        w = node.inputs[1]
        shape = list(w.const_value.shape)
        groups = self.groups(node)
        per, rows = shape[1], shape[0] // groups  # input channel c: group c // per, column c % per
        for c in channels:
            g = int(c) // per
            zero_entries(w, (slice(g * rows, (g + 1) * rows), int(c) % per))

    def zero_outputs(self, node, channels) -> bool:
        if not self.can_zero_outputs(node, -1):
            return False
        for index in (1, 2):
            value = node.inputs[index] if index < len(node.inputs) else None
            if value is not None:
                arr = const_array(value).copy()
                arr[channels] = 0
                value.const_value = ir.tensor(arr, name=value.name)
        return True

    def can_zero_outputs(self, node, size) -> bool:
        """A 2-D conv whose weight and bias constants it alone uses."""
        w, bias = node.inputs[1], _bias(node)
        arr = const_array(w)
        if arr is None or arr.ndim != 4 or (size >= 0 and arr.shape[0] != size) \
                or len(w.uses()) != 1:
            return False
        return bias is None or (const_array(bias) is not None and len(bias.uses()) == 1)

    # ---- a depthwise conv is channel-wise
    def layouts(self, node, value, layout, gated=None):
        if is_depthwise_conv(node) and self._channels(value, layout.axis):
            return {node.inputs[0]: layout, node.outputs[0]: layout}
        return None

    def carries_gate(self, node, data, gated: GateFlow) -> bool:
        return len(data) == 1 and is_depthwise_conv(node) and gated(data[0])

    def transfer(self, node, out, layout, src, ctx) -> ChannelState:
        w = const_array(node.inputs[1]).reshape(layout.full, -1).sum(axis=1).astype(np.float64)
        b = const_array(_bias(node)) if _bias(node) is not None else np.zeros(layout.full)
        state = agreeing(src, ((valid, (src.val * w[rows] + b[rows]).astype(np.float32))
                               for valid, rows in columns(layout)))
        state.const &= (src.val == 0) | (not conv_has_padding(node))
        state.val = np.where(state.const, state.val, 0).astype(np.float32)
        return state

    def constants(self, node, layout) -> list[tuple[int, int]]:
        return [(i, 0) for i in (1, 2) if i < len(node.inputs) and node.inputs[i] is not None]

    def slice(self, slicer, node, region) -> None:
        keep = slicer.keep_index(region.layout(node.outputs[0]))
        node.attributes["group"] = ir.AttrInt64("group", int(keep.size))

    # ---- costs
    def macs(self, node):
        """Cout·(Cin/groups)·Πk per output position: every weight axis, the output's batch and
        spatial axes."""
        w, out = node.inputs[1], node.outputs[0]
        wr, orank = rank_of(w), rank_of(out)
        if wr is None or wr < 3 or orank is None:
            return None
        return [(w, a) for a in range(wr)] + [(out, 0)] + [(out, a) for a in range(2, orank)]

    def layer(self, node) -> LayerAxes | None:
        if not is_const(node.inputs[1]):
            return None
        out, w = node.outputs[0], node.inputs[1].const_value
        depthwise = is_depthwise_conv(node)
        return LayerAxes(1, 1, int(np.prod(out.shape[2:])), int(np.prod(list(w.shape)[2:])),
                         _bias(node) is not None, 1 if depthwise else self.groups(node),
                         depthwise)


class ConvTransposeRule(OpRule):
    """``ConvTranspose`` (group 1) with a constant weight ``[Cin, Cout, k...]``: only a channel
    of zeros can go into it (a constant spreads unevenly over its output)."""

    role = "creates"

    def _weighted(self, node) -> bool:
        return attr(node, "group", 1) == 1 and is_const(node.inputs[1])

    def creates(self, node, axis) -> bool:
        return axis == -3 and self._weighted(node) and rank_of(node.outputs[0]) == 4

    def consumes(self, node, index, axis) -> bool:
        return index == 0 and axis == -3 and self._weighted(node)

    def source_constants(self, node) -> list[tuple[int, int]]:
        return [(1, 1)] + ([(2, 0)] if _bias(node) is not None else [])

    def sink_constant(self, node) -> tuple[int, int]:
        return 1, 0
