"""Pass: fold shape-only ops whose inputs are all constants (e.g. ``Reshape(gate, [1,-1,1,1])``).

Gate tags propagate from a folded op's data input to its output, so a reshaped bound gate is still
recognised as a gate.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult

from nnfc.passes.graph_utils import GATE_TAG, attr, const_array, fresh_names, new_initializer


def _reshape(node: ir.Node, x: np.ndarray, shape: np.ndarray) -> np.ndarray:
    shape = [int(s) for s in shape]
    if not attr(node, "allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _unsqueeze(node: ir.Node, x: np.ndarray, axes: np.ndarray | None) -> np.ndarray:
    axes = attr(node, "axes") if axes is None else axes
    rank = x.ndim + len(axes)
    for a in sorted(int(a) % rank for a in axes):
        x = np.expand_dims(x, a)
    return x


def _squeeze(node: ir.Node, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:
    axes = attr(node, "axes") if axes is None else axes
    return np.squeeze(x) if axes is None else np.squeeze(x, tuple(int(a) for a in axes))


def _cast(node: ir.Node, x: np.ndarray) -> np.ndarray:
    return x.astype(ir.DataType(attr(node, "to")).numpy())


def _expand(node: ir.Node, x: np.ndarray, shape: np.ndarray) -> np.ndarray:
    return np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(int(s) for s in shape))).copy()


FOLDERS = {
    "Reshape": _reshape,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Cast": _cast,
    "Identity": lambda node, x: x,
    "Expand": _expand,
}


class FoldGateConstantsPass(InPlacePass):
    """Fold Constant nodes and shape-only ops (Reshape, Unsqueeze, Squeeze, Cast, Identity,
    Expand) over constant inputs into initializers, keeping gate tags."""

    def call(self, model: ir.Model) -> PassResult:
        graph = model.graph
        modified = False
        with fresh_names(graph):
            for node in list(graph):
                if _fold(graph, node):
                    modified = True
        return PassResult(model, modified=modified)


def _fold(graph: ir.Graph, node: ir.Node) -> bool:
    if node.domain not in ("", "ai.onnx") or len(node.outputs) != 1:
        return False
    out = node.outputs[0]
    if out.is_graph_output():
        return False
    if node.op_type == "Constant":
        tensor = attr(node, "value")
        if tensor is None:
            return False
        result, tag = tensor.numpy(), None
    elif node.op_type in FOLDERS:
        inputs = [const_array(v) if v is not None else None for v in node.inputs]
        if any(v is not None and a is None for v, a in zip(node.inputs, inputs)):
            return False
        result = FOLDERS[node.op_type](node, *inputs)
        tag = node.inputs[0].metadata_props.get(GATE_TAG)
    else:
        return False
    const = new_initializer(graph, np.asarray(result), out.name or "folded", tag=tag)
    out.replace_all_uses_with(const)
    graph.remove(node, safe=True)
    return True


def fold_constants(model: ir.Model) -> ir.Model:
    """:class:`FoldGateConstantsPass` as a function."""
    return FoldGateConstantsPass()(model).model
