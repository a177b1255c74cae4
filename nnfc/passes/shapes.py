"""Shapes the passes need: every tensor a region walks through must have a known shape."""

from __future__ import annotations

import onnx


def complete_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with ONNX shape inference run when it carries no intermediate shapes."""
    if not any(i.name for i in model.graph.value_info):
        model = onnx.shape_inference.infer_shapes(model)
    return model
