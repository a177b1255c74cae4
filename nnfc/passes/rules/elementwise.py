"""Element-wise ops: activations (one data input), binary arithmetic (a per-channel constant
operand, ``x·sigmoid(x)``, merges of gated tensors) and BatchNormalization. Each evaluates itself
on per-channel constants in numpy (float64 math, float32 result)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import onnx_ir as ir

from nnfc.passes.channel_state import ChannelState, agreeing, columns
from nnfc.passes.graph_utils import GATE_TAG, attr, const_array, dim_of, is_const, rank_of
from nnfc.passes.layout import Layout
from nnfc.passes.rules.base import GateFlow, OpRule, own_constant, zero_entries

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _gelu(node, x):
    if attr(node, "approximate", "none") == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def _clip(node, x, lo=None, hi=None):
    lo = attr(node, "min", -np.inf) if lo is None else lo
    hi = attr(node, "max", np.inf) if hi is None else hi
    return np.clip(x, lo, hi)


def _alpha(node, default):
    value = attr(node, "alpha")
    return default if value is None else value


#: op -> (f(node, x, *constant inputs), maps 0 to 0 channel by channel)
UNARY: dict[str, tuple[Callable, bool]] = {
    "Relu": (lambda n, x: np.maximum(x, 0), True),
    "Sigmoid": (lambda n, x: 1.0 / (1.0 + np.exp(-x)), False),
    "Tanh": (lambda n, x: np.tanh(x), False),
    "Erf": (lambda n, x: _erf(x), False),
    "Exp": (lambda n, x: np.exp(x), False),
    "Neg": (lambda n, x: -x, False),
    "Abs": (lambda n, x: np.abs(x), False),
    "Sqrt": (lambda n, x: np.sqrt(x), False),
    "Reciprocal": (lambda n, x: 1 / x, False),
    "Identity": (lambda n, x: x, True),
    "Dropout": (lambda n, x, *rest: x, False),
    "LeakyRelu": (lambda n, x: np.where(x < 0, _alpha(n, 0.01) * x, x), True),
    "HardSigmoid": (lambda n, x: np.clip(_alpha(n, 0.2) * x + attr(n, "beta", 0.5), 0, 1), False),
    "HardSwish": (lambda n, x: x * np.clip(x / 6 + 0.5, 0, 1), False),
    "Elu": (lambda n, x: np.where(x < 0, _alpha(n, 1.0) * (np.exp(x) - 1), x), False),
    "Selu": (lambda n, x: attr(n, "gamma", 1.0507) * np.where(
        x < 0, attr(n, "alpha", 1.67326) * (np.exp(x) - 1), x), False),
    "Softplus": (lambda n, x: np.log1p(np.exp(x)), False),
    "Gelu": (_gelu, False),
    "Clip": (_clip, False),
}

#: op -> f(x, y)
BINARY: dict[str, Callable] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power,
    "Max": np.maximum, "Min": np.minimum, "PRelu": lambda a, s: np.where(a < 0, a * s, a),
}
#: binary ops that join two gated operands into one region (a channel goes when off in both)
MERGES = frozenset({"Add", "Sub", "Max", "Min"})


class UnaryRule(OpRule):
    """An activation: same channels in and out; a constant plane maps to a constant plane."""

    role = "channelwise"

    def __init__(self, fn: Callable, zero_preserving: bool = False):
        self.fn, self._zero = fn, zero_preserving

    def evaluate(self, node: ir.Node, args: list) -> np.ndarray:
        x = np.asarray(args[0], dtype=np.float64)
        return _f32(self.fn(node, x, *args[1:]))

    def layouts(self, node, value, layout, gated=None):
        if node.op_type == "Clip" and any(v is not None and not is_const(v)
                                          for v in node.inputs[1:]):
            return None
        return {node.inputs[0]: layout, node.outputs[0]: layout}

    def carries_gate(self, node, data, gated: GateFlow) -> bool:
        return len(data) == 1 and gated(data[0])

    def zero_preserving(self, node) -> bool:
        return self._zero

    def transfer(self, node, out, layout, src, ctx) -> ChannelState:
        extra = [const_array(v) if v is not None else None for v in node.inputs[1:]]
        val = self.evaluate(node, [src.val.reshape(ctx.shape(out)), *extra]).reshape(-1)
        return ChannelState(src.const.copy(), np.where(src.const, val, 0).astype(np.float32))

    def fold(self, node, inputs):
        return inputs[0] if node.op_type == "Identity" else None


class BinaryRule(OpRule):
    """``x op K`` with a per-channel or broadcast constant ``K``; a second data operand joins the
    region for ``Mul`` (``x·sigmoid(x)``) and for merges of gated tensors (an FPN's
    ``lateral + upsample(top)``)."""

    role = "channelwise"

    def __init__(self, fn: Callable):
        self.fn = fn

    def evaluate(self, node: ir.Node, args: list) -> np.ndarray:
        x, y = (np.asarray(a, dtype=np.float64) for a in args[:2])
        return _f32(self.fn(x, y))

    def layouts(self, node, value, layout, gated=None):
        op, axis = node.op_type, layout.axis
        data_inputs = [v for v in node.inputs if v is not None and not is_const(v)]
        if op == "PRelu" and not is_const(node.inputs[1]):
            return None
        if op != "Mul" and len(data_inputs) > 1 and not (
                op in MERGES and gated is not None and all(gated(v) for v in data_inputs)):
            return None  # residual Add of an ungated path: that path needs every channel
        result = {node.outputs[0]: layout}
        for v in data_inputs:
            r = rank_of(v)
            if r is None or r + axis < 0 or dim_of(v, axis) != dim_of(value, axis):
                return None  # a data operand that does not carry the channels
            result[v] = layout
        return result

    def carries_gate(self, node, data, gated: GateFlow) -> bool:
        if node.op_type == "Mul" and any(v is not None and v.metadata_props.get(GATE_TAG)
                                         for v in node.inputs):
            return True
        if node.op_type in MERGES and len(data) > 1:
            return all(gated(v) for v in data)
        if node.op_type == "Mul" and len(data) > 1:  # x·sigmoid(x): zero where x is
            return any(gated(v) for v in data)
        return len(data) == 1 and gated(data[0])

    def transfer(self, node, out, layout, src, ctx) -> ChannelState:
        ins = [ctx.input_state(v, out) for v in node.inputs[:2]]
        const = ins[0].const & ins[1].const
        val = self.evaluate(node, [s.val.reshape(ctx.shape(out)) for s in ins]).reshape(-1)
        if node.op_type == "Mul":  # 0 * anything finite is 0
            zero = ins[0].zero | ins[1].zero
            const, val = const | zero, np.where(zero, 0, val).astype(np.float32)
        return ChannelState(const, np.where(const, val, 0).astype(np.float32))

    def constants(self, node, layout) -> list[tuple[int, int]]:
        found = []
        for i, value in enumerate(node.inputs[:2]):
            if value is None or value.const_value is None:
                continue
            dims = list(value.const_value.shape)
            dim = len(dims) + layout.axis
            if dim >= 0 and dims[dim] > 1:
                found.append((i, dim))
        return found


class BatchNormRule(OpRule):
    """Inference BatchNormalization: per-channel scale, bias, mean and variance."""

    role = "channelwise"

    @staticmethod
    def evaluate(node: ir.Node, args: list) -> np.ndarray:
        x = np.asarray(args[0], dtype=np.float64)
        scale, bias, mean, var = (np.asarray(a, dtype=np.float64) for a in args[1:5])
        shape = [1] * x.ndim
        shape[1] = -1
        eps = attr(node, "epsilon", 1e-5)
        y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
        return _f32(y * scale.reshape(shape) + bias.reshape(shape))

    def layouts(self, node, value, layout, gated=None):
        if layout.axis != 1 - (rank_of(value) or 0) or len([o for o in node.outputs
                                                             if o.uses()]) > 1:
            return None
        if not all(is_const(v) for v in node.inputs[1:5]):
            return None
        return {node.inputs[0]: layout, node.outputs[0]: layout}

    def carries_gate(self, node, data, gated: GateFlow) -> bool:
        return len(data) == 1 and gated(data[0])

    def transfer(self, node, out, layout: Layout, src, ctx) -> ChannelState:
        extra = [const_array(v) if v is not None else None for v in node.inputs[1:]]

        def column(rows):  # per-channel parameters at the region's positions
            args = [src.val.reshape(ctx.shape(out)), *(a[rows] for a in extra[:4])]
            return self.evaluate(node, args).reshape(-1)

        return agreeing(src, ((valid, column(rows)) for valid, rows in columns(layout)))

    def constants(self, node, layout) -> list[tuple[int, int]]:
        return [(i, 0) for i in range(1, min(5, len(node.inputs))) if node.inputs[i] is not None]

    def can_zero_outputs(self, node, size) -> bool:
        """Scale and bias 0 make a channel 0: when it alone uses them (one output read)."""
        scale, bias = node.inputs[1], node.inputs[2]
        return own_constant(scale) and own_constant(bias) and len(
            [o for o in node.outputs if o.uses()]) == 1 and (
            size < 0 or list(scale.const_value.shape) == [size])

    def zero_outputs(self, node, channels) -> bool:
        if not self.can_zero_outputs(node, -1):
            return False
        for value in node.inputs[1:3]:
            zero_entries(value, (np.asarray(channels, np.int64),))
        return True
