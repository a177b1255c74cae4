"""Per-op channel maps: how a channel-wise op maps its input's channels to its output's (and back),
which weight ops create or consume channels, and how to evaluate pointwise ops on per-channel
constants. ``op_rules.py`` registers these functions, one rule per op type."""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from nnfc.passes.graph_utils import GATE_TAG, attr, const_array, dim_of, is_const, rank_of
from nnfc.passes.layout import Layout

UNARY = {"Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Neg", "Abs", "Sqrt", "Reciprocal", "Identity",
         "LeakyRelu", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus", "Gelu", "Clip",
         "Dropout"}
BINARY = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "PRelu"}
POOLS = {"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "ReduceMin",
         "MaxPool", "AveragePool"}
#: binary ops that join two gated operands into one region (a channel goes when off in both)
MERGES = {"Add", "Sub", "Max", "Min"}
#: ops that resample the spatial axes only (channel-wise when the channel scale is 1)
RESIZES = {"Resize", "Upsample"}
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gelu(node, x):
    if attr(node, "approximate", "none") == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def eval_pointwise(node: ir.Node, args: list[np.ndarray]) -> np.ndarray:
    """Evaluate a UNARY/BINARY op or BatchNormalization on numpy arrays (float64 math, float32
    result). ``args`` are the node's inputs in order (None for absent optional inputs)."""
    op = node.op_type
    x = np.asarray(args[0], dtype=np.float64)
    if op in BINARY:
        y = np.asarray(args[1], dtype=np.float64)
        fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
              "Pow": np.power, "Max": np.maximum, "Min": np.minimum,
              "PRelu": lambda a, s: np.where(a < 0, a * s, a)}[op]
        return _f32(fn(x, y))
    if op == "BatchNormalization":
        scale, bias, mean, var = (np.asarray(a, dtype=np.float64) for a in args[1:5])
        shape = [1] * x.ndim
        shape[1] = -1
        eps = attr(node, "epsilon", 1e-5)
        y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
        return _f32(y * scale.reshape(shape) + bias.reshape(shape))
    if op == "Clip":
        lo = args[1] if len(args) > 1 and args[1] is not None else attr(node, "min", -np.inf)
        hi = args[2] if len(args) > 2 and args[2] is not None else attr(node, "max", np.inf)
        return _f32(np.clip(x, lo, hi))
    alpha = attr(node, "alpha")
    table = {
        "Relu": lambda: np.maximum(x, 0), "Sigmoid": lambda: _sigmoid(x),
        "Tanh": lambda: np.tanh(x), "Erf": lambda: _erf(x), "Exp": lambda: np.exp(x),
        "Neg": lambda: -x, "Abs": lambda: np.abs(x), "Sqrt": lambda: np.sqrt(x),
        "Reciprocal": lambda: 1 / x, "Identity": lambda: x, "Dropout": lambda: x,
        "LeakyRelu": lambda: np.where(x < 0, (0.01 if alpha is None else alpha) * x, x),
        "HardSigmoid": lambda: np.clip((0.2 if alpha is None else alpha) * x
                                       + attr(node, "beta", 0.5), 0, 1),
        "HardSwish": lambda: x * np.clip(x / 6 + 0.5, 0, 1),
        "Elu": lambda: np.where(x < 0, (1.0 if alpha is None else alpha) * (np.exp(x) - 1), x),
        "Selu": lambda: attr(node, "gamma", 1.0507) * np.where(
            x < 0, attr(node, "alpha", 1.67326) * (np.exp(x) - 1), x),
        "Softplus": lambda: np.log1p(np.exp(x)), "Gelu": lambda: _gelu(node, x),
    }
    return _f32(table[op]())


def is_depthwise_conv(node: ir.Node) -> bool:
    """Conv with one filter per input channel (groups == in channels == out channels)."""
    if node.op_type != "Conv" or not is_const(node.inputs[1]):
        return False
    w = node.inputs[1].const_value
    group = attr(node, "group", 1)
    return group > 1 and w.shape[1] == 1 and w.shape[0] == group


def conv_has_padding(node: ir.Node) -> bool:
    pads = attr(node, "pads") or []
    auto = attr(node, "auto_pad", "NOTSET")
    return any(int(p) != 0 for p in pads) or auto in ("SAME_UPPER", "SAME_LOWER")


def weight_source_kind(node: ir.Node, axis: int) -> str | None:
    """'conv' / 'gconv' (grouped) / 'convtranspose' / 'matmul' / 'gemm' if ``node`` produces channels on ``axis`` (negative) that can be
    sliced out of a constant weight; else None."""
    if node.op_type == "Conv" and axis == -3 and is_const(node.inputs[1]) \
            and rank_of(node.outputs[0]) == 4 and not is_depthwise_conv(node):
        return "conv" if attr(node, "group", 1) == 1 else "gconv"
    if node.op_type == "ConvTranspose" and axis == -3 and attr(node, "group", 1) == 1 \
            and is_const(node.inputs[1]) and rank_of(node.outputs[0]) == 4:
        return "convtranspose"
    if node.op_type == "MatMul" and axis == -1 and is_const(node.inputs[1]) \
            and node.inputs[1].const_value.shape.rank() == 2 and not is_const(node.inputs[0]):
        return "matmul"
    if node.op_type == "Gemm" and axis == -1 and is_const(node.inputs[1]):
        return "gemm"
    return None


def weight_sink_kind(node: ir.Node, index: int, axis: int) -> str | None:
    """'conv' / 'gconv' / 'convtranspose' / 'matmul' / 'gemm' if ``node`` consumes input ``index``'s channels on ``axis``
    through a constant weight whose rows/columns can be sliced; else None."""
    if index != 0:
        return None
    if node.op_type == "Conv" and axis == -3 and is_const(node.inputs[1]) \
            and not is_depthwise_conv(node):
        return "conv" if attr(node, "group", 1) == 1 else "gconv"
    if node.op_type == "ConvTranspose" and axis == -3 and attr(node, "group", 1) == 1 \
            and is_const(node.inputs[1]):
        return "convtranspose"
    if node.op_type == "MatMul" and axis == -1 and is_const(node.inputs[1]) \
            and node.inputs[1].const_value.shape.rank() == 2:
        return "matmul"
    if node.op_type == "Gemm" and axis == -1 and is_const(node.inputs[1]) \
            and not attr(node, "transA", 0):
        return "gemm"
    return None


def is_gated(value: ir.Value, memo: dict[ir.Value, bool]) -> bool:
    """Whether ``value`` is a gate ``Mul``'s output, seen through channel-wise ops and merges of
    gated tensors (an FPN's ``lateral + upsample(top)``)."""
    if value in memo:
        return memo[value]
    memo[value] = False  # cycles cannot happen in a DAG; this also bounds the walk
    node = value.producer()
    result = False
    if node is not None:
        data = [v for v in node.inputs if v is not None and not is_const(v)]
        if node.op_type == "Mul" and any(v is not None and v.metadata_props.get(GATE_TAG)
                                         for v in node.inputs):
            result = True
        elif (node.op_type in MERGES or node.op_type == "Concat") and len(data) > 1:
            result = all(is_gated(v, memo) for v in data)
        elif node.op_type == "Mul" and len(data) > 1:  # x·sigmoid(x): zero where x is
            result = any(is_gated(v, memo) for v in data)
        elif len(data) == 1 and (node.op_type in UNARY or node.op_type in BINARY
                                 or node.op_type in POOLS or node.op_type in RESIZES
                                 or node.op_type in ("BatchNormalization", "Split", "Slice",
                                                     "Transpose", "Pad")
                                 or is_depthwise_conv(node)):
            result = is_gated(data[0], memo)
    memo[value] = result
    return result


def unary_layouts(node: ir.Node, value: ir.Value, layout: Layout, gated=None):
    """Activations and other one-input elementwise ops: same channels in and out."""
    if node.op_type == "Clip" and any(v is not None and not is_const(v)
                                      for v in node.inputs[1:]):
        return None
    return {node.inputs[0]: layout, node.outputs[0]: layout}


def binary_layouts(node: ir.Node, value: ir.Value, layout: Layout,
                   gated: dict[ir.Value, bool] | None = None):
    """Elementwise binary ops: a constant operand is per-channel or broadcast; a second data
    operand joins the region for ``Mul`` (``x·sigmoid(x)``) and for merges of gated tensors."""
    op, axis = node.op_type, layout.axis
    data_inputs = [v for v in node.inputs if v is not None and not is_const(v)]
    if op == "PRelu" and not is_const(node.inputs[1]):
        return None
    if op != "Mul" and len(data_inputs) > 1 and not (
            op in MERGES and gated is not None
            and all(is_gated(v, gated) for v in data_inputs)):
        return None  # residual Add of an ungated path: that path needs every channel
    result = {node.outputs[0]: layout}
    for v in data_inputs:
        r = rank_of(v)
        if r is None or r + axis < 0 or dim_of(v, axis) != dim_of(value, axis):
            return None  # a data operand that does not carry the channels
        result[v] = layout
    return result


def batchnorm_layouts(node: ir.Node, value: ir.Value, layout: Layout, gated=None):
    if layout.axis != 1 - (rank_of(value) or 0) or len([o for o in node.outputs
                                                         if o.uses()]) > 1:
        return None
    if not all(is_const(v) for v in node.inputs[1:5]):
        return None
    return {node.inputs[0]: layout, node.outputs[0]: layout}


def depthwise_layouts(node: ir.Node, value: ir.Value, layout: Layout, gated=None):
    if node.op_type == "Conv" and is_depthwise_conv(node) and layout.axis == -3:
        return {node.inputs[0]: layout, node.outputs[0]: layout}
    return None


def pool_layouts(node: ir.Node, value: ir.Value, layout: Layout, gated=None):
    """Pooling and reductions over axes other than the channel axis."""
    x, out, axis = node.inputs[0], node.outputs[0], layout.axis
    rank = rank_of(x)
    if rank is None:
        return None
    if node.op_type.startswith("Reduce"):
        if value is out and not attr(node, "keepdims", 1):
            return None
        chan = rank + axis
        axes = _reduce_axes(node)
        if axes is None or chan in [a % rank for a in axes]:
            return None
        if not attr(node, "keepdims", 1):  # reduced axes after the channel axis go away
            after = sum(1 for a in axes if a % rank > chan)
            return {x: layout, out: layout.with_axis(axis + after)}
    elif rank + axis != 1:
        return None
    return {x: layout, out: layout}


def reshape_layouts(node: ir.Node, value: ir.Value, layout: Layout, gated=None):
    if value is node.outputs[0]:
        return None  # only entered from the input side
    return _reshape_layout(node, value, layout)


def _chan(value: ir.Value, layout: Layout) -> int | None:
    rank = rank_of(value)
    return None if rank is None or rank + layout.axis < 0 else rank + layout.axis


def resize_layouts(node: ir.Node, value: ir.Value, layout: Layout, gated=None
                   ) -> dict[ir.Value, Layout] | None:
    """Resize/Upsample that leaves the channel axis alone (scale 1 or size = channels)."""
    x, out = node.inputs[0], node.outputs[0]
    chan = _chan(x, layout)
    if chan is None or value not in (x, out) or (
            attr(node, "coordinate_transformation_mode", "") == "tf_crop_and_resize"):
        return None
    axes = attr(node, "axes")
    rank = rank_of(x)
    if axes is not None:
        axes = [int(a) % rank for a in axes]
        if chan not in axes:
            return {x: layout, out: layout}
        chan = axes.index(chan)
    scale_index, size_index = (1, None) if node.op_type == "Upsample" else (2, 3)
    scales = const_array(node.inputs[scale_index]) if len(node.inputs) > scale_index else None
    sizes = const_array(node.inputs[size_index]) if size_index is not None \
        and len(node.inputs) > size_index else None
    if scales is None and node.op_type == "Upsample":
        scales = attr(node, "scales")
    if scales is not None and len(scales) > chan and float(scales[chan]) == 1.0:
        return {x: layout, out: layout}
    if sizes is not None and len(sizes) > chan and int(sizes[chan]) == layout.full:
        return {x: layout, out: layout}
    return None


def split_sizes(node: ir.Node, total: int) -> list[int] | None:
    """Sizes of a Split's outputs along its axis (``total`` long), or None when not static."""
    split = const_array(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] is not None \
        else attr(node, "split")
    n = len(node.outputs)
    if split is not None:
        return [int(s) for s in split]
    step = -(-total // n)  # opset 18: the last chunk may be smaller
    return [min(step, total - i * step) for i in range(n)]


def split_layouts(node: ir.Node, value: ir.Value, layout: Layout, gated=None
                  ) -> dict[ir.Value, Layout] | None:
    x = node.inputs[0]
    chan = _chan(x, layout)
    if chan is None or attr(node, "axis", 0) % rank_of(x) != chan:
        return None
    total = dim_of(x, layout.axis) if value is not x else layout.full
    sizes = split_sizes(node, total) if total is not None else None
    if sizes is None or sum(sizes) != total:
        return None
    offsets = np.cumsum([0] + sizes)
    if value is not x:
        j = list(node.outputs).index(value)
        return {x: layout.shifted(int(offsets[j]), total), value: layout}
    return _parts(x, layout, node.outputs, offsets)


def _parts(whole: ir.Value, layout: Layout, parts, offsets: np.ndarray, alone: bool = False
           ) -> dict[ir.Value, Layout] | None:
    """``whole``'s layout and each part's window of it (parts holding no region channel are
    left out). ``alone``: a part that another ``Concat`` also reads makes it None (see
    concat_layouts)."""
    result = {whole: layout}
    for part, start, stop in zip(parts, offsets[:-1], offsets[1:]):
        window = layout.window(int(start), int(stop))
        if not window.absent.all():
            if alone and any(u.node.op_type == "Concat" and u.node is not whole.producer()
                             for u in part.uses()):
                return None
            result[part] = window
    return result


def slice_window(node: ir.Node, chan: int, rank: int, total: int) -> tuple[int, int] | None:
    """``(start, stop)`` a step-1 Slice (opset >= 10) keeps of axis ``chan``, or None."""
    args = [const_array(v) if v is not None else None for v in node.inputs[1:5]]
    starts, ends = args[0], args[1]
    if starts is None or ends is None or len(node.inputs) < 3:
        return None
    axes = args[2] if len(args) > 2 and args[2] is not None else np.arange(len(starts))
    steps = args[3] if len(args) > 3 and args[3] is not None else np.ones(len(starts), np.int64)
    if len(node.inputs) > 3 and node.inputs[3] is not None and args[2] is None:
        return None
    if len(node.inputs) > 4 and node.inputs[4] is not None and args[3] is None:
        return None
    axes = [int(a) % rank for a in axes]
    if chan not in axes:
        return 0, total
    i = axes.index(chan)
    if int(steps[i]) != 1:
        return None
    start, stop, _ = slice(int(starts[i]), int(ends[i])).indices(total)
    return start, max(start, stop)


def slice_layouts(node: ir.Node, value: ir.Value, layout: Layout, gated=None
                  ) -> dict[ir.Value, Layout] | None:
    x, out = node.inputs[0], node.outputs[0]
    chan = _chan(x, layout)
    total = layout.full if value is x else dim_of(x, layout.axis)
    if chan is None or total is None:
        return None
    window = slice_window(node, chan, rank_of(x), total)
    if window is None:
        return None
    if value is out:
        return {x: layout.shifted(window[0], total), out: layout}
    part = layout.window(*window)
    return {x: layout} if part.absent.all() else {x: layout, out: part}


def transpose_layouts(node: ir.Node, value: ir.Value, layout: Layout, gated=None
                      ) -> dict[ir.Value, Layout] | None:
    """The channel axis moves where the permutation puts it (NHWC <-> NCHW)."""
    x, out = node.inputs[0], node.outputs[0]
    rank = rank_of(value)
    if rank is None:
        return None
    perm = attr(node, "perm")
    perm = list(range(rank))[::-1] if perm is None else [int(p) for p in perm]
    chan = rank + layout.axis
    if value is x:
        return {x: layout, out: layout.with_axis(perm.index(chan) - rank)}
    return {x: layout.with_axis(perm[chan] - rank), out: layout}


def pad_amounts(node: ir.Node, rank: int) -> np.ndarray | None:
    """Pads as ``[rank, 2]`` (begin, end) per axis, or None when not constant."""
    pads = const_array(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] is not None \
        else attr(node, "pads")
    if pads is None:
        return None
    pads = np.asarray(pads, np.int64).reshape(2, -1).T
    axes = const_array(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] is not None \
        else None
    if len(node.inputs) > 3 and node.inputs[3] is not None and axes is None:
        return None
    full = np.zeros((rank, 2), np.int64)
    full[[int(a) % rank for a in axes] if axes is not None else list(range(len(pads)))] = pads
    return full


def pad_layouts(node: ir.Node, value: ir.Value, layout: Layout, gated=None
                ) -> dict[ir.Value, Layout] | None:
    """Pad of the spatial axes only (the channel axis keeps its size)."""
    x, out = node.inputs[0], node.outputs[0]
    rank = rank_of(value)
    pads = pad_amounts(node, rank) if rank is not None else None
    if pads is None or np.any(pads[rank + layout.axis] != 0):
        return None
    if len(node.inputs) > 2 and node.inputs[2] is not None and not is_const(node.inputs[2]):
        return None
    return {x: layout, out: layout}


def concat_layouts(node: ir.Node, value: ir.Value, layout: Layout, gated=None
                   ) -> dict[ir.Value, Layout] | None:
    """From an input: its channels sit at an offset in the output. From the output: each input
    holds the window of the output's channels it contributed (reached backwards)."""
    rank = rank_of(value)
    out = node.outputs[0]
    if rank is None or (value is not out and list(node.inputs).count(value) != 1):
        return None
    if attr(node, "axis") % rank != rank + layout.axis:
        return None
    sizes = [dim_of(v, layout.axis) for v in node.inputs]
    if any(s is None for s in sizes):
        return None
    offsets = np.cumsum([0] + sizes)
    if value is out:
        if len(set(node.inputs)) != len(node.inputs):
            return None
        # a part another Concat also reads (DenseNet's features feed every later Concat) keeps
        # its channels: cut here rather than walk the whole block
        return _parts(out, layout, node.inputs, offsets, alone=True)
    offset = int(offsets[list(node.inputs).index(value)])
    return {value: layout, out: layout.shifted(offset, int(offsets[-1]))}


def _reshape_layout(node: ir.Node, value: ir.Value, layout: Layout
                    ) -> dict[ir.Value, Layout] | None:
    """Flatten/Reshape that only drops or adds size-1 dims after the channel axis, or a Flatten
    that merges the channel axis with the (static) dims after it."""
    out = node.outputs[0]
    if value.shape is None or out.shape is None:
        return None
    rank = len(value.shape)
    chan = rank + layout.axis
    trailing = [value.shape[i] for i in range(chan + 1, rank)]
    if not all(isinstance(d, int) for d in trailing):
        return None
    inner = int(np.prod(trailing)) if trailing else 1
    if node.op_type == "Flatten" and attr(node, "axis", 1) == chan and inner > 1:
        return {value: layout, out: layout.flattened(inner, -1)}
    if node.op_type == "Reshape" and inner > 1 and len(out.shape) == chan + 1 \
            and out.shape[chan] == layout.full * inner \
            and list(out.shape)[:chan] == list(value.shape)[:chan]:
        return {value: layout, out: layout.flattened(inner, -1)}  # a Flatten written as Reshape
    if inner != 1:
        return None
    out_dims = list(out.shape)
    if layout.full not in out_dims:
        return None
    pos = len(out_dims) - 1 - out_dims[::-1].index(layout.full)
    if any(d != 1 for d in out_dims[pos + 1:]):
        return None
    if node.op_type == "Reshape":
        shape = const_array(node.inputs[1])
        if shape is None or len(shape) != len(out_dims):
            return None
    return {value: layout, out: layout.with_axis(pos - len(out_dims))}


def _reduce_axes(node: ir.Node) -> list[int] | None:
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = const_array(node.inputs[1])
        return None if axes is None else [int(a) for a in axes]
    return attr(node, "axes")
