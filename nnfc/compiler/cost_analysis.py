"""Build a supernet's :class:`~nnfc.compiler.cost_structure.CostStructure` by pricing the pruning
passes' own plans: the same gate binding and folding, the same region plans
(``nnfc.passes.plan.plan_region``: regions, edits, keep rules), the same constant analysis and
keep decision for every combination of a region's gate bits, the same bypasses
(``cleanup.Bypass``) and the op rules' bias folds and multiply-add factors. Nothing here decides
on its own what a gate removes."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import onnx
import onnx_ir as ir

from nnfc.compiler.cost_structure import (MAX_TABLE_GATES, ChannelSet, CostStructure, Dim, Layer,
                                          Monomial)
from nnfc.compiler.graph_stats import with_batch
from nnfc.errors import NnfcError
from nnfc.passes import (BindGatesPass, FoldGateConstantsPass, PruneError, RemoveUnusedPass,
                         gate_inputs)
from nnfc.passes.cleanup import Bypass, zero_foldable_consumers, zero_foldable_producer
from nnfc.passes.graph_utils import GATE_TAG, fresh_names
from nnfc.passes.layout import Layout
from nnfc.passes.plan import RegionPlan, gate_muls, plan_region
from nnfc.passes.rules import RuleSet, default_rules
from nnfc.passes.shapes import complete_shapes

Key = tuple[ir.Value, int]   # (tensor or constant, non-negative axis)


def analyse(model: onnx.ModelProto, rules: RuleSet | None = None) -> CostStructure:
    """The cost structure of a gated supernet (gate inputs ``gate.<layer>``); ``rules``: the op
    rules the passes prune with (default: ``default_rules()``)."""
    rules = rules if rules is not None else default_rules()
    try:
        found = gate_inputs(model)
        names, sizes = list(found), [int(s) for s in found.values()]
        fixed = complete_shapes(onnx.shape_inference.infer_shapes(with_batch(model, 1),
                                                                  data_prop=True))
        graph_model = ir.from_proto(fixed)
        ones = {n: np.ones(s, np.float32) for n, s in zip(names, sizes)}
        for pass_ in (BindGatesPass(ones), FoldGateConstantsPass(rules), RemoveUnusedPass()):
            pass_(graph_model)
        return _Builder(graph_model, names, sizes, rules).build()
    except PruneError as exc:
        raise NnfcError(f"cannot analyse the supernet's costs: {exc}") from exc


def _positive(value: ir.Value, axis: int) -> int:
    return axis % len(value.shape) if value.shape is not None else axis


def _weights(layout: Layout) -> np.ndarray:
    """Positions each region channel holds in a tensor (0 absent, H·W after a Flatten)."""
    return (layout.positions >= 0).sum(axis=1).astype(np.float64)


class _Builder:
    def __init__(self, model: ir.Model, names: list[str], sizes: list[int], rules: RuleSet):
        self.graph = model.graph
        self.rules = rules.for_graph(model.graph)
        self.structure = CostStructure(names, sizes)
        self.dim_terms: dict[Key, list] = {}
        self.extra_dims: list[Dim] = []     # axes of new constants (Gather indices)
        self.gate_conds: dict[ir.Value, list] = {}
        self.added: list[tuple[Monomial, list[Key] | None]] = []
        self.order = {node: i for i, node in enumerate(self.graph)}
        self.mul_set: dict[ir.Node, int] = {}   # gate Mul -> the set whose slicing it follows
        self.alive: dict[object, list[int]] = {}  # node / constant -> bypasses removing it

    # ---- the plans PruneGatedChannelsPass executes
    def build(self) -> CostStructure:
        done: set[ir.Node] = set()
        with fresh_names(self.graph):
            for gate, muls in gate_muls(self.graph).items():
                size = self.structure.sizes[self.structure.gates.index(gate)]
                for mul, const in muls:
                    if mul in done:
                        continue
                    plan = plan_region(mul, const, size, self.rules)
                    done.add(mul)
                    if plan:
                        done.update(plan.members)
                        self._price(plan)
        return self._finish()

    def _price(self, plan: RegionPlan) -> None:
        region = plan.region
        s = len(self.structure.sets)
        gate_values = plan.gate_values()
        names = sorted({v.metadata_props[GATE_TAG] for v, _ in gate_values},
                       key=self.structure.gates.index)
        table, carry = self._table(plan, gate_values, names)
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
                                              bits, table, plan.keep_rules))
        for value, layout in region.tensors.items():
            self._term((value, _positive(value, layout.axis)), s, _weights(layout))
        for edit in plan.edits():
            value = edit.value
            self._term((value, edit.axis), s, _weights(edit.layout) / edit.groups)
            if edit.sink:  # the bias a fold adds where there was none
                axis = region.sinks[edit.node].new_bias_axis(edit.node)
                cond = _carry_cond(s, carry.get(edit.node, []), table)
                if axis is not None and cond is not None:
                    self.added.append((Monomial(1.0, [], 4, True, cond),
                                       [(edit.node.outputs[0], axis)]))
            tag = value.metadata_props.get(GATE_TAG)
            if tag:
                self.mul_set[edit.node] = s
                self.gate_conds[value] = ["gate", s, names.index(tag),
                                          np.flatnonzero(~edit.layout.absent).tolist()]
        for value, layout in plan.gathers():
            self.extra_dims.append(Dim(float(layout.full), [(s, _weights(layout))]))
            self.added.append((Monomial(1.0, [len(self.extra_dims) - 1], 8, False,
                                        ["pruned", s]), None))

    def _table(self, plan: RegionPlan, gate_values, names: list[str]
               ) -> tuple[np.ndarray, dict[ir.Node, list[list[int]]]]:
        """Removable channels for every combination of the gates' bits, by the passes'
        constant analysis; and per sink and code the channels that carry a non-zero constant."""
        region = plan.region
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
                states = plan.analyze(self.order)
                table[code] = plan.decide_removable(states)
                for sink in region.sinks:
                    st = states.get(sink.inputs[0])
                    rows = carry.setdefault(sink, [[] for _ in range(2 ** k)])
                    if st is not None:
                        rows[code] = np.flatnonzero(st.const & (st.val != 0)).tolist()
        finally:
            for value, const in saved.items():
                value.const_value = const
        return table, carry

    def _term(self, key: Key, s: int, weights: np.ndarray) -> None:
        terms = self.dim_terms.setdefault(key, [])
        if not any(t == s for t, _ in terms):
            terms.append((s, weights))

    def _bypasses(self) -> None:
        """Gate Muls that RemoveIdentityGatesPass bypasses when all off, and what dies then."""
        st = self.structure
        nodes = list(self.graph)
        for gate, muls in gate_muls(self.graph).items():
            for mul, _ in muls:
                bypass = Bypass.of(mul)
                if bypass is None:
                    continue
                b = len(st.bypass)
                st.bypass.append([st.gates.index(gate), self.mul_set.get(mul, -1)])
                dead, constants = bypass.removes(nodes)
                for item in [*dead, *constants]:
                    self.alive.setdefault(item, []).append(b)

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
            factors = self.rules.get(node).macs(node)
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
                u.node.op_type == "Mul" and (
                    zero_foldable_producer(u.node, value, self.rules) is not None
                    or zero_foldable_consumers(u.node, value, self.rules))
                for u in value.uses()):
            return  # its zeros go into its producer or readers: never in a pruned graph
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
        """A weight op's latency-feature record (its rule's ``layer``: Conv, MatMul, Gemm)."""
        if len(node.inputs) < 2 or node.inputs[1] is None:
            return None
        x, out = node.inputs[0], node.outputs[0]
        if x is None or x.shape is None or out.shape is None or not all(
                isinstance(d, int) for d in [*x.shape, *out.shape]):
            return None
        axes = self.rules.get(node).layer(node)
        if axes is None:
            return None

        def ref(key: Key) -> int:
            return dim(key, key[0].shape[key[1]]) if key in self.dim_terms else -1

        return Layer(node.name or out.name, node.op_type, ref((x, axes.in_axis)),
                     ref((out, axes.out_axis)), int(x.shape[axes.in_axis]),
                     int(out.shape[axes.out_axis]), axes.depthwise, axes.spatial, axes.kernel,
                     axes.bias, axes.groups)


def _carry_cond(s: int, rows: list[list[int]], table: np.ndarray) -> list | None:
    """When a folded bias exists: a removed channel carries a constant under its gates' bits.
    The short form (channels carrying when all gates are off) where it says the same."""
    if not any(rows):
        return None
    first = set(rows[0])
    if all(set(np.flatnonzero(table[code])) & (set(row) ^ first) == set()
           for code, row in enumerate(rows)):
        return ["carry", s, rows[0]] if rows[0] else None
    return ["carry", s, sorted({c for row in rows for c in row}), rows]


def _shape(value: ir.Value) -> list | None:
    if value.const_value is not None:
        return list(value.const_value.shape)
    return None if value.shape is None else list(value.shape)
