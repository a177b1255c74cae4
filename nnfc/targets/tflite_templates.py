"""TFLite subnets derived from one onnx2tf conversion per graph topology (fast android profiling).

Subnets of one factory differ only in channel counts: pruning slices weights and keeps the
graph. onnx2tf (about 3 s a subnet, plus ~9 s to import tensorflow once) would produce the same
TFLite operators for each, with other tensor shapes and weights. So the profiler converts one
subnet per *topology* (op types, wiring and attributes of the static ONNX graph) with onnx2tf and
derives every other subnet of that topology from it:

1. When a template is registered, each constant tensor of its TFLite model is matched to the ONNX
   initializer (or ``Constant``) it was written from: same element count and the same values
   after some transpose of the axes (onnx2tf writes Conv weights OIHW -> OHWI, depthwise weights
   -> 1HWO, MatMul weights transposed, biases as they are). Constants that match nothing
   (onnx2tf's own: transpose permutations, paddings, reduction axes) are kept as they are.
2. A new subnet of the same topology gets the template's flatbuffer with each matched constant
   replaced by the new subnet's initializer at the same graph position, transposed the same way;
   LiteRT then re-infers every other tensor's shape, which is written back into the flatbuffer.

The result is checked against ONNX Runtime by :class:`~nnfc.targets.tflite.TFLiteTarget` like
any conversion; a subnet that cannot be derived (a new topology, a constant onnx2tf computed
rather than copied, a failed check) is converted with onnx2tf and becomes a template itself.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

#: a graph position: (node index, input index); input index -1 is a Constant node's value
Position = tuple[int, int]

#: TFLite TensorType -> numpy dtype (the types a float model's constants use)
_NUMPY = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_,
         7: np.int16, 9: np.int8, 10: np.float64}


def _schema():
    from ai_edge_litert import schema_py_generated
    return schema_py_generated


def topology_key(model: onnx.ModelProto) -> tuple:
    """What must agree for one subnet's TFLite graph to serve another: each node's op, domain,
    attributes (a grouped Conv's ``group`` only as 1 or not) and where each input comes from
    (graph input, initializer of a given rank, or which node's which output)."""
    graph = model.graph
    inits = {i.name: len(i.dims) for i in graph.initializer}
    inputs = {i.name for i in graph.input}
    producer = {out: (k, j) for k, node in enumerate(graph.node)
                for j, out in enumerate(node.output)}
    key = []
    for node in graph.node:
        attrs = []
        for a in node.attribute:
            if a.name == "group":
                attrs.append(("group", a.i == 1))
            elif a.type == onnx.AttributeProto.TENSOR:
                attrs.append((a.name, a.t.data_type, len(a.t.dims)))
            else:
                attrs.append((a.name, onnx.helper.get_attribute_value(a).__repr__()))
        sources = []
        for name in node.input:
            if not name:
                sources.append(("none",))
            elif name in producer:
                sources.append(("node", *producer[name]))
            elif name in inits:
                sources.append(("init", inits[name]))
            elif name in inputs:
                sources.append(("input", name))
            else:
                sources.append(("outer", name))
        key.append((node.op_type, node.domain, tuple(attrs), tuple(sources), len(node.output)))
    outputs = tuple(producer.get(o.name, o.name) for o in graph.output)
    return tuple(key), outputs


def constants(model: onnx.ModelProto) -> dict[Position, np.ndarray]:
    """Every constant a node reads, by graph position: initializers and Constant values."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    out: dict[Position, np.ndarray] = {}
    for k, node in enumerate(graph.node):
        if node.op_type == "Constant" and not node.domain:
            for a in node.attribute:
                if a.name == "value":
                    out[(k, -1)] = numpy_helper.to_array(a.t)
        for j, name in enumerate(node.input):
            if name in inits:
                out[(k, j)] = numpy_helper.to_array(inits[name])
    return out


def _perms(src: tuple[int, ...], dst: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """Axis permutations p with ``src.transpose(p).shape == dst`` (identity and onnx2tf's usual
    ones first); when the ranks differ, only a reshape (None) of the same size."""
    if len(src) != len(dst):
        yield None  # type: ignore[misc]
        return
    usual = [tuple(range(len(src)))]
    if len(src) == 4:
        usual += [(0, 2, 3, 1), (1, 2, 3, 0), (2, 3, 1, 0)]
    elif len(src) == 2:
        usual += [(1, 0)]
    for p in itertools.chain(usual, itertools.permutations(range(len(src)))):
        if tuple(src[i] for i in p) == tuple(dst):
            yield p


def _apply(array: np.ndarray, perm, shape) -> np.ndarray:
    return array.reshape(shape) if perm is None else array.transpose(perm)


@dataclass
class _Link:
    """Where one TFLite constant comes from: ONNX positions holding its values (several when
    they are equal in the template) and the axis permutation (None: a plain reshape)."""

    tensor: int
    positions: list[Position]
    perm: tuple[int, ...] | None


@dataclass
class Template:
    """One converted subnet: its TFLite flatbuffer and how its constants map to ONNX."""

    tflite: bytes
    info: dict = field(default_factory=dict)
    links: list[_Link] = field(default_factory=list)
    dtypes: dict[int, type] = field(default_factory=dict)

    @classmethod
    def build(cls, model: onnx.ModelProto, tflite: bytes, info: dict | None = None
              ) -> "Template":
        """Link each constant of ``tflite`` (onnx2tf's conversion of ``model``) to ONNX."""
        S = _schema()
        fb = S.ModelT.InitFromPackedBuf(tflite, 0)
        sources = constants(model)
        template = cls(tflite, dict(info or {}))
        if len(fb.subgraphs) != 1:
            return template  # control flow: nothing derived, every subnet is converted
        by_size: dict[int, list[Position]] = {}
        for pos, value in sources.items():
            by_size.setdefault(int(value.size), []).append(pos)
        graph = fb.subgraphs[0]
        for index, tensor in enumerate(graph.tensors):
            data = fb.buffers[tensor.buffer].data if tensor.buffer < len(fb.buffers) else None
            dtype = _NUMPY.get(tensor.type)
            if data is None or dtype is None or len(data) == 0:
                continue
            shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else []))
            value = np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype).reshape(shape)
            link = _match(value, sources, by_size.get(int(value.size), []))
            if link is not None:
                template.links.append(_Link(index, *link))
                template.dtypes[index] = dtype
        return template

    def derive(self, model: onnx.ModelProto) -> bytes | None:
        """The template's flatbuffer with ``model``'s constants (same topology) and re-inferred
        tensor shapes; None where this model's constants do not fit the template's links."""
        S = _schema()
        fb = S.ModelT.InitFromPackedBuf(self.tflite, 0)
        graph = fb.subgraphs[0]
        sources = constants(model)
        for link in self.links:
            values = [sources.get(p) for p in link.positions]
            if any(v is None for v in values):
                return None
            first = values[0]
            if any(v.shape != first.shape or not np.array_equal(v, first) for v in values[1:]):
                return None  # the template could not tell these apart, and they differ here
            tensor = graph.tensors[link.tensor]
            if link.perm is None:
                if first.size != int(np.prod(tensor.shape)):
                    return None
                array = first.reshape(tuple(tensor.shape))
            else:
                array = first.transpose(link.perm)
            array = np.ascontiguousarray(array.astype(self.dtypes[link.tensor], copy=False))
            tensor.shape = np.asarray(array.shape, np.int32)
            if tensor.shapeSignature is not None:
                tensor.shapeSignature = np.asarray(array.shape, np.int32)
            fb.buffers[tensor.buffer].data = np.frombuffer(array.tobytes(), np.uint8)
        return _with_inferred_shapes(S, fb)


def _match(value: np.ndarray, sources: dict[Position, np.ndarray],
           candidates: list[Position]) -> tuple[list[Position], tuple | None] | None:
    """The ONNX positions whose constant equals ``value`` after one permutation (cast to its
    dtype), and that permutation; None if there is none."""
    hits: dict[tuple | None, list[Position]] = {}
    for pos in candidates:
        src = sources[pos]
        ints = src.dtype.kind in "iu" and value.dtype.kind in "iu"
        if src.dtype.kind not in "fiub" or (src.dtype.kind != value.dtype.kind and not ints):
            continue
        for perm in _perms(src.shape, value.shape):
            if np.array_equal(_apply(src, perm, value.shape).astype(value.dtype, copy=False),
                              value):
                hits.setdefault(perm, []).append(pos)
                break
    if not hits:
        return None
    perm, positions = next(iter(hits.items()))
    return positions, perm


def _with_inferred_shapes(S, fb) -> bytes | None:
    """Pack ``fb``, let LiteRT infer every tensor's shape from the new constants, write those
    shapes back and pack again; None if LiteRT cannot prepare the model."""
    import flatbuffers
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    size = sum(0 if b.data is None else len(b.data) for b in fb.buffers)

    def pack() -> bytes:
        builder = flatbuffers.Builder(size + (1 << 20))  # room for all: no growing by copies
        builder.Finish(fb.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    first = pack()
    try:
        interp = Interpreter(model_content=first, experimental_op_resolver_type=(
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
        interp.allocate_tensors()
    except (ValueError, RuntimeError):
        return None
    tensors = fb.subgraphs[0].tensors
    changed = False
    for detail in interp.get_tensor_details():
        index = detail["index"]
        if index >= len(tensors):
            continue
        shape = np.asarray(detail["shape"], np.int32)
        tensor = tensors[index]
        if tensor.shape is None or not np.array_equal(tensor.shape, shape):
            tensor.shape = shape
            changed = True
        if tensor.shapeSignature is not None and not np.array_equal(tensor.shapeSignature,
                                                                    shape):
            tensor.shapeSignature = shape
            changed = True
    return pack() if changed else first


class TemplateCache:
    """Templates by (variant, topology), newest first; a variant is one of the files a
    conversion writes (``"float32"``, ``"float16"``)."""

    def __init__(self, limit: int = 4):
        self.limit = limit
        self.templates: dict[tuple, list[Template]] = {}

    def add(self, model: onnx.ModelProto, tflite: bytes, variant: str = "float32",
            info: dict | None = None) -> None:
        """Register onnx2tf's conversion ``tflite`` of ``model`` (static, rewritten ONNX)."""
        found = self.templates.setdefault((variant, topology_key(model)), [])
        found.insert(0, Template.build(model, tflite, info))
        del found[self.limit:]

    def derive(self, model: onnx.ModelProto, variant: str = "float32"
               ) -> Iterator[tuple[bytes, Template]]:
        """Candidate TFLite models for ``model``, one per template of its topology (newest
        first), each with its template; the caller checks each and keeps the first that
        passes."""
        for template in self.templates.get((variant, topology_key(model)), []):
            if not template.links:
                continue
            tflite = template.derive(model)
            if tflite is not None:
                yield tflite, template


def topology_digest(model: onnx.ModelProto) -> str:
    """A short stable name for the model's :func:`topology_key` (the same in every process)."""
    return hashlib.sha256(repr(topology_key(model)).encode()).hexdigest()[:16]


#: the info JSON's record of the sha256 of the template's ONNX and TFLite files
HASHES = "nnfc_sha256"


class TemplateStore(TemplateCache):
    """A :class:`TemplateCache` kept in a directory — per (variant, topology) the converted
    ONNX, its TFLite file and the converter's info — so that later processes (every ``nnfc
    compile`` of the factory) derive their TFLite file instead of converting again. Derived
    files are checked against ONNX Runtime like every conversion, so a stale or damaged entry
    only costs a conversion; a directory that cannot be written only costs the next one."""

    def __init__(self, directory, limit: int = 4):
        super().__init__(limit)
        self.directory = Path(directory)

    def _paths(self, variant: str, model: onnx.ModelProto):
        stem = self.directory / f"{variant}-{topology_digest(model)}"
        return stem.with_suffix(".onnx"), stem.with_suffix(".tflite"), stem.with_suffix(".json")

    def add(self, model: onnx.ModelProto, tflite: bytes, variant: str = "float32",
            info: dict | None = None) -> None:
        from nnfc.atomic import atomic_file
        from nnfc.trust import own_subdir, sha256_file
        super().add(model, tflite, variant, info)
        onnx_path, tflite_path, info_path = self._paths(variant, model)
        try:
            own_subdir(self.directory.parent, self.directory.name, "template store")  # no link
            with atomic_file(onnx_path, suffix=".onnx") as tmp:
                onnx.save_model(model, str(tmp))
            with atomic_file(tflite_path, suffix=".tflite") as tmp:
                tmp.write_bytes(tflite)
            with atomic_file(info_path, suffix=".json") as tmp:  # last: it vouches for both
                tmp.write_text(json.dumps({**(info or {}), HASHES: {
                    "onnx": sha256_file(onnx_path), "tflite": sha256_file(tflite_path)}})
                    + "\n", encoding="utf-8")
        except Exception:  # noqa: BLE001 - a cache: not writing it only costs a conversion
            pass

    def derive(self, model: onnx.ModelProto, variant: str = "float32"
               ) -> Iterator[tuple[bytes, Template]]:
        key = (variant, topology_key(model))
        if key not in self.templates:
            self._load(key, *self._paths(variant, model))
        yield from super().derive(model, variant)

    def _load(self, key: tuple, onnx_path, tflite_path, info_path) -> None:
        if not (onnx_path.is_file() and tflite_path.is_file() and info_path.is_file()):
            return
        from nnfc.jsonfile import read_json
        from nnfc.onnx_io import load_onnx
        from nnfc.trust import verified_member
        try:  # what nnfc runs and converts is checked (type, size, sha256) before it is read
            info = read_json(info_path, max_bytes=16 << 20)
            hashes = info.pop(HASHES)
            for path, kind in ((onnx_path, "onnx"), (tflite_path, "tflite")):
                verified_member(path.parent, path.name, hashes[kind], str(self.directory))
            model = load_onnx(onnx_path, check=False)
            if topology_key(model) != key[1]:
                return
            template = Template.build(model, tflite_path.read_bytes(), info)
        except Exception:  # noqa: BLE001 - a damaged entry: convert as if it were not there
            return
        self.templates[key] = [template]
