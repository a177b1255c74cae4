"""ONNX passes that turn a gated supernet plus gate vectors into a small static model.

Public entry point: :func:`apply_gates`. The passes run on onnx-ir (chosen over
onnx-graphsurgeon for its use-def links — ``value.uses()`` / ``value.producer()`` make the region
walks O(edges) — lazy weights, and the pass infrastructure Olive and onnxscript build on), and each
is a small function over an ``onnx_ir.Model`` so other compilers can call them one by one::

    bind_gates -> fold_constants -> prune_gated_channels -> remove_identity_gates
               -> remove_unused -> clear_intermediate_shapes

The structure is found from the graph (starting at each ``Mul`` that consumes a gate), never from
names, so ONNX files from other exporters that follow the gate contract work too.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import onnx
import onnx_ir as ir

from nnfc.errors import NnfcError
from nnfc.passes.bind_gates import bind_gates
from nnfc.passes.cleanup import clear_intermediate_shapes, remove_identity_gates, remove_unused
from nnfc.passes.fold_constants import fold_constants
from nnfc.passes.gates import gate_inputs, gates_to_json, load_gates_json, validate_gates
from nnfc.passes.prune_channels import GateReport, prune_gated_channels

__all__ = ["apply_gates", "apply_gates_with_report", "bind_gates", "fold_constants",
           "prune_gated_channels", "remove_identity_gates", "remove_unused",
           "clear_intermediate_shapes", "gate_inputs", "validate_gates", "load_gates_json",
           "gates_to_json", "GateReport", "unapplied_gates"]


def unapplied_gates(reports: list[GateReport]) -> list[dict[str, str]]:
    """``[{"gate", "reason"}]`` for every gate that removed nothing because it could not be
    applied (e.g. it feeds no ``Mul``); callers warn about these."""
    return [{"gate": r.gate, "reason": r.not_applied} for r in reports if r.not_applied]


def apply_gates_with_report(model: onnx.ModelProto, gates: Mapping[str, np.ndarray],
                            infer_shapes: bool = False
                            ) -> tuple[onnx.ModelProto, list[GateReport]]:
    """:func:`apply_gates`, also returning what happened to each gate."""
    if not isinstance(model, onnx.ModelProto):
        raise NnfcError("apply_gates expects an onnx.ModelProto")
    checked = validate_gates(model, gates)
    if not any(i.name for i in model.graph.value_info):
        model = onnx.shape_inference.infer_shapes(model)
    graph_model = ir.from_proto(model)
    bind_gates(graph_model, checked)
    fold_constants(graph_model)
    _, reports = prune_gated_channels(graph_model)
    remove_identity_gates(graph_model)
    remove_unused(graph_model)
    clear_intermediate_shapes(graph_model)
    proto = ir.to_proto(graph_model)
    if infer_shapes:
        try:
            proto = onnx.shape_inference.infer_shapes(proto)
        except Exception:  # shapes are a nicety for downstream tools, not a requirement
            pass
    return proto, reports


def apply_gates(model: onnx.ModelProto, gates: Mapping[str, np.ndarray],
                infer_shapes: bool = False) -> onnx.ModelProto:
    """Bind ``gates`` (``{"gate.<layer>": 0/1 array}``, one per gate input) into ``model`` and
    physically remove every gated-off channel. The result has no gate inputs and computes the
    same outputs as the gated supernet (float32, ~1e-6). ``infer_shapes`` re-runs ONNX shape
    inference on the result (costs a serialization; ORT does not need it)."""
    return apply_gates_with_report(model, gates, infer_shapes)[0]
