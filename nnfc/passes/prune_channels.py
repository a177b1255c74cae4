"""Pass: physically remove gated-off channels.

For every bound gate (a constant tagged ``nnfc.gate`` that a ``Mul`` consumes) the pass finds the
channel region (``regions.py``), works out which channels carry nothing but a constant into the
region's sinks (``channel_state.py``), folds those constants into the sinks' biases, and slices the
channels out of every source weight/bias, every per-channel constant in between (BN, bias, scale,
the gate itself, depthwise weights and groups) and every sink's input channels. Channels that the
pass cannot prove removable are kept (their gate stays as a constant ``Mul``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from nnfc.passes.channel_ops import BINARY, conv_has_padding, is_depthwise_conv
from nnfc.passes.channel_state import ChannelState, analyze
from nnfc.passes.graph_utils import GATE_TAG, attr, const_array, new_initializer, rank_of
from nnfc.passes.layout import Layout
from nnfc.passes.regions import Region, find_region


@dataclass
class GateReport:
    """What happened to one gate: sizes before/after and anything left in place."""

    gate: str
    size: int
    active: int
    kept: int = 0
    notes: list[str] = field(default_factory=list)
    not_applied: str = ""  # why the gate removed nothing (e.g. it feeds no Mul); "" if applied


def gate_muls(graph: ir.Graph) -> dict[str, list[tuple[ir.Node, ir.Value]]]:
    """Bound gate name -> [(Mul node, gate constant operand)]."""
    found: dict[str, list[tuple[ir.Node, ir.Value]]] = {}
    for value in graph.initializers.values():
        tag = value.metadata_props.get(GATE_TAG)
        if not tag:
            continue
        for use in value.uses():
            if use.node.op_type == "Mul":
                found.setdefault(tag, []).append((use.node, value))
    return found


def gate_other_uses(graph: ir.Graph) -> dict[str, list[ir.Node]]:
    """Bound gate name -> nodes other than ``Mul`` that consume it (left as constants)."""
    found: dict[str, list[ir.Node]] = {}
    for value in graph.initializers.values():
        tag = value.metadata_props.get(GATE_TAG)
        if tag:
            found.setdefault(tag, []).extend(
                use.node for use in value.uses() if use.node.op_type != "Mul")
    return found


def _describe(nodes: list[ir.Node]) -> str:
    return ", ".join(f"{n.op_type} {n.name!r}" for n in nodes[:3]) + (" …" if len(nodes) > 3
                                                                       else "")


def prune_gated_channels(model: ir.Model) -> tuple[ir.Model, list[GateReport]]:
    """Remove every channel whose gate is 0 (see module doc). Returns the model and a report."""
    graph = model.graph
    reports: list[GateReport] = []
    done: set[ir.Node] = set()
    others = gate_other_uses(graph)
    for gate, muls in gate_muls(graph).items():
        values = const_array(muls[0][1]).reshape(-1)
        report = GateReport(gate, values.size, int(values.sum()))
        reports.append(report)
        for mul, const in muls:
            if mul in done:
                continue
            axis = _gate_axis(const, mul)
            if axis is None:
                report.notes.append(f"{mul.name}: gate does not broadcast over one axis; kept")
                report.kept = values.size
                continue
            region = find_region(mul.outputs[0], axis, values.size)
            done.update(n for n in region.nodes if n.op_type == "Mul")
            done.add(mul)
            order = {node: i for i, node in enumerate(graph)}
            keep = _apply(graph, region, analyze(region, order))
            report.kept = max(report.kept, len(keep))
            if region.cut:
                report.notes.append(f"{len(region.cut)} tensor(s) needed whole elsewhere "
                                    "(residual/concat/output) keep their channels there")
        if others.get(gate):
            report.notes.append(f"also feeds {_describe(others[gate])}, not a Mul: left there "
                                "as a constant")
    for gate, nodes in others.items():  # gates that feed no Mul at all: nothing removed
        if not any(r.gate == gate for r in reports):
            values = next(const_array(v) for v in graph.initializers.values()
                          if v.metadata_props.get(GATE_TAG) == gate)
            reports.append(GateReport(gate, values.size, int(values.sum()), values.size,
                                      not_applied=(f"feeds {_describe(nodes)}, not a Mul"
                                                   if nodes else "no node uses it")
                                      + ": no channel removed (kept as a constant; outputs "
                                        "stay exact)"))
    return model, reports


def _gate_axis(const: ir.Value, mul: ir.Node) -> int | None:
    shape = const.const_value.shape.numpy()
    size = int(np.prod(shape))
    big = [i for i, d in enumerate(shape) if d != 1]
    if size == 1 or len(big) != 1:
        return None
    return big[0] - len(shape)


def _apply(graph: ir.Graph, region: Region, states: dict[ir.Value, ChannelState]) -> np.ndarray:
    """Fold constants into sinks and slice the region to the channels that must stay."""
    size = region.size
    removable = np.ones(size, bool)
    for sink, kind in region.sinks.items():
        state = states.get(sink.inputs[0], ChannelState.unknown(size))
        foldable = state.const if (kind != "conv" or not conv_has_padding(sink)) else state.zero
        removable &= foldable
    keep = np.flatnonzero(~removable)
    placeholder = keep.size == 0
    if placeholder:
        # Zero-size tensors are not portable: keep one channel whose consumers ignore it.
        keep = np.array([0])
    if keep.size == size:
        return keep
    drop = np.setdiff1d(np.arange(size), keep)
    slicer = _Slicer(graph, drop)
    for sink, kind in region.sinks.items():
        layout = region.layout(sink.inputs[0])
        folded = np.arange(size) if placeholder else drop
        _fold_into_sink(graph, sink, kind, states.get(sink.inputs[0]), folded, layout)
        slicer.sink(sink, kind, layout)
        if placeholder:
            slicer.zero_channels(sink, kind, layout, keep)
    for source, kind in region.sources.items():
        slicer.source(source, kind, region.tensors[source.outputs[0]])
    for node in region.nodes:
        slicer.channelwise(node, region.layout(node.outputs[0]))
        if placeholder:
            slicer.ungate(node)
    for value, layout in region.cut.items():
        slicer.gather_cut(value, layout, region)
    for value, layout in region.tensors.items():
        if value.shape is not None:
            dims = list(value.shape)
            dims[len(dims) + layout.axis] = slicer.keep_index(layout).size
            value.shape = ir.Shape(dims)
    return keep


def _fold_into_sink(graph: ir.Graph, sink: ir.Node, kind: str, state: ChannelState | None,
                    drop: np.ndarray, layout: Layout) -> None:
    """Add what removed channels that carry a constant contribute to the sink's bias."""
    if state is None:
        return
    carried = drop[state.const[drop] & (state.val[drop] != 0)]
    if carried.size == 0:
        return
    vals = state.val[carried].astype(np.float64)
    w = const_array(sink.inputs[1]).astype(np.float64)
    if kind == "conv":  # W[o, position, kh, kw]
        per_channel = np.stack([w[:, layout.positions[c]].sum(axis=(1, 2, 3)) for c in carried])
        _add_to_input(graph, sink, 2, vals @ per_channel, w.shape[0])
        return
    rows = w.T if kind == "gemm" and attr(sink, "transB", 0) else w  # [K, N]
    delta = vals @ np.stack([rows[layout.positions[c]].sum(axis=0) for c in carried])
    if kind == "gemm":
        _add_to_input(graph, sink, 2, attr(sink, "alpha", 1.0) * delta / attr(sink, "beta", 1.0),
                      rows.shape[1])
        return
    # matmul: y = x W  ->  y = x' W' + delta
    bias = new_initializer(graph, delta.astype(np.float32), f"{sink.name or 'matmul'}.folded_bias")
    out = sink.outputs[0]
    add = ir.Node("", "Add", [None, bias], name=f"{sink.name}.fold_add")
    graph.insert_after(sink, add)
    new_out = add.outputs[0]
    out.replace_all_uses_with(new_out, replace_graph_outputs=True)
    add.replace_input_with(0, out)
    new_out.shape, new_out.type = out.shape, out.type
    if new_out.is_graph_output():  # keep the model's output name
        name, out.name = out.name, f"{out.name}.pre_fold"
        new_out.name = name


def _add_to_input(graph: ir.Graph, node: ir.Node, index: int, delta: np.ndarray,
                  length: int) -> None:
    """Add ``delta`` to the node's bias input ``index`` (created if absent), copy-on-write."""
    old = node.inputs[index] if len(node.inputs) > index else None
    base = np.zeros(length, np.float64) if old is None else const_array(old).astype(np.float64)
    new = new_initializer(graph, (base + delta.reshape(base.shape if base.ndim else -1)
                                  ).astype(np.float32), f"{node.name or node.op_type}.bias")
    if old is None:
        node.resize_inputs(index + 1)
    node.replace_input_with(index, new)


class _Slicer:
    """Slices constants to the kept positions of each tensor's layout, sharing sliced copies."""

    def __init__(self, graph: ir.Graph, drop: np.ndarray):
        self.graph, self.drop = graph, drop
        self.cache: dict[tuple[int, int, bytes], ir.Value] = {}

    def keep_index(self, layout: Layout) -> np.ndarray:
        return layout.keep_index(self.drop)

    def const(self, node: ir.Node, index: int, axis: int, keep: np.ndarray) -> None:
        value = node.inputs[index]
        key = (id(value), axis, keep.tobytes())
        if key not in self.cache:
            arr = np.take(const_array(value), keep, axis=axis)
            tag = value.metadata_props.get(GATE_TAG)
            self.cache[key] = new_initializer(self.graph, arr, value.name or "sliced", tag=tag)
        node.replace_input_with(index, self.cache[key])

    def source(self, node: ir.Node, kind: str, layout: Layout) -> None:
        keep = self.keep_index(layout)
        if kind == "conv":
            self.const(node, 1, 0, keep)
            if len(node.inputs) > 2 and node.inputs[2] is not None:
                self.const(node, 2, 0, keep)
        elif kind == "matmul":
            self.const(node, 1, 1, keep)
        else:  # gemm
            self.const(node, 1, 0 if attr(node, "transB", 0) else 1, keep)
            c = const_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
            if c is not None and c.ndim and c.shape[-1] > 1:
                self.const(node, 2, c.ndim - 1, keep)

    def _sink_axis(self, node: ir.Node, kind: str) -> int:
        if kind == "conv":
            return 1
        if kind == "gemm" and attr(node, "transB", 0):
            return 1
        return 0

    def sink(self, node: ir.Node, kind: str, layout: Layout) -> None:
        self.const(node, 1, self._sink_axis(node, kind), self.keep_index(layout))

    def zero_channels(self, node: ir.Node, kind: str, layout: Layout, channels: np.ndarray
                      ) -> None:
        """Zero the sink weights that read the placeholder channel(s)."""
        keep = self.keep_index(layout)
        arr = const_array(node.inputs[1]).copy()
        axis = self._sink_axis(node, kind)
        cols = np.flatnonzero(np.isin(keep, layout.positions[channels].ravel()))
        index = [slice(None)] * arr.ndim
        index[axis] = cols
        arr[tuple(index)] = 0
        node.replace_input_with(1, new_initializer(self.graph, arr, "placeholder_weight"))

    def ungate(self, node: ir.Node) -> None:
        """Set a gate constant to 1 (its channel's consumers ignore it; cleanup drops the Mul)."""
        for i, value in enumerate(node.inputs):
            if value is not None and value.metadata_props.get(GATE_TAG):
                ones = np.ones_like(const_array(value))
                node.replace_input_with(i, new_initializer(self.graph, ones, value.name,
                                                           tag=value.metadata_props[GATE_TAG]))

    def channelwise(self, node: ir.Node, layout: Layout) -> None:
        op = node.op_type
        keep = self.keep_index(layout)
        if op == "BatchNormalization":
            for i in range(1, 5):
                self.const(node, i, 0, keep)
        elif op == "Conv" and is_depthwise_conv(node):
            self.const(node, 1, 0, keep)
            if len(node.inputs) > 2 and node.inputs[2] is not None:
                self.const(node, 2, 0, keep)
            node.attributes["group"] = ir.AttrInt64("group", int(keep.size))
        elif op in BINARY:
            for i, value in enumerate(node.inputs[:2]):
                arr = const_array(value)
                if arr is None:
                    continue
                dim = arr.ndim + layout.axis
                if dim >= 0 and arr.shape[dim] > 1:
                    self.const(node, i, dim, keep)
        elif op == "Reshape":
            shape = const_array(node.inputs[1]).copy()
            pos = len(shape) + layout.axis
            if shape[pos] > 0:
                shape[pos] = keep.size
                node.replace_input_with(1, new_initializer(self.graph, shape, "reshape_shape"))

    def gather_cut(self, value: ir.Value, layout: Layout, region: Region) -> None:
        """Region consumers of a cut tensor read only its kept channels."""
        readers = [(u.node, u.idx) for u in value.uses()
                   if u.node in region.sinks or u.node in region.nodes]
        if not readers:
            return
        rank = rank_of(value)
        keep = self.keep_index(layout)
        indices = new_initializer(self.graph, keep.astype(np.int64), f"{value.name}.keep")
        gather = ir.Node("", "Gather", [value, indices],
                         attributes=[ir.AttrInt64("axis", rank + layout.axis)],
                         name=f"{value.name}.gather")
        producer = value.producer()
        if producer is None:
            self.graph.insert_before(next(iter(self.graph)), gather)
        else:
            self.graph.insert_after(producer, gather)
        out = gather.outputs[0]
        out.type = value.type
        if value.shape is not None:
            dims = list(value.shape)
            dims[rank + layout.axis] = keep.size
            out.shape = ir.Shape(dims)
        for node, idx in readers:
            node.replace_input_with(idx, out)
