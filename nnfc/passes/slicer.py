"""Executing a plan's edits: slicing constants to the kept positions of a layout (sliced copies
shared), zeroing a placeholder channel's sink weights, and reading cut tensors through a
``Gather``."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from nnfc.passes.graph_utils import GATE_TAG, const_array, new_initializer, rank_of
from nnfc.passes.layout import Layout


class Slicer:
    """Slices constants of ``graph`` to the positions that stay when region channels ``drop``
    go (the op rules call it back for their own attributes and shape inputs)."""

    def __init__(self, graph: ir.Graph, drop: np.ndarray):
        self.graph, self.drop = graph, drop
        self.cache: dict[tuple[int, int, bytes], ir.Value] = {}
        self.kept: dict[int, tuple[Layout, np.ndarray]] = {}

    def keep_index(self, layout: Layout) -> np.ndarray:
        """Kept positions of ``layout`` (computed once per layout: most tensors share one)."""
        hit = self.kept.get(id(layout))
        if hit is None or hit[0] is not layout:
            hit = self.kept[id(layout)] = (layout, layout.keep_index(self.drop))
        return hit[1]

    def const(self, node: ir.Node, index: int, axis: int, keep: np.ndarray) -> None:
        value = node.inputs[index]
        key = (id(value), axis, keep.tobytes())
        if key not in self.cache:
            arr = np.take(const_array(value), keep, axis=axis)
            tag = value.metadata_props.get(GATE_TAG)
            self.cache[key] = new_initializer(self.graph, arr, value.name or "sliced", tag=tag)
        node.replace_input_with(index, self.cache[key])

    def zero_columns(self, node: ir.Node, axis: int, layout: Layout, channels: np.ndarray
                     ) -> None:
        """Zero the (already sliced) weight entries along ``axis`` that read ``channels``."""
        keep = self.keep_index(layout)
        arr = const_array(node.inputs[1]).copy()
        cols = np.flatnonzero(np.isin(keep, layout.positions[channels].ravel()))
        index = [slice(None)] * arr.ndim
        index[axis] = cols
        arr[tuple(index)] = 0
        node.replace_input_with(1, new_initializer(self.graph, arr, "placeholder_weight"))

    def ungate(self, node: ir.Node) -> None:
        """Set a gate constant to 1 (its channel's consumers ignore it; cleanup drops the Mul)."""
        for i, value in enumerate(node.inputs):
            if value is not None and value.metadata_props.get(GATE_TAG):
                ones = np.ones_like(const_array(value))
                node.replace_input_with(i, new_initializer(self.graph, ones, value.name,
                                                           tag=value.metadata_props[GATE_TAG]))

    def gather_cut(self, value: ir.Value, layout: Layout, readers: set[ir.Node]) -> None:
        """``readers`` of a cut tensor read only its kept channels."""
        uses = [(u.node, u.idx) for u in value.uses() if u.node in readers]
        if not uses:
            return
        rank = rank_of(value)
        keep = self.keep_index(layout)
        indices = new_initializer(self.graph, keep.astype(np.int64), f"{value.name}.keep")
        gather = ir.Node("", "Gather", [value, indices],
                         attributes=[ir.AttrInt64("axis", rank + layout.axis)],
                         name=f"{value.name}.gather")
        producer = value.producer()
        if producer is None:
            self.graph.insert_before(next(iter(self.graph)), gather)
        else:
            self.graph.insert_after(producer, gather)
        out = gather.outputs[0]
        out.type = value.type
        if value.shape is not None:
            dims = list(value.shape)
            dims[rank + layout.axis] = keep.size
            out.shape = ir.Shape(dims)
        for node, idx in uses:
            node.replace_input_with(idx, out)
