"""ONNX passes that turn a gated supernet plus gate vectors into a small static model.

Public entry point: :func:`apply_gates`. The passes are ``onnx_ir.passes.InPlacePass``es (onnx-ir
chosen over onnx-graphsurgeon for its use-def links — ``value.uses()`` / ``value.producer()``
make the region walks O(edges) — lazy weights, and the pass infrastructure Olive and onnxscript
build on), so other compilers can run them in their own pass sequences::

    BindGatesPass(gates) -> FoldGateConstantsPass -> PruneGatedChannelsPass
        -> RemoveIdentityGatesPass -> RemoveUnusedPass -> ClearIntermediateShapesPass

The structure is found from the graph (starting at each ``Mul`` that consumes a gate), never from
names, so ONNX files from other exporters that follow the gate contract work too. Bound gates are
recorded by name in the model's metadata, so passes that run in between (e.g. onnxscript's
``optimize_ir``) do not hide them from the pruning pass.
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes import PassError, PassManager

from nnfc.passes.bind_gates import BindGatesPass, bind_gates
from nnfc.passes.cleanup import (ClearIntermediateShapesPass, RemoveIdentityGatesPass,
                                 RemoveUnusedPass, clear_intermediate_shapes,
                                 remove_identity_gates, remove_unused)
from nnfc.passes.errors import PruneError
from nnfc.passes.fold_constants import FoldGateConstantsPass, fold_constants
from nnfc.passes.gate_tags import GATES_KEY
from nnfc.passes.gates import gate_inputs, gates_to_json, load_gates_json, validate_gates
from nnfc.passes.prune_channels import GateReport, PruneGatedChannelsPass, prune_gated_channels

__all__ = ["apply_gates", "apply_gates_with_report", "gate_passes", "BindGatesPass",
           "FoldGateConstantsPass", "PruneGatedChannelsPass", "RemoveIdentityGatesPass",
           "RemoveUnusedPass", "ClearIntermediateShapesPass", "PruneError", "bind_gates",
           "fold_constants", "prune_gated_channels", "remove_identity_gates", "remove_unused",
           "clear_intermediate_shapes", "gate_inputs", "validate_gates", "load_gates_json",
           "gates_to_json", "GateReport"]


def gate_passes(gates: Mapping[str, np.ndarray]
                ) -> tuple[PassManager, PruneGatedChannelsPass, RemoveIdentityGatesPass]:
    """The pass manager :func:`apply_gates` runs, and its pruning and gate-removing passes (for
    the reports)."""
    prune, identity = PruneGatedChannelsPass(), RemoveIdentityGatesPass()
    manager = PassManager([BindGatesPass(gates), FoldGateConstantsPass(), prune, identity,
                           RemoveUnusedPass(), ClearIntermediateShapesPass()], steps=1)
    return manager, prune, identity


def apply_gates_with_report(model: onnx.ModelProto, gates: Mapping[str, np.ndarray],
                            infer_shapes: bool = False
                            ) -> tuple[onnx.ModelProto, list[GateReport]]:
    """:func:`apply_gates`, also returning what happened to each gate."""
    if not isinstance(model, onnx.ModelProto):
        raise PruneError("apply_gates expects an onnx.ModelProto")
    checked = validate_gates(model, gates)
    if not any(i.name for i in model.graph.value_info):
        model = onnx.shape_inference.infer_shapes(model)
    manager, prune, identity = gate_passes(checked)
    try:
        graph_model = ir.from_proto(model)
        manager(graph_model)
        graph_model.metadata_props.pop(GATES_KEY, None)  # bound and gone: nothing to record
        proto = ir.to_proto(graph_model)
    except Exception as exc:  # one error line for the CLI, never a traceback
        raise _root_cause(exc) from exc
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


def _root_cause(exc: BaseException) -> PruneError:
    """The PruneError a pass manager wrapped, else a PruneError saying which pass failed."""
    seen, where = exc, ""
    while seen is not None:
        if isinstance(seen, PruneError):
            return seen
        if isinstance(seen, PassError) and not where:  # "... running the '<...XPass object>'"
            found = re.search(r"(\w+Pass)\b", str(seen))
            where = f"in {found.group(1)}" if found else ""
        cause = seen.__cause__
        if cause is None:
            break
        seen = cause
    message = str(seen).strip().splitlines()[0] if str(seen).strip() else ""
    return PruneError(f"cannot apply the gates{(' ' + where) if where else ''}: "
                      f"{type(seen).__name__}{': ' + message if message else ''}")


def apply_gates(model: onnx.ModelProto, gates: Mapping[str, np.ndarray],
                infer_shapes: bool = False) -> onnx.ModelProto:
    """Bind ``gates`` (``{"gate.<layer>": 0/1 array}``, one per gate input) into ``model`` and
    physically remove every gated-off channel. The result has no gate inputs and computes the
    same outputs as the gated supernet (float32, ~1e-6). ``infer_shapes`` re-runs ONNX shape
    inference on the result (costs a serialization; ORT does not need it)."""
    return apply_gates_with_report(model, gates, infer_shapes)[0]
