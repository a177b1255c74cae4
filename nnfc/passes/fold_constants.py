"""Pass: fold shape-only ops whose inputs are all constants (e.g. ``Reshape(gate, [1,-1,1,1])``).

Gate tags propagate from a folded op's data input to its output, so a reshaped bound gate is still
recognised as a gate. Which ops fold, and how, is each op rule's ``fold``.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult

from nnfc.passes.graph_utils import GATE_TAG, attr, const_array, fresh_names, new_initializer
from nnfc.passes.rules import GraphRules, RuleSet, default_rules


class FoldGateConstantsPass(InPlacePass):
    """Fold Constant nodes and the ops whose rule can ``fold`` (Reshape, Unsqueeze, Squeeze,
    Cast, Identity, Expand) over constant inputs into initializers, keeping gate tags."""

    def __init__(self, rules: RuleSet | None = None):
        super().__init__()
        self.rules = rules if rules is not None else default_rules()

    def call(self, model: ir.Model) -> PassResult:
        graph = model.graph
        rules = self.rules.for_graph(graph)
        modified = False
        with fresh_names(graph):
            for node in list(graph):
                if fold_node(graph, node, rules):
                    modified = True
        return PassResult(model, modified=modified)


def fold_node(graph: ir.Graph, node: ir.Node, rules: GraphRules) -> bool:
    """Replace ``node`` by an initializer of its value when its inputs are constants."""
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
    else:
        rule = rules(node)
        inputs = [const_array(v) if v is not None else None for v in node.inputs]
        if rule is None or not inputs or any(v is not None and a is None
                                             for v, a in zip(node.inputs, inputs)):
            return False
        try:
            result = rule.fold(node, inputs)
        except (ValueError, TypeError, IndexError):  # inputs the op does not fit: not folded
            return False
        if result is None:
            return False
        tag = node.inputs[0].metadata_props.get(GATE_TAG)
    const = new_initializer(graph, np.asarray(result), out.name or "folded", tag=tag)
    out.replace_all_uses_with(const)
    graph.remove(node, safe=True)
    return True

