"""Static shapes for edge runtimes: fix symbolic input dimensions (the batch) to a number.

TFLite (onnx2tf) and TensorRT plans want every input dimension known; nnfc's exports have a
symbolic batch dimension (``input`` is ``[batch, 3, H, W]``).
"""

from __future__ import annotations

import onnx

from nnfc.errors import NnfcError
from nnfc.onnx_io import shapes_only


def input_shapes(model: onnx.ModelProto) -> dict[str, list[int | str]]:
    """Graph inputs (initializers excluded) -> their dims (ints, or names of symbolic dims)."""
    inits = {i.name for i in model.graph.initializer}
    shapes = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        shapes[inp.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                            for d in dims]
    return shapes


def with_static_batch(model: onnx.ModelProto, batch: int = 1) -> onnx.ModelProto:
    """A copy of ``model`` whose inputs' leading symbolic dimension is ``batch``; intermediate
    and output shapes are re-inferred. Any other symbolic input dimension is an error."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    inits = {i.name for i in fixed.graph.initializer}
    for inp in fixed.graph.input:
        if inp.name in inits:
            continue
        for axis, dim in enumerate(inp.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            if axis != 0:
                raise NnfcError(f"input {inp.name!r} has a symbolic dimension at axis {axis} "
                                f"({dim.dim_param or '?'}); only the batch (axis 0) may be "
                                f"symbolic for an edge target")
            dim.Clear()
            dim.dim_value = batch
    del fixed.graph.value_info[:]
    for out in fixed.graph.output:
        for dim in out.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.Clear()
    try:  # on the graph without its weights' data: the same shapes, no megabytes copied
        inferred = onnx.shape_inference.infer_shapes(shapes_only(fixed), strict_mode=False,
                                                     data_prop=True).graph
    except Exception:  # shape inference is a help for the converters, not a requirement
        return fixed
    fixed.graph.value_info.extend(inferred.value_info)
    for out, found in zip(fixed.graph.output, inferred.output):
        out.CopyFrom(found)
    return fixed
