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
from onnx_ir.passes import InPlacePass, PassResult

from nnfc.passes.channel_ops import slice_window, split_sizes
from nnfc.passes.keep_rules import KeepRules, removable_channels
from nnfc.passes.op_rules import (sink_constants, slice_node, sliced_constants,
                                  source_constants)
from nnfc.passes.channel_state import ChannelState, analyze
from nnfc.passes.errors import PruneError
from nnfc.passes.gate_tags import identify_gates, require_gates_found
from nnfc.passes.graph_utils import (GATE_TAG, attr, const_array, fresh_names, new_initializer,
                                     rank_of)
from nnfc.passes.layout import Layout
from nnfc.passes.regions import Region, RegionConflict, find_region


@dataclass
class GateReport:
    """What happened to one gate: sizes before/after and anything left in place."""

    gate: str
    size: int
    active: int
    kept: int = 0
    notes: list[str] = field(default_factory=list)


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


class PruneGatedChannelsPass(InPlacePass):
    """Remove every channel whose gate is 0 (see module doc); ``reports`` then says, per gate,
    what was kept and why. Fails (:class:`PruneError`) when a bound gate with zeros cannot be
    found or a graph around a gate cannot be handled, naming the op."""

    def __init__(self):
        super().__init__()
        self.reports: list[GateReport] = []

    def requires(self, model: ir.Model) -> None:
        require_gates_found(model, identify_gates(model))

    def call(self, model: ir.Model) -> PassResult:
        with fresh_names(model.graph):
            self.reports = _prune(model)
        modified = any(r.kept < r.size for r in self.reports)
        return PassResult(model, modified=modified)


def prune_gated_channels(model: ir.Model) -> tuple[ir.Model, list[GateReport]]:
    """:class:`PruneGatedChannelsPass` as a function: (model, reports)."""
    pass_ = PruneGatedChannelsPass()
    pass_.requires(model)
    return pass_.call(model).model, pass_.reports


def _prune(model: ir.Model) -> list[GateReport]:
    graph = model.graph
    muls_by_gate = gate_muls(graph)
    reports = {gate: GateReport(gate, const_array(muls[0][1]).size,
                                int(const_array(muls[0][1]).sum()))
               for gate, muls in muls_by_gate.items()}
    done: set[ir.Node] = set()
    gated: dict[ir.Value, bool] = {}
    order: dict[ir.Node, int] = {}
    for gate, muls in muls_by_gate.items():
        report = reports[gate]
        for mul, const in muls:
            if mul in done:
                continue
            axis = gate_axis(const, mul)
            if axis is None:
                report.notes.append(f"{mul.name}: gate does not broadcast over one axis; kept")
                report.kept = report.size
                continue
            try:
                region = find_region(mul.outputs[0], axis, report.size, gated)
            except RegionConflict as exc:
                report.kept = report.size
                report.notes.append(f"all kept: tensor {exc.value.name!r} holds the gate's "
                                    "channels twice in different places (coupled copies)")
                done.add(mul)
                continue
            except Exception as exc:
                raise _failure(gate, exc) from exc
            members = region_gates(region, mul)
            done.update(members)
            if any(n not in order for n in (*region.nodes, *region.cut_producers)):
                order = {node: i for i, node in enumerate(graph)}
            offs = {m: _off_channels(m) for m in members}  # before slicing changes the gates
            try:
                keep, why = _apply(graph, region, analyze(region, order))
            except Exception as exc:
                raise _failure(gate, exc) from exc
            drop = np.setdiff1d(np.arange(region.size), keep)
            for member in members:
                member_report = reports[gate_tag(member)]
                out = member.outputs[0]
                if out in region.tensors:  # the member gate's own entries that stay
                    layout = region.tensors[out]
                    kept_at = layout.keep_index(drop) if drop.size else np.arange(layout.full)
                    kept = kept_at.size
                    off_kept = np.intersect1d(offs[member], kept_at)
                    owner = layout.holders()
                else:
                    kept, off_kept, owner = member_report.size, offs[member], None
                member_report.kept = max(member_report.kept, kept)
                if off_kept.size:
                    reasons = sorted({why.get(int(owner[c]) if owner is not None else -1,
                                              "needed whole elsewhere") for c in off_kept})
                    member_report.notes.append(
                        f"{off_kept.size} gated-off channel(s) kept: {'; '.join(reasons)}")
                if member is not mul:
                    member_report.notes.append(f"pruned together with {gate} (merged tensors)")
            if region.cut:
                report.notes.append(f"{len(region.cut)} tensor(s) needed whole elsewhere "
                                    "(residual/concat/output) keep their channels there")
    return list(reports.values())


def _failure(gate: str, exc: Exception) -> PruneError:
    """A PruneError naming the op the passes were handling when ``exc`` happened."""
    node = None
    tb = exc.__traceback__
    while tb is not None:  # innermost frame that was working on a node
        for name in ("node", "sink", "source", "producer"):
            if isinstance(tb.tb_frame.f_locals.get(name), ir.Node):
                node = tb.tb_frame.f_locals[name]
        tb = tb.tb_next
    where = f" at {node.op_type} node {node.name or '(unnamed)'}" if node is not None else ""
    return PruneError(f"cannot prune around gate {gate}{where}: "
                      f"{type(exc).__name__}: {exc}".rstrip(": "))


def _off_channels(mul: ir.Node) -> np.ndarray:
    """Channels of ``mul``'s gate that are 0."""
    gate = next(const_array(v) for v in mul.inputs
                if v is not None and v.metadata_props.get(GATE_TAG)).reshape(-1)
    return np.flatnonzero(gate == 0)


def gate_tag(mul: ir.Node) -> str | None:
    for value in mul.inputs:
        if value is not None and value.metadata_props.get(GATE_TAG):
            return value.metadata_props[GATE_TAG]
    return None


def region_gates(region: Region, seed_mul: ir.Node) -> list[ir.Node]:
    """The gate Muls a region holds (more than one when gated tensors are merged)."""
    found = [seed_mul]
    for node in region.nodes:
        if node is not seed_mul and node.op_type == "Mul" and gate_tag(node):
            found.append(node)
    return found


def gate_axis(const: ir.Value, mul: ir.Node) -> int | None:
    shape = const.const_value.shape.numpy()
    size = int(np.prod(shape))
    big = [i for i, d in enumerate(shape) if d != 1]
    if size == 1 or len(big) != 1:
        return None
    return big[0] - len(shape)


def _apply(graph: ir.Graph, region: Region, states: dict[ir.Value, ChannelState]
           ) -> tuple[np.ndarray, dict[int, str]]:
    """Fold constants into sinks and slice the region to the channels that must stay. Returns
    the kept region channels and, per channel kept although removable elsewhere, why."""
    size = region.size
    removable, why = removable_channels(region, states)
    kept, placeholder = KeepRules.of(region).decide(removable, why)
    keep, placeholder = np.flatnonzero(kept[0]), bool(placeholder[0])
    if keep.size == size:
        return keep, why
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
        slicer.channelwise(node, region)
        if placeholder:
            slicer.ungate(node)
    for value, layout in region.cut.items():
        slicer.gather_cut(value, layout, region)
    for value, layout in region.tensors.items():
        if value.shape is not None:
            dims = list(value.shape)
            dims[len(dims) + layout.axis] = slicer.keep_index(layout).size
            value.shape = ir.Shape(dims)
    return keep, why


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
        per_channel = np.stack([w[:, _valid(layout.positions[c])].sum(axis=(1, 2, 3))
                                for c in carried])
        _add_to_input(graph, sink, 2, vals @ per_channel, w.shape[0])
        return
    if kind == "gconv":  # row o of group j reads input position j * per + l at W[o, l]
        groups = attr(sink, "group", 1)
        per, rows_per = w.shape[1], w.shape[0] // groups
        row_group = np.arange(w.shape[0]) // rows_per
        sums = w.sum(axis=(2, 3))
        per_channel = np.stack([
            sum(np.where(row_group == p // per, sums[:, p % per], 0.0)
                for p in _valid(layout.positions[c])) for c in carried])
        _add_to_input(graph, sink, 2, vals @ per_channel, w.shape[0])
        return
    rows = w.T if kind == "gemm" and attr(sink, "transB", 0) else w  # [K, N]
    delta = vals @ np.stack([rows[_valid(layout.positions[c])].sum(axis=0) for c in carried])
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


def _valid(positions: np.ndarray) -> np.ndarray:
    return positions[positions >= 0]


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
        self.kept: dict[int, tuple[Layout, np.ndarray]] = {}

    def keep_index(self, layout: Layout) -> np.ndarray:
        """Kept positions of ``layout`` (computed once per layout: most tensors share one)."""
        hit = self.kept.get(id(layout))
        if hit is None or hit[0] is not layout:
            hit = self.kept[id(layout)] = (layout, layout.keep_index(self.drop))
        return hit[1]

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
        for index, axis in source_constants(node, kind):
            self.const(node, index, axis, keep)

    def sink(self, node: ir.Node, kind: str, layout: Layout) -> None:
        keep = self.keep_index(layout)
        if kind == "gconv":
            self._grouped_sink(node, keep, layout.full)
            return
        self.const(node, *sink_constants(node, kind), keep)

    def _grouped_sink(self, node: ir.Node, keep: np.ndarray, full: int) -> None:
        """Each output row keeps the input columns its own group still has."""
        w = const_array(node.inputs[1])
        groups = attr(node, "group", 1)
        per, rows_per = full // groups, w.shape[0] // groups
        local = [keep[(keep // per) == g] % per for g in range(groups)]
        if len({len(c) for c in local}) != 1:
            raise AssertionError("grouped conv slicing needs equal counts per group")
        sliced = np.concatenate([w[g * rows_per:(g + 1) * rows_per][:, local[g]]
                                 for g in range(groups)])
        name = node.inputs[1].name or "grouped_weight"
        node.replace_input_with(1, new_initializer(self.graph, sliced, name))

    def zero_channels(self, node: ir.Node, kind: str, layout: Layout, channels: np.ndarray
                      ) -> None:
        """Zero the sink weights that read the placeholder channel(s)."""
        keep = self.keep_index(layout)
        arr = const_array(node.inputs[1]).copy()
        axis = sink_constants(node, kind)[1]
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

    def channelwise(self, node: ir.Node, region: Region) -> None:
        """Slice a channel-wise op's per-channel constants and attributes (its rule says how)."""
        out = node.outputs[0]
        if out in region.tensors or out in region.cut:
            layout = region.layout(out)
            for index, axis in sliced_constants(node, layout):
                self.const(node, index, axis, self.keep_index(layout))
        slice_node(self, node, region)

    def window(self, node: ir.Node, layout: Layout) -> None:
        """Split/Slice of the channel axis: re-count each window over the kept positions."""
        x = node.inputs[0]
        rank = rank_of(x)
        chan = rank + layout.axis
        kept = np.zeros(layout.full, bool)
        kept[self.keep_index(layout)] = True
        before = np.concatenate([[0], np.cumsum(kept)])  # kept positions before each index
        if node.op_type == "Split":
            if attr(node, "axis", 0) % rank != chan:
                return
            edges = np.cumsum([0] + split_sizes(node, layout.full))
            sizes = np.diff(before[edges]).astype(np.int64)
            if "num_outputs" in node.attributes:
                del node.attributes["num_outputs"]
            if "split" in node.attributes:  # opset < 13
                node.attributes["split"] = ir.AttrInt64s("split", [int(v) for v in sizes])
            else:
                node.resize_inputs(2)
                node.replace_input_with(1, new_initializer(self.graph, sizes, "split_sizes"))
            return
        window = slice_window(node, chan, rank, layout.full)
        if window is None or window == (0, layout.full):
            return
        starts, ends = const_array(node.inputs[1]).copy(), const_array(node.inputs[2]).copy()
        axes = const_array(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] is not None \
            else np.arange(len(starts))
        i = [int(a) % rank for a in axes].index(chan)
        starts[i], ends[i] = before[window[0]], before[window[1]]
        node.replace_input_with(1, new_initializer(self.graph, starts, "slice_starts"))
        node.replace_input_with(2, new_initializer(self.graph, ends, "slice_ends"))

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
