"""Which gates shrink which layer: a static analysis of the gated supernet that turns gate vectors
into per-layer cost features without pruning anything.

Each gate's channel mask is propagated through the supernet graph: a ``Mul`` by a gate input tags
its output with the gate; elementwise ops keep the tag; a depthwise conv keeps its input's tag; a
residual ``Add`` keeps only what both operands share; reshapes, normalizations over channels and
concatenations drop it (conservative). A compute layer (Conv, MatMul/Gemm with constant weights)
then has an *input* tag (its input tensor's) and an *output* tag (the tag its output picks up
through the elementwise chain that follows it). With gate vectors, a tag's active count is the
number of channels where every gate in the tag is 1, and

- MACs of a layer = (active in)·(active out)·k²·Hout·Wout (depthwise: active·k²·Hout·Wout),
- its parameters = (active in)·(active out)·k² (+ active-out biases),
- an intermediate tensor's size = full size · active / channels.

The structure is JSON-serialisable and stored in the predictor, so compiling never re-reads the
supernet to predict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping

import numpy as np
import onnx

from nnfc.compiler.graph_stats import _ELEM_BYTES, infer_shapes

GATE_PREFIX = "gate."
# ops whose output channels follow their (first) data input's channels one to one
_ELEMENTWISE = {"Relu", "Sigmoid", "Clip", "Erf", "Tanh", "HardSigmoid", "HardSwish", "LeakyRelu",
                "Elu", "Selu", "Gelu", "Softplus", "Identity", "Dropout", "Cast", "Div", "Sub",
                "Pow", "Sqrt", "Neg", "Abs", "Exp", "Mul", "Add", "BatchNormalization",
                "PRelu", "Mish", "Where", "Max", "Min"}
# ops that keep the channel axis (for propagation, not for output-tag search)
_CHANNEL_KEEPING = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Pad",
                    "Resize", "ReduceMean", "ReduceMax", "ReduceSum"}
# reshape-like ops that carry a gate vector itself ([C] -> [1,C,1,1])
_GATE_CARRIERS = {"Reshape", "Unsqueeze", "Squeeze", "Cast", "Identity", "Expand"}


@dataclass
class Layer:
    """One compute layer: costs scale with active in/out channels."""

    name: str
    op: str
    in_tag: int             # index into tags (-1: not gated)
    out_tag: int
    in_channels: int
    out_channels: int
    depthwise: bool
    spatial: int            # output positions per channel (Hout·Wout, or token rows)
    kernel: int             # k² (or 1 for MatMul)
    bias: bool


@dataclass
class Tensor:
    tag: int
    channels: int
    full_bytes: int


@dataclass
class CostStructure:
    """Everything needed to turn gate vectors into cost features."""

    gates: list[str]                       # graph input names, order of the bundle
    sizes: list[int]
    tags: list[list[str]] = field(default_factory=list)
    layers: list[Layer] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    fixed_param_bytes: int = 0             # initializers not owned by an analysed layer

    # ---- serialisation
    def to_json(self) -> dict:
        return {"gates": self.gates, "sizes": self.sizes, "tags": self.tags,
                "layers": [asdict(x) for x in self.layers],
                "tensors": [[t.tag, t.channels, t.full_bytes] for t in self.tensors],
                "fixed_param_bytes": self.fixed_param_bytes}

    @classmethod
    def from_json(cls, data: Mapping) -> "CostStructure":
        return cls(list(data["gates"]), list(data["sizes"]), [list(t) for t in data["tags"]],
                   [Layer(**x) for x in data["layers"]],
                   [Tensor(*t) for t in data["tensors"]], int(data["fixed_param_bytes"]))

    # ---- features
    def tag_counts(self, gates: Mapping[str, np.ndarray]) -> np.ndarray:
        """Active channel count per tag, shape [B, n_tags]; gates are [size] or [B, size]."""
        arrays = {k: np.atleast_2d(np.asarray(gates[k]) > 0.5) for k in self.gates}
        batch = max(a.shape[0] for a in arrays.values()) if arrays else 1
        out = np.zeros((batch, len(self.tags)), dtype=np.float64)
        for i, tag in enumerate(self.tags):
            masks = [arrays[g] for g in tag]
            if len({m.shape[1] for m in masks}) == 1:
                out[:, i] = np.logical_and.reduce(masks).sum(axis=1)
            else:  # gates of different sizes share a tensor: the smallest count bounds it
                out[:, i] = np.min([m.sum(axis=1) for m in masks], axis=0)
        # the passes keep one placeholder channel where every channel is off
        return np.maximum(out, 1.0)

    def _active(self, counts: np.ndarray, tag: int, full: int) -> np.ndarray:
        return np.full(counts.shape[0], float(full)) if tag < 0 else counts[:, tag]

    def layer_terms(self, gates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per layer [B, L]: ``macs``, ``params``, ``out_elems``, ``in_elems``, ``active_in``,
        ``active_out`` and ``depthwise`` (bool) for the gates."""
        counts = self.tag_counts(gates)
        b, n = counts.shape[0], len(self.layers)
        macs, params, out_el, in_el, act_in, act_out = (np.zeros((b, n)) for _ in range(6))
        depthwise = np.zeros((b, n), dtype=bool)
        for j, lay in enumerate(self.layers):
            a_in = self._active(counts, lay.in_tag, lay.in_channels)
            a_out = self._active(counts, lay.out_tag, lay.out_channels)
            act_in[:, j], act_out[:, j] = a_in, a_out
            if lay.depthwise:
                a = np.minimum(a_in, a_out)
                act_in[:, j] = act_out[:, j] = a
                depthwise[:, j] = True
                macs[:, j] = a * lay.kernel * lay.spatial
                params[:, j] = a * lay.kernel + (a if lay.bias else 0)
                out_el[:, j] = in_el[:, j] = a * lay.spatial
            else:
                macs[:, j] = a_in * a_out * lay.kernel * lay.spatial
                params[:, j] = a_in * a_out * lay.kernel + (a_out if lay.bias else 0)
                out_el[:, j] = a_out * lay.spatial
                in_el[:, j] = a_in * lay.spatial
        return {"macs": macs, "params": params, "out_elems": out_el, "in_elems": in_el,
                "active_in": act_in, "active_out": act_out, "depthwise": depthwise}

    def memory_terms(self, gates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """[B] arrays: ``param_bytes`` and ``peak_bytes`` (largest intermediate tensor)."""
        counts = self.tag_counts(gates)
        terms = self.layer_terms(gates)
        param_bytes = self.fixed_param_bytes + 4 * terms["params"].sum(axis=1)
        peak = np.zeros(counts.shape[0])
        for t in self.tensors:
            size = t.full_bytes if t.tag < 0 else t.full_bytes * counts[:, t.tag] / t.channels
            peak = np.maximum(peak, size)
        return {"param_bytes": param_bytes, "peak_bytes": peak}

    def activation_ratio(self, gates: Mapping[str, np.ndarray]) -> np.ndarray:
        """Fraction of gated modules that are on, over all gate layers, shape [B]."""
        on = sum(np.atleast_2d(np.asarray(gates[k]) > 0.5).sum(axis=1) for k in self.gates)
        return on / max(1, sum(self.sizes))


def analyse(model: onnx.ModelProto) -> CostStructure:
    """Find every compute layer's in/out gate tags and every tensor's tag in a gated supernet."""
    graph = model.graph
    gate_inputs = [i.name for i in graph.input if i.name.startswith(GATE_PREFIX)]
    shapes = infer_shapes(model, batch=1)
    sizes = []
    for g in gate_inputs:
        dims = shapes.get(g, ([0], 0))[0]
        sizes.append(int(dims[-1]) if dims else 0)
    inits = {i.name: i for i in graph.initializer}
    consts = set(inits)
    for node in graph.node:
        if node.op_type == "Constant":
            consts.update(node.output)
    carriers: dict[str, str] = {g: g for g in gate_inputs}   # tensor -> gate it carries
    tag_ids: dict[frozenset, int] = {}

    def tag_id(tag: frozenset) -> int:
        if not tag:
            return -1
        if tag not in tag_ids:
            tag_ids[tag] = len(tag_ids)
        return tag_ids[tag]

    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def attrs(node):
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def is_compute(node) -> bool:
        if node.op_type == "Conv":
            return len(node.input) > 1 and node.input[1] in inits
        if node.op_type in ("MatMul", "Gemm"):
            return len(node.input) > 1 and node.input[1] in inits
        return False

    def forward(out_tags: dict[str, frozenset]) -> dict[str, frozenset]:
        tags: dict[str, frozenset] = {}
        for node in graph.node:
            op = node.op_type
            data = [i for i in node.input if i and i not in consts and i not in carriers]
            if op in _GATE_CARRIERS and node.input and node.input[0] in carriers:
                carriers[node.output[0]] = carriers[node.input[0]]
                continue
            gate_ins = [carriers[i] for i in node.input if i in carriers]
            if is_compute(node):
                own = out_tags.get(node.output[0], frozenset())
                if node.op_type == "Conv" and _is_depthwise(node, shapes, attrs(node)):
                    own = own | tags.get(node.input[0], frozenset())
                tags[node.output[0]] = own
                continue
            in_tags = [tags.get(i, frozenset()) for i in data]
            if op == "Mul" and gate_ins:
                tags[node.output[0]] = frozenset().union(*in_tags, gate_ins)
            elif op in ("Add", "Sum", "Max", "Min") and len(data) > 1:
                tags[node.output[0]] = frozenset.intersection(*in_tags)
            elif op in _ELEMENTWISE or op in _CHANNEL_KEEPING:
                if op in _CHANNEL_KEEPING and op.startswith("Reduce"):
                    axes = _reduce_axes(node, inits, attrs(node))
                    if axes is None or 1 in axes or -3 in axes:
                        tags[node.output[0]] = frozenset()
                        continue
                tags[node.output[0]] = frozenset().union(*in_tags) if in_tags else frozenset()
            else:
                for out in node.output:
                    tags[out] = frozenset()
        return tags

    def closure_tag(node, tags) -> frozenset:
        """The tag a compute node's output picks up through the elementwise chain after it."""
        found: set = set()
        frontier, seen = [node.output[0]], set()
        while frontier:
            name = frontier.pop()
            if name in seen:
                continue
            seen.add(name)
            for cons in consumers.get(name, []):
                if cons.op_type not in _ELEMENTWISE or is_compute(cons):
                    continue
                data = [i for i in cons.input if i and i not in consts and i not in carriers]
                if cons.op_type == "Add" and len(data) > 1:
                    continue  # a residual add cannot shrink
                if cons.op_type == "Mul" and any(i in carriers for i in cons.input):
                    found.update(carriers[i] for i in cons.input if i in carriers)
                elif cons.op_type == "Mul" and len(data) > 1:
                    # x * s with x gated (e.g. squeeze-excitation): s's channels go with x's
                    for other in data:
                        if other != name:
                            found.update(tags.get(other, frozenset()))
                frontier.extend(cons.output)
        return frozenset(found)

    # pass 1: tags from gate multiplications only; then output tags; pass 2: final tags
    tags = forward({})
    # keyed by output (unique in SSA): node names may be empty or repeated
    out_tags = {n.output[0]: closure_tag(n, tags) for n in graph.node if is_compute(n)}
    tags = forward(out_tags)

    structure = CostStructure(gate_inputs, sizes)
    owned: set[str] = set()
    for node in graph.node:
        if not is_compute(node):
            continue
        a = attrs(node)
        w = list(inits[node.input[1]].dims)
        out_shape = shapes.get(node.output[0], ([], 0))[0]
        in_shape = shapes.get(node.input[0], ([], 0))[0]
        bias = len(node.input) > 2 and node.input[2] in inits
        owned.update(node.input[1:3])
        in_tag = tag_id(tags.get(node.input[0], frozenset()))
        out_tag = tag_id(out_tags.get(node.output[0], frozenset()))
        if node.op_type == "Conv":
            depthwise = _is_depthwise(node, shapes, a)
            cin = in_shape[1] if len(in_shape) > 1 else w[1] * a.get("group", 1)
            spatial = int(np.prod(out_shape[2:])) if len(out_shape) > 2 else 1
            kernel = int(np.prod(w[2:]))
            if depthwise:
                out_tag = tag_id(tags.get(node.output[0], frozenset()))
            structure.layers.append(Layer(node.name or node.output[0], "Conv", in_tag, out_tag,
                                          int(cin), int(w[0]), depthwise, spatial, kernel, bias))
        else:
            trans_b = node.op_type == "Gemm" and a.get("transB", 0)
            k, n = (w[1], w[0]) if trans_b else (w[0], w[1])
            rows = int(np.prod(out_shape[:-1])) if out_shape else 1
            structure.layers.append(Layer(node.name or node.output[0], node.op_type, in_tag,
                                          out_tag, int(k), int(n), False, rows, 1, bias))
    # bias Adds after a MatMul belong to it for parameter counting
    for node in graph.node:
        if node.op_type == "Add":
            owned.update(i for i in node.input if i in inits and len(inits[i].dims) == 1)
    structure.fixed_param_bytes = int(sum(
        int(np.prod(i.dims)) * _ELEM_BYTES.get(i.data_type, 4)
        for name, i in inits.items() if name not in owned))
    # bias vectors of gated MatMuls shrink with the output; count them as layer biases
    for lay, node in zip(structure.layers, [n for n in graph.node if is_compute(n)]):
        if node.op_type == "MatMul" and not lay.bias:
            for cons in consumers.get(node.output[0], []):
                if cons.op_type == "Add" and any(i in inits for i in cons.input):
                    lay.bias = True
    graph_inputs = {i.name for i in graph.input} - set(gate_inputs)
    for name, (shape, etype) in shapes.items():
        if name in inits or name in carriers or name in consts or (
                name.startswith(GATE_PREFIX) and name not in graph_inputs):
            continue
        if not shape or any(d < 0 for d in shape):
            continue
        nbytes = int(np.prod(shape)) * _ELEM_BYTES.get(etype, 4)
        tag = tag_id(tags.get(name, frozenset()))
        channels = _channels_of(shape, tag, tag_ids, sizes, gate_inputs)
        if tag >= 0 and channels is None:
            tag = -1
        structure.tensors.append(Tensor(tag, channels or 1, nbytes))
    structure.tags = [None] * len(tag_ids)  # type: ignore[list-item]
    for tag, i in tag_ids.items():
        structure.tags[i] = sorted(tag, key=gate_inputs.index)
    return structure


def _is_depthwise(node, shapes, a) -> bool:
    group = int(a.get("group", 1))
    if group == 1:
        return False
    in_shape = shapes.get(node.input[0], ([], 0))[0]
    return len(in_shape) > 1 and in_shape[1] == group


def _reduce_axes(node, inits, a):
    if "axes" in a:
        return list(a["axes"])
    if len(node.input) > 1 and node.input[1] in inits:
        return [int(x) for x in onnx.numpy_helper.to_array(inits[node.input[1]]).ravel()]
    return None


def _channels_of(shape, tag, tag_ids, sizes, gate_inputs):
    """The channel count of a tagged tensor: the gate size, found on axis 1 or the last axis."""
    if tag < 0:
        return None
    tag_set = next(t for t, i in tag_ids.items() if i == tag)
    size = sizes[gate_inputs.index(next(iter(tag_set)))]
    if len(shape) > 1 and shape[1] == size:
        return size
    if shape and shape[-1] == size:
        return size
    return None
