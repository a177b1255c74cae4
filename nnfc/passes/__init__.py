"""ONNX passes that turn a gated supernet plus gate vectors into a small static model.

Public entry point: :func:`apply_gates`. The passes are ``onnx_ir.passes.InPlacePass``es (onnx-ir
chosen over onnx-graphsurgeon for its use-def links — ``value.uses()`` / ``value.producer()``
make the region walks O(edges) — lazy weights, and the pass infrastructure Olive and onnxscript
build on), so other compilers can run them in their own pass sequences::

    BindGatesPass(gates) -> FoldGateConstantsPass -> PruneGatedChannelsPass
        -> RemoveIdentityGatesPass -> RemoveUnusedPass -> ClearIntermediateShapesPass

(``onnx_ir.passes.functionalize(pass_)`` gives any of them as a function on a copy.)

The structure is found from the graph (starting at each ``Mul`` that consumes a gate), never from
names, so ONNX files from other exporters that follow the gate contract work too. What the passes
know about each op lives in its rule (``nnfc.passes.rules``); the passes take a
:class:`~nnfc.passes.rules.RuleSet` (``default_rules()`` unless given one). Bound gates are
recorded by name in the model's metadata, so passes that run in between (e.g. onnxscript's
``optimize_ir``) do not hide them from the pruning pass.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes import PassManager

from nnfc.passes.bind_gates import BindGatesPass
from nnfc.passes.cleanup import (ClearIntermediateShapesPass, RemoveIdentityGatesPass,
                                 RemoveUnusedPass)
from nnfc.passes.errors import PruneError
from nnfc.passes.fold_constants import FoldGateConstantsPass
from nnfc.passes.gate_tags import GATES_KEY
from nnfc.passes.gates import gate_inputs, gates_to_json, load_gates_json, validate_gates
from nnfc.passes.prune_channels import GateReport, PruneGatedChannelsPass
from nnfc.passes.rules import OpRule, RuleSet, default_rules
from nnfc.passes.shapes import complete_shapes

__all__ = ["apply_gates", "apply_gates_with_report", "gate_passes", "BindGatesPass",
           "FoldGateConstantsPass", "PruneGatedChannelsPass", "RemoveIdentityGatesPass",
           "RemoveUnusedPass", "ClearIntermediateShapesPass", "PruneError", "gate_inputs",
           "validate_gates", "load_gates_json", "gates_to_json", "GateReport", "OpRule",
           "RuleSet", "default_rules"]


def gate_passes(gates: Mapping[str, np.ndarray], rules: RuleSet | None = None
                ) -> tuple[PassManager, PruneGatedChannelsPass, RemoveIdentityGatesPass]:
    """The passes of :func:`apply_gates` as a pass manager (``apply_gates`` runs its passes one
    at a time, to name the one that fails), and its pruning and gate-removing passes (for the
    reports)."""
    rules = rules if rules is not None else default_rules()
    prune, identity = PruneGatedChannelsPass(rules), RemoveIdentityGatesPass(rules)
    manager = PassManager([BindGatesPass(gates), FoldGateConstantsPass(rules), prune, identity,
                           RemoveUnusedPass(), ClearIntermediateShapesPass()], steps=1)
    return manager, prune, identity


def apply_gates_with_report(model: onnx.ModelProto, gates: Mapping[str, np.ndarray],
                            infer_shapes: bool = False, rules: RuleSet | None = None
                            ) -> tuple[onnx.ModelProto, list[GateReport]]:
    """:func:`apply_gates`, also returning what happened to each gate."""
    if not isinstance(model, onnx.ModelProto):
        raise PruneError("apply_gates expects an onnx.ModelProto")
    checked = validate_gates(model, gates)
    model = complete_shapes(model)
    manager, prune, identity = gate_passes(checked, rules)
    graph_model = ir.from_proto(model)
    for pass_ in manager.passes:  # each pass in turn: a failure names the pass that failed
        try:
            pass_(graph_model)
        except Exception as exc:  # one error line for the CLI, never a traceback
            root = exc  # the pass infrastructure wraps what the pass raised: take the cause
            while root.__cause__ is not None and not isinstance(root, PruneError):
                root = root.__cause__
            if isinstance(root, PruneError):
                raise root from exc
            message = str(root).strip().splitlines()[0] if str(root).strip() else ""
            raise PruneError(f"cannot apply the gates in {type(pass_).__name__}: "
                             f"{type(root).__name__}{': ' + message if message else ''}") from exc
    graph_model.metadata_props.pop(GATES_KEY, None)  # bound and gone: nothing to record
    proto = ir.to_proto(graph_model)
    if infer_shapes:
        try:
            proto = onnx.shape_inference.infer_shapes(proto)
        except Exception:  # shapes are a nicety for downstream tools, not a requirement
            pass
    for report in prune.reports:
        if report.gate in identity.bypassed:
            report.notes.append("all off on a residual stream: its Mul and branch are removed "
                                "(y + 0 = y)")
    return proto, prune.reports


def apply_gates(model: onnx.ModelProto, gates: Mapping[str, np.ndarray],
                infer_shapes: bool = False, rules: RuleSet | None = None) -> onnx.ModelProto:
    """Bind ``gates`` (``{"gate.<layer>": 0/1 array}``, one per gate input) into ``model`` and
    physically remove every gated-off channel. The result has no gate inputs and computes the
    same outputs as the gated supernet (float32, ~1e-6). ``infer_shapes`` re-runs ONNX shape
    inference on the result (costs a serialization; ORT does not need it). ``rules``: the op
    rules (default: ``default_rules()``; add your own ops to a copy)."""
    return apply_gates_with_report(model, gates, infer_shapes, rules)[0]
