"""Semantics-preserving ONNX rewrites that make a model convert cleanly on edge toolchains.

``tokens_after_nhwc``: a ViT patch embedding ``Conv -> Reshape [N, C, H*W] -> Transpose(0, 2, 1)``
becomes ``Conv -> Transpose(0, 2, 3, 1) -> Reshape [N, H*W, C]`` (same values). onnx2tf tracks
NCHW/NHWC by comparing shapes; when ``C == H*W`` (vit-tiny: 16 channels, 16 patches) it picks the
wrong axis and the TFLite model computes garbage. The rewritten form is unambiguous.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _static_shape(model: onnx.ModelProto, name: str) -> list[int] | None:
    for vi in (*model.graph.value_info, *model.graph.output, *model.graph.input):
        if vi.name == name:
            dims = vi.type.tensor_type.shape.dim
            if dims and all(d.HasField("dim_value") for d in dims):
                return [d.dim_value for d in dims]
    return None


def tokens_after_nhwc(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Rewrite patch-embedding token layouts (see module docstring); returns (model, count).

    Needs static shapes (run shape inference first); patterns it can't prove are left alone."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    graph_outputs = {o.name for o in graph.output}
    count = 0
    for node in list(graph.node):
        if node.op_type != "Transpose":
            continue
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        reshape = producer.get(node.input[0])
        if perm != [0, 2, 1] or reshape is None or reshape.op_type != "Reshape":
            continue
        conv = producer.get(reshape.input[0])
        if conv is None or conv.op_type != "Conv" or uses.get(reshape.output[0], 0) != 1 \
                or reshape.output[0] in graph_outputs:
            continue
        conv_shape = _static_shape(model, conv.output[0])
        if conv_shape is None or len(conv_shape) != 4:
            continue
        n, c, h, w = conv_shape
        if _static_shape(model, reshape.output[0]) != [n, c, h * w]:
            continue
        nhwc = f"{conv.output[0]}__nhwc"
        shape_name = f"{node.output[0]}__tokens_shape"
        graph.initializer.append(numpy_helper.from_array(np.array([n, h * w, c], np.int64),
                                                         shape_name))
        to_nhwc = helper.make_node("Transpose", [conv.output[0]], [nhwc], perm=[0, 2, 3, 1],
                                   name=f"{node.name or nhwc}__to_nhwc")
        tokens = helper.make_node("Reshape", [nhwc, shape_name], [node.output[0]],
                                  name=f"{node.name or shape_name}__tokens")
        index = list(graph.node).index(reshape)
        graph.node.remove(reshape)
        graph.node.remove(node)
        graph.node.insert(index, tokens)
        graph.node.insert(index, to_nhwc)
        count += 1
    return model, count
