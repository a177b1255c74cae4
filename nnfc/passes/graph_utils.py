"""Small helpers over onnx-ir graphs shared by the passes."""

from __future__ import annotations

import contextlib

import numpy as np
import onnx_ir as ir

#: metadata key set on a constant that carries (part of) a bound gate vector
GATE_TAG = "nnfc.gate"


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's constant contents as numpy, or None when it is not a constant."""
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


def is_const(value: ir.Value | None) -> bool:
    return value is not None and value.const_value is not None


def new_initializer(graph: ir.Graph, array: np.ndarray, base: str,
                    tag: str | None = None) -> ir.Value:
    """Register a new initializer with a unique name derived from ``base``."""
    name = _unique_name(graph, base)
    value = ir.Value(name=name, shape=ir.Shape(array.shape),
                     type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                     const_value=ir.Tensor(np.ascontiguousarray(array), name=name))
    if tag:
        value.metadata_props[GATE_TAG] = tag
    graph.register_initializer(value)
    return value


_NAMES = "nnfc.names"


@contextlib.contextmanager
def fresh_names(graph: ir.Graph):
    """Within one pass: the graph's taken names, collected once and dropped at the end (other
    passes may add values in between, so no cache outlives the pass)."""
    graph.meta.pop(_NAMES, None)
    try:
        yield
    finally:
        graph.meta.pop(_NAMES, None)


def _unique_name(graph: ir.Graph, base: str) -> str:
    taken = graph.meta.get(_NAMES)
    if taken is None:
        taken = {v.name for v in graph.initializers.values()}
        for node in graph:
            taken.update(v.name for v in node.outputs if v.name)
        taken.update(v.name for v in graph.inputs)
        graph.meta[_NAMES] = taken
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def attr(node: ir.Node, name: str, default=None):
    """An attribute's Python value, or ``default``."""
    a = node.attributes.get(name)
    return default if a is None else a.value


def rank_of(value: ir.Value) -> int | None:
    return None if value.shape is None else len(value.shape)


def dim_of(value: ir.Value, axis: int) -> int | None:
    """Static size of ``axis`` (negative allowed), or None."""
    if value.shape is None:
        return None
    d = value.shape[axis]
    return d if isinstance(d, int) else None
