"""One rule per op type, in a registry (the way onnxscript's rewriter and constant folder register
per-op functions, and Torch-Pruning registers one pruner per layer type).

A rule says what the op does to a channel region:

- ``role``: ``"creates"`` (a weight op whose output channels can be sliced: Conv, ConvTranspose,
  MatMul, Gemm), ``"consumes"`` (the same ops reading channels through their weights),
  ``"channelwise"`` (the region flows through it), or ``"cuts"`` (the region stops: the tensor is
  needed whole). Ops without a rule cut.
- ``layouts(node, value, layout, gated)``: the channel-index map — given the layout of one of its
  tensors, the layouts of its other data inputs/outputs (partial for Split/Slice, shifted for
  Concat, moved for Transpose, spread over H·W features for Flatten), or None (cut here).
- ``transfer(node, out, layout, src, ctx)``: how a constant carried by a removed channel passes
  through it (``ChannelState`` in, ``ChannelState`` out).
- ``slice(slicer, node, region)``: how to rewrite its attributes / shape inputs once channels
  go (a depthwise conv's ``group``, a Reshape's target shape, Split sizes).
- ``constants(node, layout)``: the per-channel constants a channel-wise op holds, as
  ``(input index, axis)`` pairs sliced with its output's channels (BN statistics, a bias or scale
  operand, depthwise weights). The slicer and the predictor's cost analysis both read it.
- ``source(node, axis)`` / ``sink(node, index, axis)``: for weight ops, the kind of slicing they
  take as channel creator / consumer (None: not on this axis); :func:`source_constants` /
  :func:`sink_constants` say which weight axes each kind slices.
- ``macs(node)``: its cost in multiply-adds, as the ``(tensor, axis)`` factors whose sizes
  multiply to it (a Conv: every weight axis times the output's batch and spatial axes). The
  predictor evaluates the same factors with pruned sizes, so a rule registered for a user's op
  gets its cost predicted too. None: the op costs no multiply-adds.

Users register a rule for their own op with :func:`register_rule`::

    register_rule("MyGelu", OpRule("channelwise", layouts=unary_layouts,
                                   transfer=lambda node, out, layout, src, ctx: src.unknown_copy()))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx_ir as ir

from nnfc.passes import channel_ops as ops
from nnfc.passes.channel_state import ChannelState, TransferContext
from nnfc.passes.graph_utils import attr, const_array, new_initializer, rank_of
from nnfc.passes.layout import Layout

LayoutFn = Callable[..., "dict[ir.Value, Layout] | None"]
TransferFn = Callable[[ir.Node, ir.Value, Layout, ChannelState, TransferContext], ChannelState]
SliceFn = Callable[..., None]
ConstantsFn = Callable[[ir.Node, Layout], "list[tuple[int, int]]"]
MacsFn = Callable[[ir.Node], "list[tuple[ir.Value, int]] | None"]


@dataclass(frozen=True)
class OpRule:
    role: str                                   # creates | consumes | channelwise | cuts
    layouts: LayoutFn | None = None
    transfer: TransferFn | None = None
    slice: SliceFn | None = None
    source: Callable[[ir.Node, int], str | None] | None = None
    sink: Callable[[ir.Node, int, int], str | None] | None = None
    constants: ConstantsFn | None = None
    macs: MacsFn | None = None


_RULES: dict[tuple[str, str], OpRule] = {}


def register_rule(op_type: str, rule: OpRule, domain: str = "") -> None:
    """Register (or replace) the rule for ``domain::op_type``."""
    _RULES[(domain if domain != "ai.onnx" else "", op_type)] = rule


def rule_for(node: ir.Node) -> OpRule | None:
    domain = node.domain if node.domain != "ai.onnx" else ""
    return _RULES.get((domain, node.op_type))


# ---- dispatch used by the region walk, the constant analysis and the slicer

def channelwise_layouts(node: ir.Node, value: ir.Value, layout: Layout,
                        gated: dict[ir.Value, bool] | None = None
                        ) -> dict[ir.Value, Layout] | None:
    rule = rule_for(node)
    if rule is None or rule.layouts is None:
        return None
    return rule.layouts(node, value, layout, gated)


def source_kind(node: ir.Node, axis: int) -> str | None:
    rule = rule_for(node)
    return rule.source(node, axis) if rule is not None and rule.source else None


def sink_kind(node: ir.Node, index: int, axis: int) -> str | None:
    rule = rule_for(node)
    return rule.sink(node, index, axis) if rule is not None and rule.sink else None


def transfer(node: ir.Node, out: ir.Value, ctx: TransferContext) -> ChannelState:
    rule = rule_for(node)
    if rule is None or rule.transfer is None:
        return ChannelState.unknown(ctx.size)
    layout = ctx.layouts[out]
    return rule.transfer(node, out, layout, ctx.input_state(node.inputs[0], out), ctx)


def sliced_constants(node: ir.Node, layout: Layout) -> list[tuple[int, int]]:
    """``(input index, axis)`` of the per-channel constants a channel-wise op slices."""
    rule = rule_for(node)
    return rule.constants(node, layout) if rule is not None and rule.constants else []


def macs_factors(node: ir.Node) -> list[tuple[ir.Value, int]] | None:
    """The ``(tensor, axis)`` factors of the op's multiply-adds (None: it has none)."""
    rule = rule_for(node)
    return rule.macs(node) if rule is not None and rule.macs else None


def source_constants(node: ir.Node, kind: str) -> list[tuple[int, int]]:
    """``(input index, axis)`` a channel-creating weight op of ``kind`` slices."""
    if kind in ("conv", "gconv", "convtranspose"):
        found = [(1, 1 if kind == "convtranspose" else 0)]
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            found.append((2, 0))
        return found
    if kind == "matmul":
        return [(1, 1)]
    found = [(1, 0 if attr(node, "transB", 0) else 1)]  # gemm
    c = node.inputs[2] if len(node.inputs) > 2 else None
    if c is not None and c.const_value is not None:
        dims = list(c.const_value.shape)
        if dims and dims[-1] > 1:
            found.append((2, len(dims) - 1))
    return found


def sink_constants(node: ir.Node, kind: str) -> tuple[int, int]:
    """``(input index, axis)`` of the weight a channel-consuming op of ``kind`` slices (for
    ``gconv``: within each group)."""
    if kind in ("conv", "gconv"):
        return 1, 1
    if kind == "gemm" and attr(node, "transB", 0):
        return 1, 1
    return 1, 0


def slice_node(slicer, node: ir.Node, region) -> None:
    rule = rule_for(node)
    if rule is not None and rule.slice is not None:
        rule.slice(slicer, node, region)


# ---- constant carry (transfer) functions

def _same(node, out, layout, src: ChannelState, ctx) -> ChannelState:
    """A constant plane stays that constant (reshapes, max/mean pools, Split, nearest Resize)."""
    return ChannelState(src.const.copy(), src.val.copy())


def _columns(layout: Layout):
    """(valid [C] bool, rows [C]) for each position column of a layout (a channel may sit at
    several positions: after a Flatten, or coupled through a Concat)."""
    for j in range(layout.positions.shape[1]):
        col = layout.positions[:, j]
        yield col >= 0, np.maximum(col, 0)


def _agreeing(src: ChannelState, per_column) -> ChannelState:
    """A channel is constant when every position it holds computes the same constant."""
    const, val, first = src.const.copy(), np.zeros_like(src.val), None
    for valid, v in per_column:
        if first is None:
            val, first = np.where(valid, v, 0).astype(np.float32), valid.copy()
            continue
        const &= ~valid | ~first | (v == val)
        val = np.where(~first & valid, v, val).astype(np.float32)
        first |= valid
    return ChannelState(const, np.where(const, val, 0).astype(np.float32))


def _pointwise(node, out, layout, src: ChannelState, ctx) -> ChannelState:
    extra = [const_array(v) if v is not None else None for v in node.inputs[1:]]
    if node.op_type != "BatchNormalization":
        val = ops.eval_pointwise(node, [src.val.reshape(ctx.shape(out)), *extra]).reshape(-1)
        return ChannelState(src.const.copy(), np.where(src.const, val, 0).astype(np.float32))

    def column(rows):  # per-channel parameters at the region's positions
        args = [src.val.reshape(ctx.shape(out)), *(a[rows] for a in extra[:4])]
        return ops.eval_pointwise(node, args).reshape(-1)

    return _agreeing(src, ((valid, column(rows)) for valid, rows in _columns(layout)))


def _binary(node, out, layout, src, ctx) -> ChannelState:
    ins = [ctx.input_state(v, out) for v in node.inputs[:2]]
    const = ins[0].const & ins[1].const
    val = ops.eval_pointwise(node, [s.val.reshape(ctx.shape(out)) for s in ins]).reshape(-1)
    if node.op_type == "Mul":  # 0 * anything finite is 0
        zero = ins[0].zero | ins[1].zero
        const, val = const | zero, np.where(zero, 0, val).astype(np.float32)
    return ChannelState(const, np.where(const, val, 0).astype(np.float32))


def _depthwise(node, out, layout, src, ctx) -> ChannelState:
    w = const_array(node.inputs[1]).reshape(layout.full, -1).sum(axis=1).astype(np.float64)
    b = const_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None \
        else np.zeros(layout.full)
    state = _agreeing(src, ((valid, (src.val * w[rows] + b[rows]).astype(np.float32))
                            for valid, rows in _columns(layout)))
    state.const &= (src.val == 0) | (not ops.conv_has_padding(node))
    state.val = np.where(state.const, state.val, 0).astype(np.float32)
    return state


def _average_pool(node, out, layout, src, ctx) -> ChannelState:
    if attr(node, "count_include_pad", 0) == 0 or not any(attr(node, "pads") or []):
        return _same(node, out, layout, src, ctx)
    return ChannelState.unknown(ctx.size)


def _resize(node, out, layout, src, ctx) -> ChannelState:
    # interpolation weights sum to one: a constant plane stays that constant
    return _same(node, out, layout, src, ctx)


def _pad(node, out, layout, src, ctx) -> ChannelState:
    """A uniform plane stays uniform when padded with its own value or its edges."""
    if attr(node, "mode", "constant") in ("edge", "reflect", "wrap"):
        return _same(node, out, layout, src, ctx)
    fill = const_array(node.inputs[2]) if len(node.inputs) > 2 and \
        node.inputs[2] is not None else None
    fill = 0.0 if fill is None or fill.size == 0 else float(fill.reshape(-1)[0])
    const = src.const & (src.val == fill)
    return ChannelState(const, np.where(const, src.val, 0).astype(np.float32))


def _concat(node, out, layout, src, ctx) -> ChannelState:
    """Each channel's state comes from the input(s) holding it (all must agree)."""
    size = ctx.size
    const, val, held = np.ones(size, bool), np.zeros(size, np.float32), np.zeros(size, bool)
    for value in node.inputs:
        if value not in ctx.layouts:
            continue
        present = ~ctx.layouts[value].absent
        state = ctx.states.get(value, ChannelState.unknown(size))
        agree = ~held | (state.val == val)
        const &= np.where(present, state.const & agree, True)
        val = np.where(present & ~held, state.val, val)
        held |= present
    const &= held
    return ChannelState(const, np.where(const, val, 0).astype(np.float32))


# ---- slicing functions

def _per_channel_inputs(first: int, last: int) -> ConstantsFn:
    def constants(node, layout) -> list[tuple[int, int]]:
        return [(i, 0) for i in range(first, min(last, len(node.inputs)))
                if node.inputs[i] is not None]
    return constants


def _depthwise_constants(node, layout) -> list[tuple[int, int]]:
    return _per_channel_inputs(1, 3)(node, layout)


def _binary_constants(node, layout) -> list[tuple[int, int]]:
    found = []
    for i, value in enumerate(node.inputs[:2]):
        if value is None or value.const_value is None:
            continue
        dims = list(value.const_value.shape)
        dim = len(dims) + layout.axis
        if dim >= 0 and dims[dim] > 1:
            found.append((i, dim))
    return found


def _slice_depthwise(slicer, node, region) -> None:
    keep = slicer.keep_index(region.layout(node.outputs[0]))
    node.attributes["group"] = ir.AttrInt64("group", int(keep.size))


# ---- multiply-add factors (FLOPs = 2 x MACs, as ``graph_stats`` counts them)

def _conv_macs(node) -> list[tuple[ir.Value, int]] | None:
    """Cout·(Cin/groups)·Πk per output position: every weight axis, the output's batch and
    spatial axes."""
    w, out = node.inputs[1], node.outputs[0]
    wr, orank = rank_of(w), rank_of(out)
    if wr is None or wr < 3 or orank is None:
        return None
    return [(w, a) for a in range(wr)] + [(out, 0)] + [(out, a) for a in range(2, orank)]


def _matmul_macs(node) -> list[tuple[ir.Value, int]] | None:
    """M·K·N: every output axis times the reduced one."""
    a, out = node.inputs[0], node.outputs[0]
    if rank_of(a) is None or rank_of(out) is None:
        return None
    k = 0 if node.op_type == "Gemm" and attr(node, "transA", 0) else rank_of(a) - 1
    return [(out, i) for i in range(rank_of(out))] + [(a, k)]


def _slice_reshape(slicer, node, region) -> None:
    if node.op_type != "Reshape":
        return
    layout = region.layout(node.outputs[0])
    shape = const_array(node.inputs[1]).copy()
    pos = len(shape) + layout.axis
    if shape[pos] > 0:
        shape[pos] = slicer.keep_index(layout).size
        node.replace_input_with(1, new_initializer(slicer.graph, shape, "reshape_shape"))


def _slice_resize(slicer, node, region) -> None:
    if node.op_type != "Resize" or len(node.inputs) < 4 or node.inputs[3] is None:
        return  # scales leave the channel axis alone
    layout = region.layout(node.outputs[0])
    sizes = const_array(node.inputs[3]).copy()
    rank = rank_of(node.inputs[0])
    chan = rank + layout.axis
    axes = attr(node, "axes")
    if axes is not None:
        axes = [int(a) % rank for a in axes]
        if chan not in axes:
            return
        chan = axes.index(chan)
    sizes[chan] = slicer.keep_index(layout).size
    node.replace_input_with(3, new_initializer(slicer.graph, sizes, "resize_sizes"))


def _slice_window(slicer, node, region) -> None:
    slicer.window(node, region.layout(node.inputs[0]))


# ---- the built-in rules

#: ops whose value on a spatially constant input is the same constant
_CONST_POOLS = ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "ReduceMin",
                "MaxPool")


def _register_builtins() -> None:
    for op in ops.UNARY:
        register_rule(op, OpRule("channelwise", ops.unary_layouts, _pointwise))
    for op in ops.BINARY:
        register_rule(op, OpRule("channelwise", ops.binary_layouts, _binary,
                                 constants=_binary_constants))
    register_rule("BatchNormalization", OpRule("channelwise", ops.batchnorm_layouts, _pointwise,
                                               constants=_per_channel_inputs(1, 5)))
    for op in _CONST_POOLS:
        register_rule(op, OpRule("channelwise", ops.pool_layouts, _same))
    register_rule("AveragePool", OpRule("channelwise", ops.pool_layouts, _average_pool))
    for op in ops.RESIZES:
        register_rule(op, OpRule("channelwise", ops.resize_layouts, _resize, _slice_resize))
    register_rule("Transpose", OpRule("channelwise", ops.transpose_layouts, _same))
    register_rule("Pad", OpRule("channelwise", ops.pad_layouts, _pad))
    register_rule("Split", OpRule("channelwise", ops.split_layouts, _same, _slice_window))
    register_rule("Slice", OpRule("channelwise", ops.slice_layouts, _same, _slice_window))
    register_rule("Concat", OpRule("channelwise", ops.concat_layouts, _concat))
    for op in ("Flatten", "Reshape"):
        register_rule(op, OpRule("channelwise", ops.reshape_layouts, _same, _slice_reshape))
    # weight ops: create and consume channels; a depthwise Conv is channel-wise
    register_rule("Conv", OpRule("creates", ops.depthwise_layouts, _depthwise, _slice_depthwise,
                                 ops.weight_source_kind, ops.weight_sink_kind,
                                 constants=_depthwise_constants, macs=_conv_macs))
    register_rule("ConvTranspose", OpRule("creates", source=ops.weight_source_kind,
                                          sink=ops.weight_sink_kind))
    for op in ("MatMul", "Gemm"):
        register_rule(op, OpRule("creates", source=ops.weight_source_kind,
                                 sink=ops.weight_sink_kind, macs=_matmul_macs))


_register_builtins()
