"""Build a supernet's :class:`~nnfc.compiler.cost_structure.CostStructure` from the pruning
passes themselves: the same gate binding and folding, the same channel regions
(``regions.find_region``), the same constant analysis (``channel_state.analyze``) and keep
decision (``keep_rules``), and the per-op rules' sliced constants and multiply-add factors.
Nothing here decides on its own what a gate removes."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import onnx
import onnx_ir as ir

from nnfc.compiler.cost_structure import (MAX_TABLE_GATES, ChannelSet, CostStructure, Dim, Layer,
                                          Monomial)
from nnfc.errors import NnfcError
from nnfc.passes import (BindGatesPass, FoldGateConstantsPass, PruneError, RemoveUnusedPass,
                         gate_inputs)
from nnfc.passes.channel_ops import is_depthwise_conv
from nnfc.passes.channel_state import analyze
from nnfc.passes.cleanup import zero_bypass_adds, zero_foldable_producer
from nnfc.passes.graph_utils import GATE_TAG, attr, fresh_names
from nnfc.passes.keep_rules import KeepRules, removable_channels
from nnfc.passes.layout import Layout
from nnfc.passes.op_rules import (macs_factors, sink_constants, sliced_constants,
                                  source_constants)
from nnfc.passes.prune_channels import gate_axis, gate_muls, region_gates
from nnfc.passes.regions import Region, RegionConflict, find_region

Key = tuple[ir.Value, int]   # (tensor or constant, non-negative axis)


def analyse(model: onnx.ModelProto) -> CostStructure:
    """The cost structure of a gated supernet (gate inputs ``gate.<layer>``)."""
    from nnfc.compiler.graph_stats import with_batch
    try:
        found = gate_inputs(model)
        names, sizes = list(found), [int(s) for s in found.values()]
        fixed = onnx.shape_inference.infer_shapes(with_batch(model, 1), data_prop=True)
        graph_model = ir.from_proto(fixed)
        ones = {n: np.ones(s, np.float32) for n, s in zip(names, sizes)}
        for pass_ in (BindGatesPass(ones), FoldGateConstantsPass(), RemoveUnusedPass()):
            pass_(graph_model)
        return _Builder(graph_model, names, sizes).build()
    except PruneError as exc:
        raise NnfcError(f"cannot analyse the supernet's costs: {exc}") from exc


def _positive(value: ir.Value, axis: int) -> int:
    return axis % len(value.shape) if value.shape is not None else axis


def _weights(layout: Layout) -> np.ndarray:
    """Positions each region channel holds in a tensor (0 absent, H·W after a Flatten)."""
    return (layout.positions >= 0).sum(axis=1).astype(np.float64)


class _Builder:
    def __init__(self, model: ir.Model, names: list[str], sizes: list[int]):
        self.graph = model.graph
        self.structure = CostStructure(names, sizes)
        self.dim_terms: dict[Key, list] = {}
        self.extra_dims: list[Dim] = []     # axes of new constants (Gather indices)
        self.gate_conds: dict[ir.Value, list] = {}
        self.added: list[tuple[Monomial, list[Key] | None]] = []
        self.order = {node: i for i, node in enumerate(self.graph)}
        self.mul_set: dict[ir.Node, int] = {}   # gate Mul -> the set whose slicing it follows
        self.alive: dict[object, list[int]] = {}  # node / constant -> bypasses removing it

    # ---- regions, found exactly as PruneGatedChannelsPass finds them
    def build(self) -> CostStructure:
        done: set[ir.Node] = set()
        gated: dict[ir.Value, bool] = {}
        with fresh_names(self.graph):
            for gate, muls in gate_muls(self.graph).items():
                size = self.structure.sizes[self.structure.gates.index(gate)]
                for mul, const in muls:
                    if mul in done:
                        continue
                    axis = gate_axis(const, mul)
                    if axis is None:
                        continue
                    try:
                        region = find_region(mul.outputs[0], axis, size, gated)
                    except RegionConflict:
                        done.add(mul)
                        continue
                    done.update(region_gates(region, mul))
                    self._add_region(region)
        return self._finish()

    def _add_region(self, region: Region) -> None:
        s = len(self.structure.sets)
        gate_values = self._gate_values(region)
        names = sorted({v.metadata_props[GATE_TAG] for v, _ in gate_values},
                       key=self.structure.gates.index)
        table, carry = self._table(region, gate_values, names)
        bits = []
        for name in names:
            value, layout = next((v, lay) for v, lay in gate_values
                                 if v.metadata_props[GATE_TAG] == name)
            pos = layout.positions
            identity = layout.full == region.size and pos.shape[1] == 1 and np.array_equal(
                pos[:, 0], np.arange(region.size))
            bits.append(None if identity else pos.astype(np.int64))
        self.structure.sets.append(ChannelSet(region.size,
                                              [self.structure.gates.index(n) for n in names],
                                              bits, table, KeepRules.of(region)))
        for value, layout in region.tensors.items():
            self._term((value, _positive(value, layout.axis)), s, _weights(layout))
        for sink, kind in region.sinks.items():
            layout = region.layout(sink.inputs[0])
            index, axis = sink_constants(sink, kind)
            w = _weights(layout) / (attr(sink, "group", 1) if kind == "gconv" else 1)
            self._term((sink.inputs[index], axis), s, w)
            self._carry_bias(sink, kind, s, carry.get(sink, []))
        for source, kind in region.sources.items():
            w = _weights(region.tensors[source.outputs[0]])
            for index, axis in source_constants(source, kind):
                self._term((source.inputs[index], axis), s, w)
        for node in region.nodes:
            out = node.outputs[0]
            if out not in region.tensors and out not in region.cut:
                continue
            layout = region.layout(out)
            for index, axis in sliced_constants(node, layout):
                value = node.inputs[index]
                self._term((value, axis), s, _weights(layout))
                tag = value.metadata_props.get(GATE_TAG)
                if tag:
                    self.mul_set[node] = s
                    self.gate_conds[value] = ["gate", s, names.index(tag),
                                              np.flatnonzero(~layout.absent).tolist()]
        for value, layout in region.cut.items():
            if any(u.node in region.sinks or u.node in region.nodes for u in value.uses()):
                self.extra_dims.append(Dim(float(layout.full), [(s, _weights(layout))]))
                self.added.append((Monomial(1.0, [len(self.extra_dims) - 1], 8, False,
                                            ["pruned", s]), None))

    def _gate_values(self, region: Region) -> list[tuple[ir.Value, Layout]]:
        """Bound gate constants multiplying region tensors, with the layout they gate."""
        found = []
        for node in [*region.nodes, *region.cut_producers]:
            if node.op_type != "Mul":
                continue
            for value in node.inputs:
                if value is not None and value.metadata_props.get(GATE_TAG) \
                        and value.const_value is not None:
                    found.append((value, region.layout(node.outputs[0])))
        return found

    def _table(self, region: Region, gate_values, names: list[str]
               ) -> tuple[np.ndarray, dict[ir.Node, list[int]]]:
        """Removable channels for every combination of the gates' bits, by the passes'
        constant analysis; and per sink the channels that carry a non-zero constant when off."""
        k = len(names)
        combos = range(2 ** k) if k <= MAX_TABLE_GATES else (0, 2 ** k - 1)
        table = np.zeros((2 ** k, region.size), bool)
        carry: dict[ir.Node, list[int]] = {}
        saved = {v: v.const_value for v, _ in gate_values}
        try:
            for code in combos:
                for value, _ in gate_values:
                    bit = (code >> names.index(value.metadata_props[GATE_TAG])) & 1
                    value.const_value = ir.tensor(np.full(tuple(saved[value].shape), bit,
                                                          np.float32))
                states = analyze(region, self.order)
                table[code] = removable_channels(region, states)[0]
                if code == 0:
                    for sink in region.sinks:
                        st = states.get(sink.inputs[0])
                        if st is not None:
                            carry[sink] = np.flatnonzero(st.const & (st.val != 0)).tolist()
        finally:
            for value, const in saved.items():
                value.const_value = const
        return table, carry

    def _carry_bias(self, sink: ir.Node, kind: str, s: int, carry: list[int]) -> None:
        """The bias folding makes when the sink has none (a MatMul: a new ``Add``)."""
        if not carry:
            return
        has_bias = len(sink.inputs) > 2 and sink.inputs[2] is not None
        if kind in ("conv", "gconv", "gemm") and has_bias:
            return
        if kind == "convtranspose":
            return  # only zeros fold into a transposed conv
        out = sink.outputs[0]
        axis = 1 if kind in ("conv", "gconv") else len(out.shape) - 1
        self.added.append((Monomial(1.0, [], 4, True, ["carry", s, carry]), [(out, axis)]))

    def _term(self, key: Key, s: int, weights: np.ndarray) -> None:
        terms = self.dim_terms.setdefault(key, [])
        if not any(t == s for t, _ in terms):
            terms.append((s, weights))

    def _bypasses(self) -> None:
        """Gate Muls that RemoveIdentityGatesPass bypasses when all off, and what dies then."""
        st = self.structure
        nodes = list(self.graph)
        for mul, gate in ((n, v) for n, muls in gate_muls(self.graph).items() for n, v in
                          ((m, c.metadata_props[GATE_TAG]) for m, c in muls)):
            adds = zero_bypass_adds(mul)
            if not adds:
                continue
            b = len(st.bypass)
            st.bypass.append([st.gates.index(gate), self.mul_set.get(mul, -1)])
            dead = {mul, *adds}
            product = mul.outputs[0]

            def gone(use) -> bool:  # an Add's other operand lives on in the Add's place
                return use.node in dead and (use.node not in adds
                                             or use.node.inputs[use.idx] is product)

            for node in reversed(nodes):
                if node in dead or not node.outputs:
                    continue
                if all(not o.is_graph_output() and o.uses() and all(gone(u) for u in o.uses())
                       for o in node.outputs):
                    dead.add(node)
            for node in dead:
                self.alive.setdefault(node, []).append(b)
                for value in node.inputs:
                    if value is not None and value.const_value is not None and all(
                            gone(u) for u in value.uses()):
                        self.alive.setdefault(value, []).append(b)

    # ---- monomials over the graph's constants, tensors and ops
    def _finish(self) -> CostStructure:
        st = self.structure
        index: dict[Key, int] = {}
        self._bypasses()

        def dim(key: Key, full: int) -> int:
            if key not in index:
                index[key] = len(st.dims)
                st.dims.append(Dim(float(full), self.dim_terms[key]))
            return index[key]

        def monomial(factors: Iterable[Key], **kw) -> Monomial | None:
            coef, dims = 1.0, []
            for value, axis in factors:
                shape = _shape(value)
                if shape is None or axis >= len(shape) or not isinstance(shape[axis], int):
                    return None
                if (value, axis) in self.dim_terms:
                    dims.append(dim((value, axis), shape[axis]))
                else:
                    coef *= shape[axis]
            return Monomial(coef, dims, **kw)

        for value in self.graph.initializers.values():
            self._constant(value, monomial)
        for node in self.graph:
            if node.op_type == "Constant" and node.outputs[0].const_value is None:
                t = node.attributes.get("value")
                if t is not None:
                    arr = t.value.numpy()
                    st.params.append(Monomial(float(arr.size), [], arr.dtype.itemsize,
                                              arr.dtype.kind == "f",
                                              alive=self.alive.get(node, [])))
            elif node.op_type == "Constant":
                self._constant(node.outputs[0], monomial)
        for m, keys in self.added:
            if keys is not None:
                found = monomial(keys, elem_bytes=m.elem_bytes, is_float=m.is_float, cond=m.cond)
                if found is not None:
                    found.alive = self.alive.get(keys[0][0].producer(), [])
                    st.params.append(found)
        base = len(st.dims)
        st.dims.extend(self.extra_dims)
        for m, keys in self.added:
            if keys is None:  # Gather indices: dims index extra_dims
                m.dims = [base + d for d in m.dims]
                st.params.append(m)
        fixed_peak = 0.0
        values = [*self.graph.inputs, *(o for n in self.graph for o in n.outputs)]
        for value in values:
            if value.const_value is not None or value.type is None or value.shape is None:
                continue
            m = monomial([(value, a) for a in range(len(value.shape))],
                         elem_bytes=int(value.type.dtype.itemsize))
            if m is None:
                continue
            m.coef *= m.elem_bytes
            m.alive = self.alive.get(value.producer(), [])
            if m.dims or m.alive:
                st.tensors.append(m)
            else:
                fixed_peak = max(fixed_peak, m.coef)
        st.tensors.append(Monomial(fixed_peak, []))
        for node in self.graph:
            factors = macs_factors(node)
            if factors:
                m = monomial([(v, _positive(v, a)) for v, a in factors])
                if m is not None:
                    m.alive = self.alive.get(node, [])
                    st.macs.append(m)
            layer = self._layer(node, dim)
            if layer is not None:
                st.layers.append(layer)
        return st

    def _constant(self, value: ir.Value, monomial) -> None:
        if value.metadata_props.get(GATE_TAG) and any(
                u.node.op_type == "Mul" and zero_foldable_producer(u.node, value) is not None
                for u in value.uses()):
            return  # its zeros go into the producing conv's filters: never in a pruned graph
        dtype = value.const_value.dtype
        shape = list(value.const_value.shape)
        cond = self.gate_conds.get(value)
        if value.metadata_props.get(GATE_TAG) and cond is None:
            cond = ["zeros", self.structure.gates.index(value.metadata_props[GATE_TAG])]
        m = monomial([(value, a) for a in range(len(shape))], elem_bytes=int(dtype.itemsize),
                     is_float=dtype.is_floating_point(), cond=cond)
        if m is not None:
            m.alive = self.alive.get(value, [])
            self.structure.params.append(m)

    def _layer(self, node: ir.Node, dim) -> Layer | None:
        """A weight op's latency-feature record (Conv / MatMul / Gemm with constant weights)."""
        if node.op_type not in ("Conv", "MatMul", "Gemm") or len(node.inputs) < 2 \
                or node.inputs[1] is None or node.inputs[1].const_value is None:
            return None
        x, w, out = node.inputs[0], node.inputs[1], node.outputs[0]
        if x.shape is None or out.shape is None or not all(
                isinstance(d, int) for d in [*x.shape, *out.shape]):
            return None
        wshape = list(w.const_value.shape)
        if node.op_type == "Conv":
            in_axis, out_axis = 1, 1
            spatial, kernel = int(np.prod(out.shape[2:])), int(np.prod(wshape[2:]))
            bias = len(node.inputs) > 2 and node.inputs[2] is not None
        else:
            in_axis = 0 if node.op_type == "Gemm" and attr(node, "transA", 0) else len(x.shape) - 1
            out_axis = len(out.shape) - 1
            spatial, kernel = int(np.prod(out.shape[:-1])), 1
            bias = (len(node.inputs) > 2 and node.inputs[2] is not None) or any(
                u.node.op_type == "Add" and any(i is not None and i.const_value is not None
                                                for i in u.node.inputs) for u in out.uses())
        depthwise = is_depthwise_conv(node)

        def ref(key: Key) -> int:
            return dim(key, key[0].shape[key[1]]) if key in self.dim_terms else -1

        return Layer(node.name or out.name, node.op_type, ref((x, in_axis)), ref((out, out_axis)),
                     int(x.shape[in_axis]), int(out.shape[out_axis]), depthwise, spatial, kernel,
                     bool(bias), 1 if depthwise else int(attr(node, "group", 1)))


def _shape(value: ir.Value) -> list | None:
    if value.const_value is not None:
        return list(value.const_value.shape)
    return None if value.shape is None else list(value.shape)
