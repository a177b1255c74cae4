"""Loading and saving ONNX files with clear errors and atomic writes (no torch)."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from nnfc.atomic import atomic_file
from nnfc.errors import NnfcError


def load_onnx(path: str | os.PathLike | bytes, check: bool = True) -> onnx.ModelProto:
    """Read (a file, or a serialized model's bytes) and structurally check an ONNX model; one
    NnfcError for anything wrong.

    ``check=False`` skips ``onnx.checker`` (it re-serializes the whole model: about a second for
    ResNet-50) where the caller's own work validates what it reads."""
    data = path if isinstance(path, bytes) else None
    path = Path(source_name(path))
    if data is None and not path.is_file():
        raise NnfcError(f"ONNX file {path} does not exist")
    try:
        model = onnx.load_from_string(data) if data is not None else onnx.load(str(path))
        check_tensor_sizes(model, str(path))
        if check:
            onnx.checker.check_model(model)
        elif not model.graph.node:
            raise ValueError("the graph has no nodes")
    except (DecodeError, onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NnfcError(f"{path} is not a valid ONNX model: {first}") from exc
    return model


#: the most elements one tensor of a model nnfc reads may declare (16 GiB of float32)
MAX_TENSOR_ELEMENTS = 1 << 32


def declared_elements(tensor: onnx.TensorProto) -> int:
    """Elements the tensor's dims declare (ValueError for a negative dim)."""
    n = 1
    for d in tensor.dims:
        if d < 0:
            raise ValueError(f"tensor {tensor.name!r} has a negative dimension {d}")
        n *= d
    return n


def declared_bytes(tensor: onnx.TensorProto) -> int | None:
    """Bytes the tensor's dims and type need as raw data (None: strings, unknown types)."""
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, ValueError, TypeError):
        return None
    if tensor.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return None
    bits = {onnx.TensorProto.INT4: 4, onnx.TensorProto.UINT4: 4}.get(tensor.data_type)
    n = declared_elements(tensor)
    return (n * bits + 7) // 8 if bits else n * itemsize


def check_tensor_sizes(model: onnx.ModelProto, source: str) -> None:
    """Every tensor held in the model (initializers, Constant values, subgraphs) declares at
    most :data:`MAX_TENSOR_ELEMENTS` and holds exactly the data its dims and type declare, so
    nothing downstream allocates what the file only claims (one ValueError naming it)."""
    from onnx.external_data_helper import _get_all_tensors
    for tensor in _get_all_tensors(model):
        n = declared_elements(tensor)
        if n > MAX_TENSOR_ELEMENTS:
            raise ValueError(f"tensor {tensor.name!r} declares {n:,} elements (at most "
                             f"{MAX_TENSOR_ELEMENTS:,})")
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            continue  # sized against its file where it is loaded
        need = declared_bytes(tensor)
        if tensor.HasField("raw_data"):
            have, want = len(tensor.raw_data), need
        else:
            field = onnx.helper.tensor_dtype_to_field(tensor.data_type) if need else None
            if field is None:
                continue
            have = len(getattr(tensor, field))
            want = n * (2 if tensor.data_type in (onnx.TensorProto.COMPLEX64,
                                                  onnx.TensorProto.COMPLEX128) else 1)
            if tensor.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
                want = (n + 1) // 2
        if want is not None and have != want:
            raise ValueError(f"tensor {tensor.name!r} declares {n:,} elements but holds "
                             f"{have:,} {'bytes' if tensor.HasField('raw_data') else 'values'}"
                             f" (needs {want:,})")


def source_name(model: str | os.PathLike | bytes) -> str:
    """How messages name a model given as a file or as serialized bytes."""
    return "<model bytes>" if isinstance(model, bytes) else str(model)


def save_onnx(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Write ``model`` to a temp file beside ``path`` and rename it into place."""
    with atomic_file(path) as tmp:
        onnx.save_model(model, str(tmp))
    return Path(path)


def shapes_only(model: onnx.ModelProto, keep_below: int = 64) -> onnx.ModelProto:
    """A copy of ``model`` whose initializers of ``keep_below`` or more elements keep their
    dims and type but no data: what shape inference and size statistics read, without
    serializing megabytes of weights (small ones stay: shapes, axes, indices)."""
    light = onnx.ModelProto()
    graph = model.graph
    light.CopyFrom(onnx.ModelProto(
        ir_version=model.ir_version, opset_import=model.opset_import,
        producer_name=model.producer_name, domain=model.domain, functions=model.functions))
    light.graph.name = graph.name
    for field in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(light.graph, field).extend(getattr(graph, field))
    for init in graph.initializer:
        n = 1
        for d in init.dims:
            n *= d
        if n < keep_below:
            light.graph.initializer.append(init)
        else:
            light.graph.initializer.add(name=init.name, dims=init.dims,
                                        data_type=init.data_type)
    return light


def count_params(model: onnx.ModelProto) -> int:
    """Number of floating-point weights (initializers of float/float16/double/bfloat16)."""
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
              onnx.TensorProto.BFLOAT16}
    total = 0
    for init in model.graph.initializer:
        if init.data_type in floats:
            n = 1
            for d in init.dims:
                n *= d
            total += n
    return total
