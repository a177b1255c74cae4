"""nnfc's rule set: one rule object per op family, keyed by op type (and opset range)."""

from __future__ import annotations

from nnfc.passes.rules.base import RuleSet
from nnfc.passes.rules.conv import ConvRule, ConvTransposeRule
from nnfc.passes.rules.fused_conv import FusedConvRule
from nnfc.passes.rules.elementwise import BINARY, UNARY, BatchNormRule, BinaryRule, UnaryRule
from nnfc.passes.rules.matmul import GemmRule, MatMulRule
from nnfc.passes.rules.pooling import PoolRule
from nnfc.passes.rules.reshape import ReshapeRule, ShapeOnlyRule, SqueezeRule, TransposeRule
from nnfc.passes.rules.resample import PadRule, ResizeRule
from nnfc.passes.rules.windows import ConcatRule, SliceRule, SplitRule

POOLS = ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "ReduceMin",
         "MaxPool", "AveragePool")


def default_rules() -> RuleSet:
    """A fresh copy of nnfc's rules (add to it freely: other rule sets are not affected)."""
    rules = RuleSet()
    for op, (fn, zero_preserving) in UNARY.items():
        rules.add(op, UnaryRule(fn, zero_preserving))
    for op, fn in BINARY.items():
        rules.add(op, BinaryRule(fn))
    rules.add("BatchNormalization", BatchNormRule())
    pool = PoolRule()
    for op in POOLS:
        rules.add(op, pool)
    resize = ResizeRule()
    rules.add("Resize", resize, opsets=(10, None))
    rules.add("Upsample", resize, opsets=(7, 9))  # deprecated at opset 10
    rules.add("Pad", PadRule())
    rules.add("Transpose", TransposeRule())
    rules.add("Concat", ConcatRule())
    rules.add("Split", SplitRule())
    rules.add("Slice", SliceRule(), opsets=(10, None))  # starts/ends as inputs
    reshape = ReshapeRule()
    rules.add("Flatten", reshape)
    rules.add("Reshape", reshape)
    squeeze = SqueezeRule()
    rules.add("Squeeze", squeeze)
    rules.add("Unsqueeze", squeeze)
    shape_only = ShapeOnlyRule()
    rules.add("Cast", shape_only)
    rules.add("Expand", shape_only)
    rules.add("Conv", ConvRule())
    rules.add("FusedConv", FusedConvRule(), domain="com.microsoft")  # ORT's Conv + activation
    rules.add("ConvTranspose", ConvTransposeRule())
    rules.add("MatMul", MatMulRule())
    rules.add("Gemm", GemmRule())
    return rules
