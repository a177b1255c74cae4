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

import numpy as np
import onnx_ir as ir

from nnfc.passes.errors import Failure
from nnfc.passes.layout import Layout
from nnfc.passes.rules import GraphRules, OpRule


class RegionConflict(Exception):
    """Raised inside the walk when a tensor is reached with two channel maps; the walk retries
    with merged channels, or :func:`find_region` returns a :class:`Failure`."""

    def __init__(self, value: ir.Value, old: Layout | None = None, new: Layout | None = None):
        super().__init__(value.name)
        self.value, self.old, self.new = value, old, new


@dataclass
class Region:
    """Tensors (value -> layout of the region's channels) sliced together, and their nodes."""

    size: int
    tensors: dict[ir.Value, Layout] = field(default_factory=dict)
    cut: dict[ir.Value, Layout] = field(default_factory=dict)
    nodes: list[ir.Node] = field(default_factory=list)
    #: weight ops creating / consuming the region's channels, with their rules
    sources: dict[ir.Node, OpRule] = field(default_factory=dict)
    sinks: dict[ir.Node, OpRule] = field(default_factory=dict)
    #: nodes outside the slicing whose outputs are cut tensors (evaluated for constants only)
    cut_producers: list[ir.Node] = field(default_factory=list)

    def layout(self, value: ir.Value) -> Layout:
        return self.tensors[value] if value in self.tensors else self.cut[value]


def find_region(seed: ir.Value, axis: int, size: int, rules: GraphRules) -> Region | Failure:
    """The region containing ``seed`` (a gate Mul's output) whose channels lie on ``axis``, each
    op handled by its rule in ``rules``; a :class:`Failure` when a tensor holds the channels
    twice in ways that cannot be reconciled.

    Coupled channels (Torch-Pruning's dependency groups) are found where a tensor is reached
    twice: a channel that reaches a tensor at two positions (GhostNet's ``Concat`` of a conv and
    a cheap depthwise op on it) holds both positions there; two channels that reach one position
    (a residual stream through such a ``Concat``) become one region channel holding both seed
    positions. Region channels are then classes of seed positions (``region.size`` may be less
    than ``size``)."""
    cuts: set[ir.Value] = set()
    hints: dict[ir.Value, Layout] = {}
    seed_layout = Layout.plain(axis, size)
    for _ in range(4 * size + 16):
        try:
            region, new_cuts = _explore(seed, seed_layout, cuts, hints, rules)
        except RegionConflict as exc:
            if exc.old is None or exc.old.axis != exc.new.axis or exc.old.full != exc.new.full:
                return _conflict(exc)
            merged = _merge_channels(seed_layout, exc.old, exc.new)
            if merged is not None:
                seed_layout, hints, cuts = merged, {}, set()
            elif _disjoint(exc.old, exc.new) and exc.value not in hints:
                hints[exc.value] = exc.old.union(exc.new)
            elif exc.value in hints and _disjoint(hints[exc.value], exc.new):
                hints[exc.value] = hints[exc.value].union(exc.new)
            else:
                return _conflict(exc)
            continue
        if not new_cuts:
            return region
        cuts |= new_cuts
    return _conflict(RegionConflict(seed))


def _conflict(exc: RegionConflict) -> Failure:
    return Failure(f"tensor {exc.value.name!r} holds the gate's channels twice in different "
                   "places (coupled copies)")


def _disjoint(a: Layout, b: Layout) -> bool:
    pa, pb = a.positions[a.positions >= 0], b.positions[b.positions >= 0]
    return not np.intersect1d(pa, pb).size


def _merge_channels(seed: Layout, old: Layout, new: Layout) -> Layout | None:
    """The seed layout whose region channels merge those that ``old`` and ``new`` put at one
    position; None when no position is held by two different channels."""
    a, b = old.holders(), new.holders()
    if a is None or b is None:
        return None
    both = (a >= 0) & (b >= 0) & (a != b)
    if not both.any():
        return None
    n = seed.positions.shape[0]
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for x, y in zip(a[both], b[both]):
        rx, ry = root(int(x)), root(int(y))
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    roots = np.array([root(i) for i in range(n)])
    classes = [np.flatnonzero(roots == r) for r in np.unique(roots)]
    rows = [seed.positions[c].ravel() for c in classes]
    rows = [r[r >= 0] for r in rows]
    width = max(len(r) for r in rows)
    pos = np.full((len(rows), width), -1, np.int64)
    for i, r in enumerate(rows):
        pos[i, :len(r)] = np.sort(r)
    return Layout(seed.axis, pos, seed.full)


def _explore(seed: ir.Value, seed_layout: Layout, cuts: set[ir.Value],
             hints: dict[ir.Value, Layout], rules: GraphRules
             ) -> tuple[Region, set[ir.Value]]:
    region = Region(seed_layout.positions.shape[0])
    node_set: dict[ir.Node, dict[ir.Value, Layout]] = {}
    new_cuts: set[ir.Value] = set()
    work: list[tuple[ir.Value, Layout]] = []

    def visit(value: ir.Value, layout: Layout) -> None:
        if value in hints and _within(layout, hints[value]):
            layout = hints[value]
        if value in region.tensors or value in region.cut:
            if not region.layout(value).same(layout):
                raise RegionConflict(value, region.layout(value), layout)
            return
        (region.cut if value in cuts else region.tensors)[value] = layout
        work.append((value, layout))

    def layouts(node: ir.Node, value: ir.Value, layout: Layout):
        return rules.get(node).layouts(node, value, layout, rules.gated)

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
            elif (rule := rules.get(producer)).creates(producer, layout.axis) \
                    and (layout.positions.shape[1] == 1 or layout.axis == -3) \
                    and len(producer.outputs) == 1:
                region.sources[producer] = rule
            else:
                mapped = layouts(producer, value, layout)
                if mapped is None or any(o in cuts for o in producer.outputs):
                    new_cuts.add(value)
                else:
                    add_node(producer, mapped)
        elif producer is not None and producer not in region.cut_producers:
            region.cut_producers.append(producer)
        for use in value.uses():
            node = use.node
            if node in node_set:
                out = node.outputs[0]
                if value not in node_set[node] and node.op_type == "Concat" \
                        and out in node_set[node] and out not in hints:
                    # a second input holds region channels too: the output holds them twice
                    fresh = layouts(node, value, layout)
                    if fresh is not None and out in fresh:
                        raise RegionConflict(out, node_set[node][out], fresh[out])
                _check_consistent(node_set[node], value, layout, node, new_cuts)
                continue
            if node in region.sinks:
                continue
            rule = rules.get(node)
            if rule.consumes(node, use.idx, layout.axis):
                region.sinks[node] = rule
                continue
            hinted = next((o for o in node.outputs if o in hints), None)
            if hinted is not None:  # the output holds channels from several inputs: map back
                mapped = layouts(node, hinted, hints[hinted])
                if mapped is not None and not (value in mapped and mapped[value].same(layout)):
                    mapped = None
            else:
                mapped = layouts(node, value, layout)
            if mapped is None or any(o in cuts for o in node.outputs):
                if sliced:
                    new_cuts.add(value)
                continue
            add_node(node, mapped)
    return region, new_cuts


def _within(layout: Layout, hint: Layout) -> bool:
    """Whether every position ``layout`` gives a channel is one ``hint`` gives it too."""
    if layout.axis != hint.axis or layout.full != hint.full:
        return False
    for c in range(layout.positions.shape[0]):
        mine = layout.positions[c][layout.positions[c] >= 0]
        if not np.isin(mine, hint.positions[c]).all():
            return False
    return True


def _check_consistent(layouts: dict[ir.Value, Layout], value: ir.Value, layout: Layout,
                      node: ir.Node, new_cuts: set[ir.Value]) -> None:
    """A node reached again from another region tensor (e.g. both halves of a ``Concat``) must
    map it the way its first visit did; if not, its outputs keep every channel (cut)."""
    seen = layouts.get(value)
    if seen is None or not seen.same(layout):
        new_cuts.update(node.outputs)
