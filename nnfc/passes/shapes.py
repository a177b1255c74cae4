"""Shapes the passes need: a region walks only through tensors whose shapes are known, so a tensor
without one would silently keep every channel behind it.

:func:`complete_shapes` fills them in: ONNX shape inference first; where it stops (a ``Reshape``
whose target is computed at run time, ``Shape → Cast → Slice → Concat → Reshape``; an
``com.microsoft`` op), onnxruntime's symbolic shape inference; where that fails too, one run of
the model in onnxruntime on a probe input (zeros, gates all on, symbolic dims 1) records every
missing shape. :func:`unshaped` names what is still missing; ``PruneGatedChannelsPass`` refuses a
model with such tensors rather than prune part of it.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_ir as ir

logger = logging.getLogger("nnfc")


def _shaped_names(model: onnx.ModelProto) -> set[str]:
    """Tensors with a shape whose every dim has a value or a name (a symbolic batch; not the
    ``unk__<n>`` names ONNX inference gives a dim it could not infer)."""
    graph = model.graph
    return {v.name for v in [*graph.value_info, *graph.input, *graph.output]
            if v.type.tensor_type.HasField("shape") and all(
                d.HasField("dim_value") or (d.HasField("dim_param")
                                            and not d.dim_param.startswith("unk__"))
                for d in v.type.tensor_type.shape.dim)} | {i.name for i in graph.initializer}


def _needed(model: onnx.ModelProto) -> list[str]:
    """Node outputs some node or the graph reads (Constant outputs are constants)."""
    graph = model.graph
    read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    return [name for node in graph.node if node.op_type != "Constant"
            for name in node.output if name and name in read]


def _missing(model: onnx.ModelProto) -> list[str]:
    shaped = _shaped_names(model)
    return [name for name in _needed(model) if name not in shaped]


def complete_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with a shape for every tensor the passes may walk through (see module doc)."""
    if not any(i.name for i in model.graph.value_info):
        model = onnx.shape_inference.infer_shapes(model)
    if not _missing(model):
        return model
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
        symbolic = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception as exc:  # it refuses some graphs: the probe run is next
        logger.debug("symbolic shape inference failed: %s", exc)
        symbolic = None
    if symbolic is not None and len(_missing(symbolic)) < len(_missing(model)):
        model = symbolic
    missing = _missing(model)
    if missing:
        model = _probe(model, missing)
    return model


def _probe(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """Record the shapes of ``names`` from one onnxruntime run on a probe input."""
    import onnxruntime as ort
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    feeds = {}
    inits = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        ttype = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in ttype.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type)
        fill = 1 if inp.name.startswith("gate.") else 0
        feeds[inp.name] = np.full(dims, fill, dtype)
    try:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(probe.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        values = session.run(names, feeds)
    except Exception as exc:  # the pass refuses the model, naming a tensor without shape
        logger.debug("probe run for shapes failed: %s", exc)
        return model
    done = onnx.ModelProto()
    done.CopyFrom(model)
    for name, value in zip(names, values):
        arr = np.asarray(value)
        done.graph.value_info.append(onnx.helper.make_tensor_value_info(
            name, onnx.helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape)))
    return done


def unshaped(graph: ir.Graph) -> list[ir.Value]:
    """Node outputs that something reads but whose shape is unknown."""
    return [out for node in graph if node.op_type != "Constant" for out in node.outputs
            if out.shape is None and out.const_value is None
            and (out.uses() or out.is_graph_output())]
