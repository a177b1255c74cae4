"""Channel regions: the set of tensors whose channels a gate removes, found from the graph.

Starting at a gate ``Mul``, the region grows through channel-wise ops (activations, BN, bias
``Add``, depthwise conv, pooling, the other operand of ``x * sigmoid(x)``, ...) back to the
*sources* that create the channels (conv / MatMul / Gemm with constant weights) and forward to the
*sinks* that consume them (conv input channels, MatMul / Gemm rows). A region tensor that something
else needs whole (a residual ``Add``, ``Concat``, a graph output, an unknown op) is *cut*: it keeps
all its channels, and the region's consumers read ``Gather(t, kept)`` instead — so a gated tensor
that also feeds a residual is pruned only where it can be.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx_ir as ir

from nnfc.passes.channel_ops import channelwise_axes, sink_kind, source_kind


@dataclass
class Region:
    """Tensors (value -> negative channel axis) sliced together, and the nodes around them."""

    size: int
    tensors: dict[ir.Value, int] = field(default_factory=dict)
    cut: dict[ir.Value, int] = field(default_factory=dict)
    nodes: list[ir.Node] = field(default_factory=list)
    sources: dict[ir.Node, str] = field(default_factory=dict)
    sinks: dict[ir.Node, str] = field(default_factory=dict)
    #: nodes outside the slicing whose outputs are cut tensors (evaluated for constants only)
    cut_producers: list[ir.Node] = field(default_factory=list)


def find_region(seed: ir.Value, axis: int, size: int) -> Region:
    """The region containing ``seed`` (a gate Mul's output) whose channels lie on ``axis``."""
    cuts: set[ir.Value] = set()
    while True:
        region, new_cuts = _explore(seed, axis, size, cuts)
        if not new_cuts:
            return region
        cuts |= new_cuts


def _explore(seed: ir.Value, axis: int, size: int, cuts: set[ir.Value]
             ) -> tuple[Region, set[ir.Value]]:
    region = Region(size)
    node_set: set[ir.Node] = set()
    new_cuts: set[ir.Value] = set()
    work: list[tuple[ir.Value, int]] = []

    def visit(value: ir.Value, ax: int) -> None:
        if value in region.tensors or value in region.cut:
            return
        (region.cut if value in cuts else region.tensors)[value] = ax
        work.append((value, ax))

    def add_node(node: ir.Node, axes: dict[ir.Value, int]) -> None:
        if node not in node_set:
            node_set.add(node)
            region.nodes.append(node)
        for v, ax in axes.items():
            visit(v, ax)

    visit(seed, axis)
    while work:
        value, ax = work.pop()
        sliced = value in region.tensors
        if sliced:
            if value.is_graph_output() or value.is_graph_input():
                new_cuts.add(value)
                continue
            producer = value.producer()
            if producer is None:
                new_cuts.add(value)
            elif (kind := source_kind(producer, ax)) is not None and len(producer.outputs) == 1:
                region.sources[producer] = kind
            else:
                axes = channelwise_axes(producer, value, ax)
                if axes is None or any(o in cuts for o in producer.outputs):
                    new_cuts.add(value)
                else:
                    add_node(producer, axes)
        elif (producer := value.producer()) is not None and producer not in region.cut_producers:
            region.cut_producers.append(producer)
        for use in value.uses():
            node = use.node
            if node in node_set or node in region.sinks:
                continue
            kind = sink_kind(node, use.idx, ax)
            if kind is not None:
                region.sinks[node] = kind
                continue
            axes = channelwise_axes(node, value, ax)
            if axes is None or any(o in cuts for o in node.outputs):
                if sliced:
                    new_cuts.add(value)
                continue
            add_node(node, axes)
    return region, new_cuts
