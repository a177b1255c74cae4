"""Exact size figures of a static ONNX model at batch 1: parameters, FLOPs, parameter bytes and
the largest intermediate tensor (ONNX shape inference; no runtime, no torch).

FLOPs count multiply-adds twice: ``Conv`` = 2·Cout·(Cin/groups)·kh·kw·Hout·Wout, ``MatMul`` and
``Gemm`` = 2·M·K·N (times any batch dimensions).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

_ELEM_BYTES = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2,
               onnx.TensorProto.DOUBLE: 8, onnx.TensorProto.INT64: 8,
               onnx.TensorProto.INT32: 4, onnx.TensorProto.INT8: 1, onnx.TensorProto.UINT8: 1,
               onnx.TensorProto.BOOL: 1, onnx.TensorProto.BFLOAT16: 2}


@dataclass
class GraphStats:
    """Size figures of one model at batch 1."""

    params: int              # float weights' element count
    param_bytes: int         # bytes of every initializer
    flops: int               # 2 x multiply-adds of Conv/MatMul/Gemm
    peak_tensor_bytes: int   # largest intermediate (non-initializer) tensor
    activation_bytes: int    # all intermediate tensors together

    @property
    def memory_mb(self) -> float:
        """Parameters plus the largest intermediate tensor, in MB (1e6 bytes)."""
        return (self.param_bytes + self.peak_tensor_bytes) / 1e6

    def to_json(self) -> dict:
        return {**asdict(self), "memory_mb": self.memory_mb}


def with_batch(model: onnx.ModelProto, batch: int = 1) -> onnx.ModelProto:
    """A copy of ``model`` whose symbolic first input dimensions are fixed to ``batch``."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in list(fixed.graph.input) + list(fixed.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
    return fixed


def infer_shapes(model: onnx.ModelProto, batch: int = 1) -> dict[str, tuple[list[int], int]]:
    """Tensor name -> (static shape, elem_type) after shape inference at ``batch``."""
    inferred = shape_inference.infer_shapes(with_batch(model, batch), data_prop=True)
    shapes: dict[str, tuple[list[int], int]] = {}
    graph = inferred.graph
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        ttype = value.type.tensor_type
        if not ttype.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in ttype.shape.dim]
        shapes[value.name] = (dims, ttype.elem_type)
    for init in graph.initializer:
        shapes[init.name] = (list(init.dims), init.data_type)
    return shapes


def _numel(shape: list[int]) -> int:
    return int(np.prod(shape)) if all(d >= 0 for d in shape) else 0


def node_flops(node: onnx.NodeProto, shapes: dict, attrs: dict | None = None) -> int:
    """2 x multiply-adds of a Conv/MatMul/Gemm node (0 for other ops or unknown shapes)."""
    attrs = attrs if attrs is not None else {a.name: onnx.helper.get_attribute_value(a)
                                              for a in node.attribute}
    if node.op_type == "Conv" and len(node.input) > 1:
        out = shapes.get(node.output[0], ([], 0))[0]
        w = shapes.get(node.input[1], ([], 0))[0]
        if len(w) < 3 or not out:
            return 0
        # weight [Cout, Cin/groups, k...]: Cout·(Cin/g)·Πk per output position
        return 2 * _numel(w) * _numel(out[2:]) * max(1, out[0])
    if node.op_type in ("MatMul", "Gemm"):
        a = shapes.get(node.input[0], ([], 0))[0]
        out = shapes.get(node.output[0], ([], 0))[0]
        if not a or not out:
            return 0
        k = a[-1] if not (node.op_type == "Gemm" and attrs.get("transA", 0)) else a[0]
        return 2 * _numel(out) * max(0, k)
    return 0


def graph_stats(model: onnx.ModelProto, batch: int = 1) -> GraphStats:
    """Parameters, FLOPs and memory figures of a static model at ``batch``."""
    shapes = infer_shapes(model, batch)
    graph = model.graph
    init_names = {i.name for i in graph.initializer}
    params = param_bytes = 0
    for init in graph.initializer:
        n = _numel(list(init.dims))
        param_bytes += n * _ELEM_BYTES.get(init.data_type, 4)
        if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                              onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE):
            params += n
    for node in graph.node:  # Constant nodes carry weights too
        if node.op_type == "Constant" and node.attribute and node.attribute[0].t.dims:
            arr = numpy_helper.to_array(node.attribute[0].t)
            param_bytes += arr.nbytes
            if arr.dtype.kind == "f":
                params += arr.size
    flops = sum(node_flops(n, shapes) for n in graph.node)
    peak = total = 0
    graph_inputs = {i.name for i in graph.input}
    for name, (shape, etype) in shapes.items():
        if name in init_names:
            continue
        nbytes = _numel(shape) * _ELEM_BYTES.get(etype, 4)
        if name not in graph_inputs:
            total += nbytes
        peak = max(peak, nbytes)
    return GraphStats(params, param_bytes, flops, peak, total)
