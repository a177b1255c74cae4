"""The pruning plan of one channel region: what the prune pass executes and the cost analysis
prices, built by one function (:func:`plan_region`) for both.

A :class:`RegionPlan` holds the region (``regions.py``), the gate ``Mul``s it contains, the keep
rules (``keep_rules.py``) and the edits: every constant it slices (:class:`Edit`: which input of
which node, along which axis, to the kept positions of which layout), every sink a removed channel
may fold a constant into, and every cut tensor the region reads through a ``Gather``. Which
channels go depends on the gate values (:meth:`RegionPlan.decide`, from the constant analysis
:func:`analyze`); the edits do not, so the cost analysis prices them once for all gate vectors.

The pass plans and executes one region at a time (a region found after another was sliced sees
that region's new sizes); the cost analysis plans every region of the unpruned graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx_ir as ir

from nnfc.passes.channel_state import ChannelState, TransferContext
from nnfc.passes.errors import Failure
from nnfc.passes.graph_utils import GATE_TAG, const_array
from nnfc.passes.keep_rules import KeepRules, removable_channels
from nnfc.passes.layout import Layout
from nnfc.passes.regions import Region, find_region
from nnfc.passes.rules import GraphRules, OpRule


@dataclass(frozen=True)
class Edit:
    """Slice input ``index`` of ``node`` along ``axis`` to the kept positions of ``layout``
    (``groups`` > 1: a grouped weight holds each position once per group). ``apply`` does it."""

    node: ir.Node
    index: int
    axis: int
    layout: Layout
    apply: Callable = field(repr=False, compare=False)
    groups: int = 1
    sink: bool = False    # the node consumes the region's channels (a removed one may fold)

    @property
    def value(self) -> ir.Value:
        return self.node.inputs[self.index]


@dataclass
class Decision:
    """Which channels stay for one gate vector, and why each kept removable one stays."""

    keep: np.ndarray
    placeholder: bool
    why: dict[int, str]
    size: int

    @property
    def drop(self) -> np.ndarray:
        return np.setdiff1d(np.arange(self.size), self.keep)


@dataclass
class RegionPlan:
    region: Region
    members: list[ir.Node]           # the gate Muls it holds (the seed first)
    rules: GraphRules
    keep_rules: KeepRules = field(init=False)

    def __post_init__(self):
        self.keep_rules = KeepRules.of(self.region)

    @property
    def sinks(self) -> dict[ir.Node, OpRule]:
        return self.region.sinks

    def sink_layout(self, sink: ir.Node) -> Layout:
        return self.region.layout(sink.inputs[0])

    def edits(self) -> list[Edit]:
        """Every constant the plan slices, in the order the pass slices them."""
        region, found = self.region, []
        for sink, rule in region.sinks.items():
            layout = self.sink_layout(sink)
            index, axis = rule.sink_constant(sink)
            found.append(Edit(sink, index, axis, layout,
                              lambda s, n=sink, r=rule, lay=layout: r.slice_sink(s, n, lay),
                              rule.groups(sink), sink=True))
        for source, rule in region.sources.items():
            layout = region.tensors[source.outputs[0]]
            for index, axis in rule.source_constants(source):
                found.append(Edit(source, index, axis, layout, _const(source, index, axis, layout)))
        for node in region.nodes:
            out = node.outputs[0]
            if out in region.tensors or out in region.cut:
                layout = region.layout(out)
                for index, axis in self.rules.get(node).constants(node, layout):
                    found.append(Edit(node, index, axis, layout,
                                      _const(node, index, axis, layout)))
        return found

    def gathers(self) -> list[tuple[ir.Value, Layout]]:
        """Cut tensors the region reads: its consumers read ``Gather(t, kept)``."""
        region = self.region
        return [(value, layout) for value, layout in region.cut.items()
                if any(u.node in region.sinks or u.node in region.nodes for u in value.uses())]

    def gate_values(self) -> list[tuple[ir.Value, Layout]]:
        """Bound gate constants multiplying region tensors, with the layout they gate."""
        found = []
        for node in [*self.region.nodes, *self.region.cut_producers]:
            if node.op_type != "Mul":
                continue
            for value in node.inputs:
                if value is not None and value.metadata_props.get(GATE_TAG) \
                        and value.const_value is not None:
                    found.append((value, self.region.layout(node.outputs[0])))
        return found

    def analyze(self, order: dict[ir.Node, int]) -> dict[ir.Value, ChannelState]:
        return analyze(self.region, order, self.rules)

    def decide_removable(self, states: dict[ir.Value, ChannelState]) -> np.ndarray:
        """[size] bool: channels every sink can do without (before the keep rules)."""
        return removable_channels(self.region, states)[0]

    def decide(self, states: dict[ir.Value, ChannelState]) -> Decision:
        removable, why = removable_channels(self.region, states)
        kept, placeholder = self.keep_rules.decide(removable, why)
        return Decision(np.flatnonzero(kept[0]), bool(placeholder[0]), why, self.region.size)


def _const(node: ir.Node, index: int, axis: int, layout: Layout) -> Callable:
    return lambda slicer: slicer.const(node, index, axis, slicer.keep_index(layout))


def gate_tag(mul: ir.Node) -> str | None:
    for value in mul.inputs:
        if value is not None and value.metadata_props.get(GATE_TAG):
            return value.metadata_props[GATE_TAG]
    return None


def gate_muls(graph: ir.Graph) -> dict[str, list[tuple[ir.Node, ir.Value]]]:
    """Bound gate name -> [(Mul node, gate constant operand)]."""
    found: dict[str, list[tuple[ir.Node, ir.Value]]] = {}
    for node in graph:
        if node.op_type != "Mul":
            continue
        for value in node.inputs:
            tag = value.metadata_props.get(GATE_TAG) if value is not None else None
            if tag and value.const_value is not None:
                found.setdefault(tag, []).append((node, value))
                break
    return found


def gate_axis(const: ir.Value) -> int | None:
    """The one axis a gate constant spreads over (negative), or None."""
    shape = const.const_value.shape.numpy()
    big = [i for i, d in enumerate(shape) if d != 1]
    if int(np.prod(shape)) == 1 or len(big) != 1:
        return None
    return big[0] - len(shape)


def plan_region(mul: ir.Node, const: ir.Value, size: int, rules: GraphRules
                ) -> RegionPlan | Failure:
    """The plan of the region a gate ``Mul`` seeds (see module doc)."""
    axis = gate_axis(const)
    if axis is None:
        return Failure("gate does not broadcast over one axis", mul)
    region = find_region(mul.outputs[0], axis, size, rules)
    if not region:
        return region
    members = [mul] + [n for n in region.nodes
                       if n is not mul and n.op_type == "Mul" and gate_tag(n)]
    return RegionPlan(region, members, rules)


def analyze(region: Region, order: dict[ir.Node, int], rules: GraphRules
            ) -> dict[ir.Value, ChannelState]:
    """States of the region's tensors (sliced and cut), evaluated in graph order by each op's
    rule."""
    ctx = TransferContext({**region.tensors, **region.cut}, {}, region.size)
    for node in sorted({*region.nodes, *region.cut_producers}, key=order.__getitem__):
        rule = rules.get(node)
        for out in node.outputs:
            if out in ctx.layouts:
                state = rule.transfer(node, out, ctx.layouts[out],
                                      ctx.input_state(node.inputs[0], out), ctx)
                absent = ctx.layouts[out].absent  # channels this tensor does not hold add nothing
                state.const[absent], state.val[absent] = True, 0
                ctx.states[out] = state
    return ctx.states


def off_channels(mul: ir.Node) -> np.ndarray:
    """Channels of ``mul``'s gate that are 0."""
    gate = next(const_array(v) for v in mul.inputs
                if v is not None and v.metadata_props.get(GATE_TAG)).reshape(-1)
    return np.flatnonzero(gate == 0)
