"""Pass: tidy a pruned graph — drop gate Muls that became identities, dead nodes and initializers,
and stale shapes (re-inferred when the model is serialized)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult
from onnx_ir.passes.common import RemoveUnusedNodesPass, TopologicalSortPass

from nnfc.passes.gate_tags import identify_gates
from nnfc.passes.graph_utils import GATE_TAG, const_array, rank_of
from nnfc.passes.layout import Layout
from nnfc.passes.rules import GraphRules, RuleSet, default_rules


class RemoveIdentityGatesPass(InPlacePass):
    """Remove ``Mul(x, g)`` where ``g`` is a bound gate of all ones that does not broadcast x
    (after pruning, every gate that had zeros is all ones or gone), and a gate of all zeros whose
    product only feeds residual ``Add``s: ``y + 0·x = y``, so each ``Add`` becomes ``y`` and the
    gated branch is left for :class:`RemoveUnusedPass`. ``bypassed`` names those gates.

    A gate that keeps zeros (channels pruning had to keep, e.g. off in one operand of an FPN
    ``Add`` and on in the other, or on in a GhostNet module's primary half and off in its cheap
    half) goes too, its zeros moved where that is exact: into the op producing ``x`` through ops
    that map 0 to 0 (``Relu``, ``Resize``, ...; each op rule's ``zero_preserving``): a conv's
    filters and bias, a BatchNormalization's scale and bias (the producer rule's
    ``zero_outputs``); else into the ops reading the product (a conv's or MatMul's input
    columns: their rules' ``zero_inputs``). Either way the product is the same and every subnet
    of a factory has one graph topology."""

    def __init__(self, rules: RuleSet | None = None):
        super().__init__()
        self.rules = rules if rules is not None else default_rules()
        self.bypassed: list[str] = []

    def call(self, model: ir.Model) -> PassResult:
        before = len(model.graph)
        identify_gates(model)
        self.bypassed = _remove_identity_gates(model.graph, self.rules.for_graph(model.graph))
        return PassResult(model, modified=len(model.graph) != before)


class RemoveUnusedPass(InPlacePass):
    """Remove nodes and initializers nothing reads, then sort topologically."""

    def call(self, model: ir.Model) -> PassResult:
        before = (len(model.graph), len(model.graph.initializers))
        RemoveUnusedNodesPass()(model)
        graph = model.graph
        for name, value in list(graph.initializers.items()):
            if not value.uses() and not value.is_graph_output() and not value.is_graph_input():
                del graph.initializers[name]
        TopologicalSortPass()(model)
        return PassResult(model, modified=before != (len(model.graph),
                                                     len(model.graph.initializers)))


class ClearIntermediateShapesPass(InPlacePass):
    """Forget inferred shapes of intermediate values (slicing made some stale)."""

    def call(self, model: ir.Model) -> PassResult:
        for node in model.graph:
            for out in node.outputs:
                if not out.is_graph_output():
                    out.shape = None
        return PassResult(model, modified=False)


def _remove_identity_gates(graph: ir.Graph, rules: GraphRules) -> list[str]:
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
            elif np.all(gate == 0) and (bypass := Bypass.of(node)) is not None:
                bypass.apply(graph)
                bypassed.append(value.metadata_props[GATE_TAG])
            elif (producer := zero_foldable_producer(node, value, rules)) is not None:
                rules.get(producer).zero_outputs(producer, np.flatnonzero(gate.reshape(-1) == 0))
                out.replace_all_uses_with(data)
                graph.remove(node, safe=True)
            elif consumers := zero_foldable_consumers(node, value, rules):
                for consumer in consumers:
                    rules.get(consumer).zero_inputs(consumer,
                                                    np.flatnonzero(gate.reshape(-1) == 0))
                out.replace_all_uses_with(data)
                graph.remove(node, safe=True)
            break
    return bypassed


def zero_foldable_producer(mul: ir.Node, gate: ir.Value, rules: GraphRules) -> ir.Node | None:
    """The op whose outputs can absorb the zeros of ``mul``'s per-channel ``gate`` (shape
    ``[1,C,1,1]`` or ``[C,1,1]``; its rule ``can_zero_outputs`` C channels, e.g. a 2-D ``Conv``
    using its weight and bias alone): the gated tensor is that op's output through ops whose
    rules are ``zero_preserving``, each value on the way used once (nothing else sees the
    unmultiplied channels); None otherwise. Decided from the graph's structure alone, so the
    cost analysis knows before pruning which gate ``Mul``s a pruned graph never has."""
    data = next((v for v in mul.inputs if v is not gate), None)
    g = const_array(gate)
    if data is None or g is None or len(mul.inputs) != 2 or g.ndim > 4:
        return None
    shape = (1,) * (4 - g.ndim) + tuple(g.shape)
    if shape[0] != 1 or shape[2:] != (1, 1):
        return None
    value, channels = data, Layout.plain(-3, shape[1])
    while True:
        if len(value.uses()) != 1 or value.is_graph_output():
            return None
        node = value.producer()
        if node is None:
            return None
        rule = rules.get(node)
        if rule.can_zero_outputs(node, shape[1]):
            return node
        if not rule.zero_preserving(node) or not node.inputs or node.inputs[0] is None:
            return None
        value = node.inputs[0]  # Resize / Upsample: scales and sizes are the other inputs
        mapped = rule.layouts(node, node.outputs[0], channels, rules.gated)
        if mapped is None or value not in mapped or mapped[value].axis != -3:
            return None  # e.g. a Transpose that moves the channel axis


def zero_foldable_consumers(mul: ir.Node, gate: ir.Value, rules: GraphRules
                            ) -> list[ir.Node]:
    """The ops reading ``mul``'s product that can read its gate's zeros from their own weights
    instead (each rule's ``can_zero_inputs``: a conv's or MatMul's input columns), directly or
    through ops that keep zeros zero (see :func:`_zeroing_readers`); [] unless every reader is
    one. Decided from the graph's structure alone, like :func:`zero_foldable_producer`."""
    data = next((v for v in mul.inputs if v is not gate), None)
    g = const_array(gate)
    out = mul.outputs[0]
    if data is None or g is None or len(mul.inputs) != 2 or out.is_graph_output():
        return []
    big = [i - g.ndim for i, d in enumerate(g.shape) if d != 1]
    if g.size == 1:  # one channel left: any axis of size 1 of the data is "the" channel axis
        rank = len(data.shape) if data.shape is not None else 0
        big = [a for a in range(-g.ndim, 0) if rank >= -a and data.shape[a] == 1]
    elif len(big) != 1:
        return []
    for axis in big:
        found = _zeroing_readers(out, Layout.plain(axis, g.size), rules)
        if found:
            return found
    return []


def _zeroing_readers(value: ir.Value, channels: Layout, rules: GraphRules) -> list[ir.Node]:
    """The ops that can read ``value``'s ``channels`` as zeros from their own weights, found
    through ops that keep a channel of zeros zero (a ``Transpose`` between NHWC and NCHW, a
    ``Relu``): all of ``value``'s readers, or []."""
    uses = value.uses()
    if not uses or value.is_graph_output() or len({u.node for u in uses}) != len(uses):
        return []
    found: list[ir.Node] = []
    for use in uses:
        node, rule = use.node, rules.get(use.node)
        if rule.can_zero_inputs(node, use.idx, channels.axis):
            found.append(node)
            continue
        mapped = rule.layouts(node, value, channels, rules.gated) \
            if rule.zero_preserving(node) and use.idx == 0 and len(node.outputs) == 1 else None
        if mapped is None or node.outputs[0] not in mapped or not np.array_equal(
                mapped[node.outputs[0]].positions, channels.positions):
            return []  # the channel must keep its index (its axis may move)
        further = _zeroing_readers(node.outputs[0], mapped[node.outputs[0]], rules)
        if not further:
            return []
        found.extend(further)
    return found


@dataclass
class Bypass:
    """A gate ``Mul`` whose product only feeds residual ``Add``s, each ``Add``'s other operand of
    the ``Add``'s own shape (``y + 0 = y`` needs no broadcast): with a gate of zeros each ``Add``
    becomes ``y`` and the branch behind the ``Mul`` dies."""

    mul: ir.Node
    adds: list[ir.Node]

    @classmethod
    def of(cls, mul: ir.Node) -> "Bypass | None":
        out = mul.outputs[0]
        adds = []
        for use in out.uses():
            add = use.node
            if add.op_type != "Add" or len(add.inputs) != 2 or add.inputs[0] is add.inputs[1] \
                    or add.outputs[0].is_graph_output():
                return None
            other, result = add.inputs[1 - use.idx], add.outputs[0]
            if other is None or other.shape is None or result.shape is None \
                    or not all(isinstance(d, int) for d in other.shape) \
                    or list(other.shape) != list(result.shape):
                return None
            adds.append(add)
        return cls(mul, adds) if adds else None

    def apply(self, graph: ir.Graph) -> None:
        out = self.mul.outputs[0]
        for add in self.adds:
            other = next(v for v in add.inputs if v is not out)
            add.outputs[0].replace_all_uses_with(other)
            graph.remove(add, safe=True)

    def removes(self, nodes: list[ir.Node]) -> tuple[set[ir.Node], list[ir.Value]]:
        """The nodes (of ``nodes``, in graph order) and constants (once per dead reader) that
        die with the bypass (:class:`RemoveUnusedPass` removes them)."""
        dead: set[ir.Node] = {self.mul, *self.adds}
        product = self.mul.outputs[0]

        def gone(use) -> bool:  # an Add's other operand lives on in the Add's place
            return use.node in dead and (use.node not in self.adds
                                         or use.node.inputs[use.idx] is product)

        for node in reversed(nodes):
            if node in dead or not node.outputs:
                continue
            if all(not o.is_graph_output() and o.uses() and all(gone(u) for u in o.uses())
                   for o in node.outputs):
                dead.add(node)
        constants = [value for node in dead for value in node.inputs
                     if value is not None and value.const_value is not None
                     and all(gone(u) for u in value.uses())]
        return dead, constants
