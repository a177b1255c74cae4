"""Exact size figures of a static ONNX model at batch 1: parameters, FLOPs, parameter bytes and
the largest intermediate tensor (ONNX shape inference; no runtime, no torch).

FLOPs count multiply-adds twice, as each op's rule in ``nnfc.passes.rules`` factors them:
``Conv`` = 2·Cout·(Cin/groups)·kh·kw·Hout·Wout, ``MatMul`` and ``Gemm`` = 2·M·K·N (times any
batch dimensions).
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
    """A copy of ``model`` whose symbolic first input dimensions are fixed to ``batch`` (and
    without its intermediate shapes: they are inferred again at that batch)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    del fixed.graph.value_info[:]
    for value in list(fixed.graph.input) + list(fixed.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
    return fixed


def infer_shapes(model: onnx.ModelProto, batch: int = 1) -> dict[str, tuple[list[int], int]]:
    """Tensor name -> (static shape, elem_type) after shape inference at ``batch``."""
    return _shapes(shape_inference.infer_shapes(with_batch(model, batch), data_prop=True))


def _shapes(inferred: onnx.ModelProto) -> dict[str, tuple[list[int], int]]:
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


def model_flops(model: onnx.ModelProto, rules=None) -> int:
    """2 x the multiply-adds of every op whose rule has a cost (``rules``, default
    ``default_rules()``: Conv, MatMul, Gemm, and any op a user's rule gives ``macs``); unknown
    shapes count 0."""
    import onnx_ir as ir  # the passes import onnx-ir: load only when counting

    from nnfc.passes.rules import default_rules
    graph = ir.from_proto(model).graph
    by_node = (rules if rules is not None else default_rules()).for_graph(graph)
    total = 0
    for node in graph:
        factors = by_node.get(node).macs(node)
        if not factors:
            continue
        sizes = []
        for value, axis in factors:
            shape = value.const_value.shape if value.const_value is not None else value.shape
            dim = shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else None
            sizes.append(dim if isinstance(dim, int) and dim >= 0 else 0)
        total += 2 * int(np.prod(sizes, dtype=np.int64))
    return total


def graph_stats(model: onnx.ModelProto, batch: int = 1, rules=None) -> GraphStats:
    """Parameters, FLOPs and memory figures of a static model at ``batch`` (``rules``: the op
    rules that count multiply-adds, see :func:`model_flops`)."""
    inferred = shape_inference.infer_shapes(with_batch(model, batch), data_prop=True)
    shapes = _shapes(inferred)
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
    flops = model_flops(inferred, rules)
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
