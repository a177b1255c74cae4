"""Pass: physically remove gated-off channels.

For every bound gate (a constant tagged ``nnfc.gate`` that a ``Mul`` consumes) the pass plans the
channel region (``plan.py``: the region from ``regions.py``, its edits from the op rules), works
out which channels carry nothing but a constant into the region's sinks (``plan.analyze``), folds
those constants into the sinks' biases and executes the plan's edits for the channels that go.
Channels the pass cannot prove removable are kept (their gate stays as a constant ``Mul``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult

from nnfc.passes.channel_state import ChannelState
from nnfc.passes.errors import GatePreconditionError, PruneError
from nnfc.passes.gate_tags import identify_gates, require_gates_found
from nnfc.passes.graph_utils import const_array, fresh_names
from nnfc.passes.plan import (Decision, RegionPlan, gate_muls, gate_tag, off_channels,
                              plan_region)
from nnfc.passes.rules import OpRule, RuleSet, default_rules
from nnfc.passes.shapes import unshaped
from nnfc.passes.slicer import Slicer


@dataclass
class GateReport:
    """What happened to one gate: sizes before/after and anything left in place."""

    gate: str
    size: int
    active: int
    kept: int = 0
    notes: list[str] = field(default_factory=list)


class PruneGatedChannelsPass(InPlacePass):
    """Remove every channel whose gate is 0 (see module doc); ``reports`` then says, per gate,
    what was kept and why. Fails (:class:`PruneError`) when a bound gate with zeros cannot be
    found or a graph around a gate cannot be handled, naming the op. ``rules``: the op rules
    (default: ``default_rules()``)."""

    def __init__(self, rules: RuleSet | None = None):
        super().__init__()
        self.rules = rules if rules is not None else default_rules()
        self.reports: list[GateReport] = []

    def requires(self, model: ir.Model) -> None:
        require_gates_found(model, identify_gates(model))
        missing = unshaped(model.graph)
        if missing:  # a region would stop there and keep every channel: refuse instead
            value = missing[0]
            node = value.producer()
            others = f" and {len(missing) - 1} other tensor(s)" if len(missing) > 1 else ""
            raise GatePreconditionError(
                f"tensor {value.name!r} (output of {node.op_type} {node.name or '(unnamed)'})"
                f"{others} without a shape: pruning needs every tensor's shape (apply_gates "
                "computes them: nnfc.passes.shapes.complete_shapes)")

    def call(self, model: ir.Model) -> PassResult:
        with fresh_names(model.graph):
            self.reports = _Pruning(model.graph, self.rules).run()
        modified = any(r.kept < r.size for r in self.reports)
        return PassResult(model, modified=modified)


def _at(gate: str, node: ir.Node | None, step: Callable[[], object]):
    """Run one step of the pruning of ``gate`` about ``node``; an unexpected error becomes a
    PruneError naming both."""
    try:
        return step()
    except PruneError:
        raise
    except Exception as exc:
        where = f" at {node.op_type} node {node.name or '(unnamed)'}" if node is not None else ""
        raise PruneError(f"cannot prune around gate {gate}{where}: "
                         f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc


class _Pruning:
    def __init__(self, graph: ir.Graph, rules: RuleSet):
        self.graph, self.rules = graph, rules.for_graph(graph)
        self.order: dict[ir.Node, int] = {}

    def run(self) -> list[GateReport]:
        muls_by_gate = gate_muls(self.graph)
        reports = {gate: GateReport(gate, const_array(muls[0][1]).size,
                                    int(const_array(muls[0][1]).sum()))
                   for gate, muls in muls_by_gate.items()}
        done: set[ir.Node] = set()
        for gate, muls in muls_by_gate.items():
            report = reports[gate]
            for mul, const in muls:
                if mul in done:
                    continue
                plan = _at(gate, mul, lambda: plan_region(mul, const, report.size, self.rules))
                if not plan:
                    report.kept = report.size
                    report.notes.append(f"{mul.name}: {plan.reason}; kept" if plan.node is mul
                                        else f"all kept: {plan.reason}")
                    done.add(mul)
                    continue
                done.update(plan.members)
                self._prune(gate, plan, reports)
        return list(reports.values())

    def _prune(self, gate: str, plan: RegionPlan, reports: dict[str, GateReport]) -> None:
        region = plan.region
        if any(n not in self.order for n in (*region.nodes, *region.cut_producers)):
            self.order = {node: i for i, node in enumerate(self.graph)}
        offs = {m: off_channels(m) for m in plan.members}  # before slicing changes the gates
        states = _at(gate, plan.members[0], lambda: plan.analyze(self.order))
        decision = plan.decide(states)
        if decision.keep.size < region.size:
            self._execute(gate, plan, decision, states)
        drop = decision.drop
        for member in plan.members:
            member_report = reports[gate_tag(member)]
            out = member.outputs[0]
            if out in region.tensors:  # the member gate's own entries that stay
                layout = region.tensors[out]
                kept_at = layout.keep_index(drop) if drop.size else np.arange(layout.full)
                kept = kept_at.size
                off_kept = np.intersect1d(offs[member], kept_at)
                owner = layout.holders()
            else:
                kept, off_kept, owner = member_report.size, offs[member], None
            member_report.kept = max(member_report.kept, kept)
            if off_kept.size:
                reasons = sorted({decision.why.get(int(owner[c]) if owner is not None else -1,
                                                   "needed whole elsewhere") for c in off_kept})
                member_report.notes.append(
                    f"{off_kept.size} gated-off channel(s) kept: {'; '.join(reasons)}")
            if member is not plan.members[0]:
                member_report.notes.append(f"pruned together with {gate} (merged tensors)")
        if region.cut:
            reports[gate].notes.append(f"{len(region.cut)} tensor(s) needed whole elsewhere "
                                       "(residual/concat/output) keep their channels there")

    def _execute(self, gate: str, plan: RegionPlan, decision: Decision,
                 states: dict[ir.Value, ChannelState]) -> None:
        """Fold constants into sinks and execute the plan's edits for ``decision``."""
        region, graph = plan.region, self.graph
        slicer = Slicer(graph, decision.drop)
        folded = np.arange(region.size) if decision.placeholder else decision.drop
        for edit in plan.edits():
            rule = region.sinks[edit.node] if edit.sink else None
            if rule is not None:
                _at(gate, edit.node, lambda: fold_into_sink(
                    graph, edit.node, rule, states.get(edit.node.inputs[0]), folded,
                    edit.layout))
            _at(gate, edit.node, lambda: edit.apply(slicer))
            if rule is not None and decision.placeholder:
                slicer.zero_columns(edit.node, edit.axis, edit.layout, decision.keep)
        for node in region.nodes:
            _at(gate, node, lambda: plan.rules.get(node).slice(slicer, node, region))
            if decision.placeholder:
                slicer.ungate(node)
        readers = {*region.sinks, *region.nodes}
        for value, layout in plan.gathers():
            slicer.gather_cut(value, layout, readers)
        for value, layout in region.tensors.items():
            if value.shape is not None:
                dims = list(value.shape)
                dims[len(dims) + layout.axis] = slicer.keep_index(layout).size
                value.shape = ir.Shape(dims)


def fold_into_sink(graph: ir.Graph, sink: ir.Node, rule: OpRule, state: ChannelState | None,
                   drop: np.ndarray, layout) -> None:
    """Add what removed channels that carry a constant contribute to the sink's bias."""
    if state is None:
        return
    carried = drop[state.const[drop] & (state.val[drop] != 0)]
    if carried.size == 0:
        return
    positions = [layout.positions[c][layout.positions[c] >= 0] for c in carried]
    rule.fold_bias(graph, sink, state.val[carried].astype(np.float64), positions)
