"""``MatMul`` and ``Gemm`` with a constant 2-D weight: they create channels on their output's last
axis (weight columns) and consume them on their input's last axis (weight rows)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from nnfc.passes.graph_utils import attr, const_array, is_const, new_initializer, rank_of
from nnfc.passes.rules.base import LayerAxes, OpRule, own_constant, zero_entries
from nnfc.passes.rules.conv import add_to_input


def _macs(node: ir.Node, k_first: bool = False):
    """M·K·N: every output axis times the reduced one."""
    a, out = node.inputs[0], node.outputs[0]
    if rank_of(a) is None or rank_of(out) is None:
        return None
    return [(out, i) for i in range(rank_of(out))] + [(a, 0 if k_first else rank_of(a) - 1)]


def _layer(node: ir.Node, in_axis: int, bias: bool) -> LayerAxes | None:
    if len(node.inputs) < 2 or not is_const(node.inputs[1]):
        return None
    out = node.outputs[0]
    return LayerAxes(in_axis, len(out.shape) - 1, int(np.prod(out.shape[:-1])), 1, bias)


def _rows(node: ir.Node, positions: list[np.ndarray], rows: np.ndarray, vals: np.ndarray):
    return vals @ np.stack([rows[p].sum(axis=0) for p in positions])


class MatMulRule(OpRule):
    """``y = x W`` with ``W`` a constant ``[K, N]``; folding adds an ``Add`` of a new bias."""

    role = "creates"

    def _weighted(self, node) -> bool:
        w = node.inputs[1]
        return is_const(w) and w.const_value.shape.rank() == 2

    def creates(self, node, axis) -> bool:
        return axis == -1 and self._weighted(node) and not is_const(node.inputs[0])

    def consumes(self, node, index, axis) -> bool:
        return index == 0 and axis == -1 and self._weighted(node)

    def source_constants(self, node) -> list[tuple[int, int]]:
        return [(1, 1)]

    def sink_constant(self, node) -> tuple[int, int]:
        return 1, 0

    def folds_constants(self, node) -> bool:
        return True

    def can_zero_inputs(self, node, index, axis) -> bool:
        return self.consumes(node, index, axis) and own_constant(node.inputs[1])

    def zero_inputs(self, node, channels) -> None:
        zero_entries(node.inputs[1], (np.asarray(channels, np.int64),))

    def fold_bias(self, graph, node, vals, positions) -> None:
        delta = _rows(node, positions, const_array(node.inputs[1]).astype(np.float64), vals)
        bias = new_initializer(graph, delta.astype(np.float32),
                               f"{node.name or 'matmul'}.folded_bias")
        out = node.outputs[0]
        add = ir.Node("", "Add", [None, bias], name=f"{node.name}.fold_add")
        graph.insert_after(node, add)
        new_out = add.outputs[0]
        out.replace_all_uses_with(new_out, replace_graph_outputs=True)
        add.replace_input_with(0, out)
        new_out.shape, new_out.type = out.shape, out.type
        if new_out.is_graph_output():  # keep the model's output name
            name, out.name = out.name, f"{out.name}.pre_fold"
            new_out.name = name

    def new_bias_axis(self, node) -> int | None:
        return len(node.outputs[0].shape) - 1

    def macs(self, node):
        return _macs(node)

    def layer(self, node) -> LayerAxes | None:
        bias = any(u.node.op_type == "Add" and any(i is not None and i.const_value is not None
                                                   for i in u.node.inputs)
                   for u in node.outputs[0].uses())
        return _layer(node, len(node.inputs[0].shape) - 1, bias)


class GemmRule(OpRule):
    """``y = alpha·A·B + beta·C`` with ``B`` constant (``transB``: ``[N, K]``)."""

    role = "creates"

    def creates(self, node, axis) -> bool:
        return axis == -1 and is_const(node.inputs[1])

    def consumes(self, node, index, axis) -> bool:
        return index == 0 and axis == -1 and is_const(node.inputs[1]) \
            and not attr(node, "transA", 0)

    def source_constants(self, node) -> list[tuple[int, int]]:
        found = [(1, 0 if attr(node, "transB", 0) else 1)]
        c = node.inputs[2] if len(node.inputs) > 2 else None
        if c is not None and c.const_value is not None:
            dims = list(c.const_value.shape)
            if dims and dims[-1] > 1:
                found.append((2, len(dims) - 1))
        return found

    def sink_constant(self, node) -> tuple[int, int]:
        return (1, 1) if attr(node, "transB", 0) else (1, 0)

    def folds_constants(self, node) -> bool:
        return True

    def can_zero_inputs(self, node, index, axis) -> bool:
        return self.consumes(node, index, axis) and own_constant(node.inputs[1])

    def zero_inputs(self, node, channels) -> None:
        rows = np.asarray(channels, np.int64)
        zero_entries(node.inputs[1], (slice(None), rows) if attr(node, "transB", 0) else (rows,))

    def fold_bias(self, graph, node, vals, positions) -> None:
        w = const_array(node.inputs[1]).astype(np.float64)
        rows = w.T if attr(node, "transB", 0) else w  # [K, N]
        delta = _rows(node, positions, rows, vals)
        add_to_input(graph, node, 2, attr(node, "alpha", 1.0) * delta / attr(node, "beta", 1.0),
                     rows.shape[1])

    def new_bias_axis(self, node) -> int | None:
        has = len(node.inputs) > 2 and node.inputs[2] is not None
        return None if has else len(node.outputs[0].shape) - 1

    def macs(self, node):
        return _macs(node, bool(attr(node, "transA", 0)))

    def layer(self, node) -> LayerAxes | None:
        in_axis = 0 if attr(node, "transA", 0) else len(node.inputs[0].shape) - 1
        return _layer(node, in_axis, len(node.inputs) > 2 and node.inputs[2] is not None)
