"""Channel regions: the set of tensors whose channels a gate removes, found from the graph.

Starting at a gate ``Mul``, the region grows through channel-wise ops (activations, BN, bias
``Add``, depthwise conv, pooling, the other operand of ``x * sigmoid(x)``, ``Concat`` with an
offset, ``Flatten`` with H·W features per channel, ...) back to the *sources* that create the
channels (conv / MatMul / Gemm with constant weights) and forward to the *sinks* that consume them
(conv input channels, MatMul / Gemm rows). A region tensor that something else needs whole (a
residual ``Add``, a graph output, an unknown op) is *cut*: it keeps all its channels, and the
region's consumers read ``Gather(t, kept)`` instead — so a gated tensor that also feeds a residual
is pruned only where it can be.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx_ir as ir

from nnfc.passes.op_rules import channelwise_layouts, sink_kind, source_kind
from nnfc.passes.layout import Layout


class RegionConflict(Exception):
    """A tensor is reached with two different channel maps (e.g. a channel meets itself in a
    ``Concat``, as in GhostNet's cheap half); the region is left unpruned."""

    def __init__(self, value: ir.Value):
        super().__init__(value.name)
        self.value = value


@dataclass
class Region:
    """Tensors (value -> layout of the region's channels) sliced together, and their nodes."""

    size: int
    tensors: dict[ir.Value, Layout] = field(default_factory=dict)
    cut: dict[ir.Value, Layout] = field(default_factory=dict)
    nodes: list[ir.Node] = field(default_factory=list)
    sources: dict[ir.Node, str] = field(default_factory=dict)
    sinks: dict[ir.Node, str] = field(default_factory=dict)
    #: nodes outside the slicing whose outputs are cut tensors (evaluated for constants only)
    cut_producers: list[ir.Node] = field(default_factory=list)

    def layout(self, value: ir.Value) -> Layout:
        return self.tensors[value] if value in self.tensors else self.cut[value]


def find_region(seed: ir.Value, axis: int, size: int,
                gated: dict[ir.Value, bool] | None = None) -> Region:
    """The region containing ``seed`` (a gate Mul's output) whose channels lie on ``axis``.
    ``gated`` memoizes which tensors are gated (shared by the regions of one graph)."""
    cuts: set[ir.Value] = set()
    gated = {} if gated is None else gated
    while True:
        region, new_cuts = _explore(seed, Layout.plain(axis, size), size, cuts, gated)
        if not new_cuts:
            return region
        cuts |= new_cuts


def _explore(seed: ir.Value, seed_layout: Layout, size: int, cuts: set[ir.Value],
             gated: dict[ir.Value, bool]) -> tuple[Region, set[ir.Value]]:
    region = Region(size)
    node_set: dict[ir.Node, dict[ir.Value, Layout]] = {}
    new_cuts: set[ir.Value] = set()
    work: list[tuple[ir.Value, Layout]] = []

    def visit(value: ir.Value, layout: Layout) -> None:
        if value in region.tensors or value in region.cut:
            if not region.layout(value).same(layout):
                raise RegionConflict(value)
            return
        (region.cut if value in cuts else region.tensors)[value] = layout
        work.append((value, layout))

    def add_node(node: ir.Node, layouts: dict[ir.Value, Layout]) -> None:
        if node not in node_set:
            node_set[node] = layouts
            region.nodes.append(node)
        for v, lay in layouts.items():
            visit(v, lay)

    visit(seed, seed_layout)
    while work:
        value, layout = work.pop()
        sliced = value in region.tensors
        producer = value.producer()
        if sliced:
            if value.is_graph_output() or value.is_graph_input() or producer is None:
                new_cuts.add(value)
                continue
            if producer in node_set:
                _check_consistent(node_set[producer], value, layout, producer, new_cuts)
            elif producer in region.sources:
                pass
            elif (kind := source_kind(producer, layout.axis)) is not None \
                    and layout.positions.shape[1] == 1 and len(producer.outputs) == 1:
                region.sources[producer] = kind
            else:
                layouts = channelwise_layouts(producer, value, layout, gated)
                if layouts is None or any(o in cuts for o in producer.outputs):
                    new_cuts.add(value)
                else:
                    add_node(producer, layouts)
        elif producer is not None and producer not in region.cut_producers:
            region.cut_producers.append(producer)
        for use in value.uses():
            node = use.node
            if node in node_set:
                _check_consistent(node_set[node], value, layout, node, new_cuts)
                continue
            if node in region.sinks:
                continue
            kind = sink_kind(node, use.idx, layout.axis)
            if kind is not None:
                region.sinks[node] = kind
                continue
            layouts = channelwise_layouts(node, value, layout, gated)
            if layouts is None or any(o in cuts for o in node.outputs):
                if sliced:
                    new_cuts.add(value)
                continue
            add_node(node, layouts)
    return region, new_cuts


def _check_consistent(layouts: dict[ir.Value, Layout], value: ir.Value, layout: Layout,
                      node: ir.Node, new_cuts: set[ir.Value]) -> None:
    """A node reached again from another region tensor (e.g. both halves of a ``Concat``) must
    map it the way its first visit did; if not, its outputs keep every channel (cut)."""
    seen = layouts.get(value)
    if seen is None or not seen.same(layout):
        new_cuts.update(node.outputs)
