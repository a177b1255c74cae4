"""Ops that move data between axes without computing: ``Transpose`` (the channel axis moves),
``Flatten`` / ``Reshape`` (size-1 axes come or go after the channels, or the channels merge with
the static axes after them), and shape-only ops that only fold over constants (``Cast``,
``Expand``)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from nnfc.passes.graph_utils import attr, const_array, is_const, new_initializer, rank_of
from nnfc.passes.layout import Layout
from nnfc.passes.rules.base import GateFlow, OpRule, PassThroughRule


class TransposeRule(PassThroughRule):
    """The channel axis moves where the permutation puts it (NHWC <-> NCHW)."""

    role = "channelwise"

    def layouts(self, node, value, layout, gated=None):
        x, out = node.inputs[0], node.outputs[0]
        rank = rank_of(value)
        if rank is None:
            return None
        perm = attr(node, "perm")
        perm = list(range(rank))[::-1] if perm is None else [int(p) for p in perm]
        chan = rank + layout.axis
        if value is x:
            return {x: layout, out: layout.with_axis(perm.index(chan) - rank)}
        return {x: layout.with_axis(perm[chan] - rank), out: layout}

    def zero_preserving(self, node) -> bool:
        return True  # moves values, keeps each channel's (its axis may move: see layouts)



def _reshape_layout(node: ir.Node, value: ir.Value, layout: Layout
                    ) -> dict[ir.Value, Layout] | None:
    """Flatten/Reshape that only drops or adds size-1 dims after the channel axis, or a Flatten
    that merges the channel axis with the (static) dims after it."""
    out = node.outputs[0]
    if value.shape is None or out.shape is None:
        return None
    rank = len(value.shape)
    chan = rank + layout.axis
    trailing = [value.shape[i] for i in range(chan + 1, rank)]
    if not all(isinstance(d, int) for d in trailing):
        return None
    inner = int(np.prod(trailing)) if trailing else 1
    if node.op_type == "Flatten" and attr(node, "axis", 1) == chan and inner > 1:
        return {value: layout, out: layout.flattened(inner, -1)}
    if node.op_type == "Reshape" and inner > 1 and len(out.shape) == chan + 1 \
            and out.shape[chan] == layout.full * inner \
            and list(out.shape)[:chan] == list(value.shape)[:chan]:
        return {value: layout, out: layout.flattened(inner, -1)}  # a Flatten written as Reshape
    if inner != 1:
        return None
    out_dims = list(out.shape)
    if layout.full not in out_dims:
        return None
    pos = len(out_dims) - 1 - out_dims[::-1].index(layout.full)
    if any(d != 1 for d in out_dims[pos + 1:]):
        return None
    if node.op_type == "Reshape":
        shape = const_array(node.inputs[1])
        if shape is None or len(shape) != len(out_dims):
            return None
    return {value: layout, out: layout.with_axis(pos - len(out_dims))}


class ReshapeRule(PassThroughRule):
    """``Flatten`` and ``Reshape`` (entered from the input side only; a gate is not looked for
    behind them)."""

    def carries_gate(self, node, data, gated: GateFlow) -> bool:
        return False

    def layouts(self, node, value, layout, gated=None):
        if value is node.outputs[0]:
            return None
        return _reshape_layout(node, value, layout)

    def slice(self, slicer, node, region) -> None:
        if node.op_type != "Reshape":
            return
        layout = region.layout(node.outputs[0])
        shape = const_array(node.inputs[1]).copy()
        pos = len(shape) + layout.axis
        if shape[pos] > 0:
            shape[pos] = slicer.keep_index(layout).size
            node.replace_input_with(1, new_initializer(slicer.graph, shape, "reshape_shape"))

    def fold(self, node, inputs):
        if node.op_type != "Reshape":
            return None
        x, shape = inputs[0], [int(s) for s in inputs[1]]
        if not attr(node, "allowzero", 0):
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return x.reshape(shape)


def _axes(node: ir.Node, inputs: list) -> list[int] | None:
    """Squeeze/Unsqueeze axes: the second input (opset >= 13) or the attribute."""
    axes = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attr(node, "axes")
    return None if axes is None else [int(a) for a in axes]


class SqueezeRule(PassThroughRule):
    """``Squeeze`` / ``Unsqueeze`` of axes other than the channel axis: the channels move to the
    axis the others' removal / insertion puts them (a CTC head's ``Squeeze(axis 2)`` of
    ``[N, C, 1, W]``); folded over constants (a gate written ``Unsqueeze(g)``)."""

    role = "channelwise"

    def _map(self, node: ir.Node) -> tuple[list[int], int, int] | None:
        """(for each axis of the output, its input axis or -1; input rank; output rank)."""
        x = node.inputs[0]
        rank = rank_of(x)
        given = node.inputs[1] if len(node.inputs) > 1 else None
        axes = _axes(node, [None, const_array(given)])
        if rank is None or (given is not None and not is_const(given)):
            return None
        if node.op_type == "Squeeze":
            if axes is None:  # every size-1 axis
                if not all(isinstance(d, int) for d in x.shape):
                    return None
                axes = [i for i, d in enumerate(x.shape) if d == 1]
            gone = {a % rank for a in axes}
            return [i for i in range(rank) if i not in gone], rank, rank - len(gone)
        if axes is None:
            return None
        out_rank = rank + len(axes)
        new = {a % out_rank for a in axes}
        inputs = iter(range(rank))
        return [-1 if j in new else next(inputs) for j in range(out_rank)], rank, out_rank

    def layouts(self, node, value, layout, gated=None):
        x, out = node.inputs[0], node.outputs[0]
        mapped = self._map(node) if value in (x, out) else None
        if mapped is None:
            return None
        source, rank, out_rank = mapped
        if value is x:
            chan = rank + layout.axis
            if chan not in source:  # the channel axis itself is squeezed
                return None
            return {x: layout, out: layout.with_axis(source.index(chan) - out_rank)}
        chan = source[out_rank + layout.axis]
        if chan < 0:
            return None
        return {x: layout.with_axis(chan - rank), out: layout}


    def fold(self, node, inputs):
        x, axes = inputs[0], _axes(node, inputs)
        if node.op_type == "Squeeze":
            return np.squeeze(x) if axes is None else np.squeeze(x, tuple(axes))
        rank = x.ndim + len(axes)
        for a in sorted(a % rank for a in axes):
            x = np.expand_dims(x, a)
        return x


#: the largest tensor constant folding may create (elements)
MAX_FOLDED_ELEMENTS = 1 << 24


class ShapeOnlyRule(OpRule):
    """``Cast`` and ``Expand``: folded over constants, otherwise they cut a region."""

    def fold(self, node, inputs):
        x = inputs[0]
        if node.op_type == "Cast":
            return x.astype(ir.DataType(attr(node, "to")).numpy())
        out = np.broadcast_shapes(x.shape, tuple(int(s) for s in inputs[1]))
        if int(np.prod(out, dtype=object)) > MAX_FOLDED_ELEMENTS:
            return None  # a 441-byte Expand must not become 2 GiB here: left to the runtime
        return np.broadcast_to(x, out).copy()
