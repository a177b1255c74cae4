"""What a pass needs to know about one op family, as one object, and the set of them the passes
are given (the way onnxscript's rewriter takes a ``RewriteRuleSet`` and Torch-Pruning maps each
layer type to its pruner).

An :class:`OpRule` answers, for one node of its family:

- the region walk: ``layouts`` (the channel-index map between its tensors, or None: the region
  stops here) and ``carries_gate`` (whether a gate's zeros reach its output);
- the constant analysis: ``transfer`` (how a constant carried by a channel passes through it);
- slicing a channel-wise op: ``constants`` (its per-channel constants) and ``slice`` (its
  attributes and shape inputs);
- as a weight op (Conv, MatMul, ...): ``creates`` / ``consumes`` (whether it makes / reads the
  region's channels through a constant weight), the weight axes it slices as producer
  (``source_constants``) and consumer (``sink_constant``, ``groups``), whether a channel
  carrying a non-zero constant can be folded into its bias (``folds_constants``), the folding
  itself (``fold_bias``) and the constant a fold adds (``new_bias_axis``);
- ``zero_outputs`` / ``zero_inputs``: making output channels exact zeros, or reading input
  channels as zeros, by editing its own constants (a gate's zeros moved into its producer or
  its consumers, so no gate ``Mul`` stays);
- ``zero_preserving``: a channel of zeros stays zeros through it;
- ``fold``: its value on constant inputs (shape-only ops such as ``Reshape`` of a gate);
- ``macs`` and ``layer``: its multiply-adds as ``(tensor, axis)`` factors, and the shape record
  the latency features use.

Every method has a "does nothing / cannot" default, so a rule states only what its op does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np
import onnx_ir as ir

from nnfc.passes.graph_utils import const_array

from nnfc.passes.channel_state import ChannelState, same

if TYPE_CHECKING:
    from nnfc.passes.channel_state import TransferContext
    from nnfc.passes.layout import Layout

#: whether a tensor is a gate's output (seen through ops that carry gates), memoized per graph
GateFlow = Callable[[ir.Value], bool]


@dataclass(frozen=True)
class LayerAxes:
    """A weight op's shape record for the latency features: which input / output axis holds its
    channels, output positions per channel, kernel elements, bias, groups."""

    in_axis: int
    out_axis: int
    spatial: int
    kernel: int
    bias: bool
    groups: int = 1
    depthwise: bool = False


class OpRule:
    """The default rule: the op cuts a region, carries nothing, costs nothing (see module doc)."""

    #: "creates" (a weight op), "channelwise" (a region flows through it) or "cuts"
    role = "cuts"

    # ---- the region walk
    def layouts(self, node: ir.Node, value: ir.Value, layout: Layout,
                gated: GateFlow | None = None) -> dict[ir.Value, Layout] | None:
        return None

    def carries_gate(self, node: ir.Node, data: list[ir.Value], gated: GateFlow) -> bool:
        return False

    def zero_preserving(self, node: ir.Node) -> bool:
        return False

    # ---- the constant analysis
    def transfer(self, node: ir.Node, out: ir.Value, layout: Layout, src: ChannelState,
                 ctx: TransferContext) -> ChannelState:
        return ChannelState.unknown(ctx.size)

    # ---- slicing a channel-wise op
    def constants(self, node: ir.Node, layout: Layout) -> list[tuple[int, int]]:
        return []

    def slice(self, slicer, node: ir.Node, region) -> None:
        return None

    # ---- a weight op: producer (source) and consumer (sink) of channels
    def creates(self, node: ir.Node, axis: int) -> bool:
        return False

    def consumes(self, node: ir.Node, index: int, axis: int) -> bool:
        return False

    def source_constants(self, node: ir.Node) -> list[tuple[int, int]]:
        return []

    def sink_constant(self, node: ir.Node) -> tuple[int, int]:
        return 1, 0

    def groups(self, node: ir.Node) -> int:
        """Groups its weight splits the channels into (1: none)."""
        return 1

    def slice_sink(self, slicer, node: ir.Node, layout: Layout) -> None:
        slicer.const(node, *self.sink_constant(node), slicer.keep_index(layout))

    def folds_constants(self, node: ir.Node) -> bool:
        """Whether a channel carrying a non-zero constant can go into its bias (else only a
        channel of zeros can go)."""
        return False

    def fold_bias(self, graph: ir.Graph, node: ir.Node, vals: np.ndarray,
                  positions: list[np.ndarray]) -> None:
        """Add what removed channels carrying constants ``vals`` (at input ``positions``) add."""
        raise NotImplementedError(f"{node.op_type} cannot fold a constant into a bias")

    def new_bias_axis(self, node: ir.Node) -> int | None:
        """The output axis of the constant :meth:`fold_bias` adds (None: it adds none)."""
        return None

    def can_zero_inputs(self, node: ir.Node, index: int, axis: int) -> bool:
        """Whether it can read channels of input ``index`` (on ``axis``) as zeros by editing its
        own constants (a gate's zeros folded into the consumer's weight)."""
        return False

    def zero_inputs(self, node: ir.Node, channels: np.ndarray) -> None:
        """Read input ``channels`` as zeros (see :meth:`can_zero_inputs`)."""
        raise NotImplementedError(f"{node.op_type} cannot zero its input channels")

    def zero_outputs(self, node: ir.Node, channels: np.ndarray) -> bool:
        """Make output ``channels`` exact zeros by editing its own constants; False: cannot."""
        return False

    def can_zero_outputs(self, node: ir.Node, size: int) -> bool:
        """Whether :meth:`zero_outputs` works for ``size`` channels here (decided from the graph's
        structure alone)."""
        return False

    # ---- constant folding and costs
    def fold(self, node: ir.Node, inputs: list[np.ndarray | None]) -> np.ndarray | None:
        return None

    def macs(self, node: ir.Node) -> list[tuple[ir.Value, int]] | None:
        return None

    def layer(self, node: ir.Node) -> LayerAxes | None:
        return None


class PassThroughRule(OpRule):
    """A channel-wise op with one data input that moves, windows or pools values: a gate's
    zeros and a constant plane pass it unchanged."""

    role = "channelwise"

    def carries_gate(self, node: ir.Node, data: list[ir.Value], gated: GateFlow) -> bool:
        return len(data) == 1 and gated(data[0])

    def transfer(self, node, out, layout, src: ChannelState, ctx) -> ChannelState:
        return same(src)


@dataclass(frozen=True)
class _Entry:
    first: int
    last: int | None
    rule: OpRule


def _domain(domain: str) -> str:
    return "" if domain == "ai.onnx" else domain


class RuleSet:
    """Rules keyed by (domain, op type, opset range); a later rule wins where ranges overlap.
    ``default_rules()`` gives nnfc's; add your own to a copy and pass it to the passes::

        rules = default_rules()
        rules.add("Softsign", MySoftsignRule())
        apply_gates(model, gates, rules=rules)
    """

    def __init__(self) -> None:
        self._rules: dict[tuple[str, str], list[_Entry]] = {}

    def add(self, op_type: str, rule: OpRule, domain: str = "",
            opsets: tuple[int, int | None] = (1, None)) -> "RuleSet":
        """Register ``rule`` for ``domain::op_type`` at opset versions ``opsets`` (inclusive;
        None: no upper end)."""
        self._rules.setdefault((_domain(domain), op_type), []).append(_Entry(*opsets, rule))
        return self

    def remove(self, op_type: str, domain: str = "") -> None:
        self._rules.pop((_domain(domain), op_type), None)

    def copy(self) -> "RuleSet":
        new = RuleSet()
        new._rules = {k: list(v) for k, v in self._rules.items()}
        return new

    def lookup(self, domain: str, op_type: str, opset: int | None) -> OpRule | None:
        for entry in reversed(self._rules.get((_domain(domain), op_type), ())):
            if opset is None or (entry.first <= opset and (entry.last is None
                                                          or opset <= entry.last)):
                return entry.rule
        return None

    def ops(self) -> Iterable[tuple[str, str]]:
        return self._rules.keys()

    def for_graph(self, graph: ir.Graph) -> "GraphRules":
        return GraphRules(self, dict(graph.opset_imports))


class GraphRules:
    """A rule set bound to one graph's opset imports: ``rules(node)`` is the node's rule."""

    def __init__(self, rules: RuleSet, opsets: dict[str, int]):
        self.rules = rules
        self.opsets = {_domain(k): v for k, v in opsets.items()}
        self._cache: dict[ir.Node, OpRule | None] = {}
        self._gated: dict[ir.Value, bool] = {}

    def __call__(self, node: ir.Node) -> OpRule | None:
        try:
            return self._cache[node]
        except KeyError:
            domain = _domain(node.domain)
            version = node.version if node.version is not None else self.opsets.get(domain)
            rule = self._cache[node] = self.rules.lookup(domain, node.op_type, version)
            return rule

    def get(self, node: ir.Node) -> OpRule:
        """The node's rule, or the default rule (it cuts)."""
        return self(node) or _CUTS

    def gated(self, value: ir.Value) -> bool:
        """Whether ``value`` is a gate ``Mul``'s output, seen through the ops whose rules carry a
        gate's zeros (activations, BN, pooling, merges of gated tensors, ...)."""
        memo = self._gated
        if value in memo:
            return memo[value]
        memo[value] = False  # a DAG has no cycles; this also bounds the walk
        node = value.producer()
        result = False
        if node is not None:
            data = [v for v in node.inputs if v is not None and v.const_value is None]
            result = self.get(node).carries_gate(node, data, self.gated)
        memo[value] = result
        return result


_CUTS = OpRule()


def own_constant(value: ir.Value | None) -> bool:
    """A constant only one node reads (safe to edit in place)."""
    return value is not None and value.const_value is not None and len(value.uses()) == 1


def zero_entries(value: ir.Value, index: tuple) -> None:
    """Set ``value[index]`` of a constant to 0, in place."""
    arr = const_array(value).copy()
    arr[index] = 0
    value.const_value = ir.tensor(arr, name=value.name)
