"""Pass: tidy a pruned graph — drop gate Muls that became identities, dead nodes and initializers,
and stale shapes (re-inferred when the model is serialized)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult
from onnx_ir.passes.common import RemoveUnusedNodesPass, TopologicalSortPass

from nnfc.passes.gate_tags import identify_gates
from nnfc.passes.graph_utils import GATE_TAG, const_array, rank_of


class RemoveIdentityGatesPass(InPlacePass):
    """Remove ``Mul(x, g)`` where ``g`` is a bound gate of all ones that does not broadcast x
    (after pruning, every gate that had zeros is all ones or gone), and a gate of all zeros whose
    product only feeds residual ``Add``s: ``y + 0·x = y``, so each ``Add`` becomes ``y`` and the
    gated branch is left for :class:`RemoveUnusedPass`. ``bypassed`` names those gates.

    A gate that keeps zeros (channels pruning had to keep, e.g. off in one operand of an FPN
    ``Add`` and on in the other) goes too where ``x`` is a conv's output through ops that map 0
    to 0 (``Relu``, ``Resize``, ...): those channels' filters and biases become zeros, which is
    the same product, so every subnet of a factory has one graph topology."""

    def __init__(self):
        super().__init__()
        self.bypassed: list[str] = []

    def call(self, model: ir.Model) -> PassResult:
        before = len(model.graph)
        identify_gates(model)
        self.bypassed = _remove_identity_gates(model.graph)
        return PassResult(model, modified=len(model.graph) != before)


class RemoveUnusedPass(InPlacePass):
    """Remove nodes and initializers nothing reads, then sort topologically."""

    def call(self, model: ir.Model) -> PassResult:
        before = (len(model.graph), len(model.graph.initializers))
        remove_unused(model)
        return PassResult(model, modified=before != (len(model.graph),
                                                     len(model.graph.initializers)))


class ClearIntermediateShapesPass(InPlacePass):
    """Forget inferred shapes of intermediate values (slicing made some stale)."""

    def call(self, model: ir.Model) -> PassResult:
        clear_intermediate_shapes(model)
        return PassResult(model, modified=False)


def remove_identity_gates(model: ir.Model) -> ir.Model:
    """:class:`RemoveIdentityGatesPass` as a function."""
    return RemoveIdentityGatesPass()(model).model


def _remove_identity_gates(graph: ir.Graph) -> list[str]:
    bypassed = []
    for node in list(graph):
        if node.op_type != "Mul":
            continue
        for i, value in enumerate(node.inputs):
            if value is None or not value.metadata_props.get(GATE_TAG):
                continue
            gate = const_array(value)
            data = node.inputs[1 - i]
            out = node.outputs[0]
            if (rank_of(data) or 0) < gate.ndim or out.is_graph_output():
                continue
            if np.all(gate == 1):
                out.replace_all_uses_with(data)
                graph.remove(node, safe=True)
            elif np.all(gate == 0) and (adds := zero_bypass_adds(node)):
                for add in adds:
                    other = next(v for v in add.inputs if v is not out)
                    add.outputs[0].replace_all_uses_with(other)
                    graph.remove(add, safe=True)
                bypassed.append(value.metadata_props[GATE_TAG])
            elif (conv := zero_foldable_producer(node, value)) is not None:
                _zero_filters(conv, np.flatnonzero(gate.reshape(-1) == 0))
                out.replace_all_uses_with(data)
                graph.remove(node, safe=True)
            break
    return bypassed


#: ops that keep each channel and map a channel of zeros to zeros (f(0) = 0 elementwise, or a
#: resampling that only combines values of one channel)
ZERO_PRESERVING = frozenset({"Relu", "LeakyRelu", "Resize", "Upsample", "Identity"})


def zero_foldable_producer(mul: ir.Node, gate: ir.Value) -> ir.Node | None:
    """The 2-D ``Conv`` whose filters can absorb the zeros of ``mul``'s per-channel ``gate``
    (shape ``[1,C,1,1]`` or ``[C,1,1]``, C = the conv's output channels): the gated tensor is
    that conv's output through :data:`ZERO_PRESERVING` ops, each value on the way used once
    (nothing else sees the unmultiplied channels), the conv's weight and bias constants used by
    it alone; None otherwise. Decided from the graph's structure alone, so the cost analysis
    knows before pruning which gate ``Mul``s a pruned graph never has."""
    data = next((v for v in mul.inputs if v is not gate), None)
    g = const_array(gate)
    if data is None or g is None or len(mul.inputs) != 2 or g.ndim > 4:
        return None
    shape = (1,) * (4 - g.ndim) + tuple(g.shape)
    if shape[0] != 1 or shape[2:] != (1, 1):
        return None
    value = data
    while True:
        if len(value.uses()) != 1 or value.is_graph_output():
            return None
        node = value.producer()
        if node is None:
            return None
        if node.op_type == "Conv":
            break
        if node.op_type not in ZERO_PRESERVING or not node.inputs or node.inputs[0] is None:
            return None
        value = node.inputs[0]  # Resize / Upsample: scales and sizes are the other inputs
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    w = const_array(weight)
    if w is None or w.ndim != 4 or w.shape[0] != shape[1] or len(weight.uses()) != 1:
        return None
    if bias is not None and (const_array(bias) is None or len(bias.uses()) != 1):
        return None
    return node


def _zero_filters(conv: ir.Node, channels: np.ndarray) -> None:
    """Set output ``channels`` of ``conv`` to zeros: their filters and bias entries."""
    for index in (1, 2):
        if index >= len(conv.inputs) or conv.inputs[index] is None:
            continue
        value = conv.inputs[index]
        arr = const_array(value).copy()
        arr[channels] = 0
        value.const_value = ir.tensor(arr, name=value.name)


def zero_bypass_adds(mul: ir.Node) -> list[ir.Node]:
    """The residual ``Add``s a gate ``Mul`` of zeros feeds, when those are all its uses and each
    ``Add``'s other operand has the ``Add``'s own shape (``y + 0 = y`` needs no broadcast);
    else []."""
    out = mul.outputs[0]
    adds = []
    for use in out.uses():
        add = use.node
        if add.op_type != "Add" or len(add.inputs) != 2 or add.inputs[0] is add.inputs[1] \
                or add.outputs[0].is_graph_output():
            return []
        other, result = add.inputs[1 - use.idx], add.outputs[0]
        if other is None or other.shape is None or result.shape is None \
                or not all(isinstance(d, int) for d in other.shape) \
                or list(other.shape) != list(result.shape):
            return []
        adds.append(add)
    return adds


def clear_intermediate_shapes(model: ir.Model) -> ir.Model:
    """Forget inferred shapes of intermediate values (slicing made some stale)."""
    for node in model.graph:
        for out in node.outputs:
            if not out.is_graph_output():
                out.shape = None
    return model


def remove_unused(model: ir.Model) -> ir.Model:
    """Remove nodes and initializers nothing reads, then sort topologically."""
    RemoveUnusedNodesPass()(model)
    graph = model.graph
    for name, value in list(graph.initializers.items()):
        if not value.uses() and not value.is_graph_output() and not value.is_graph_input():
            del graph.initializers[name]
    TopologicalSortPass()(model)
    return model
