"""Finding bound gates again after other passes ran.

A value's metadata does not survive optimizers (constant folding makes a new value), so
:class:`~nnfc.passes.bind_gates.BindGatesPass` records every bound gate vector by name in the
*model's* ``metadata_props`` (``nnfc.gates``: JSON ``{"gate.<layer>": [0, 1, ...]}``), which
optimizers keep. :func:`identify_gates` re-tags each ``Mul`` constant operand that holds a
recorded vector broadcast over one axis. Mistaking another 0/1 constant for a gate is harmless:
pruning only removes what the constant makes provably zero or constant.
"""

from __future__ import annotations

import json

import numpy as np
import onnx_ir as ir

from nnfc.passes.errors import GatePreconditionError, PruneError
from nnfc.passes.graph_utils import GATE_TAG

#: model metadata key holding the bound gate vectors
GATES_KEY = "nnfc.gates"


def record_gates(model: ir.Model, gates: dict[str, np.ndarray]) -> None:
    """Add ``gates`` to the model's record of bound gates."""
    known = recorded_gates(model)
    known.update({k: np.asarray(v, np.float32).reshape(-1) for k, v in gates.items()})
    model.metadata_props[GATES_KEY] = json.dumps(
        {k: [int(x) for x in v] for k, v in known.items()}, separators=(",", ":"))


def recorded_gates(model: ir.Model) -> dict[str, np.ndarray]:
    raw = model.metadata_props.get(GATES_KEY)
    if not raw:
        return {}
    from nnfc.errors import NnfcError
    from nnfc.jsonfile import parse_json
    from nnfc.file_schemas import GATES
    try:
        gates = parse_json(raw, f"model metadata {GATES_KEY}", GATES)
    except NnfcError as exc:
        raise PruneError(str(exc)) from None
    bad = next((k for k, v in gates.items() if any(x not in (0, 1) for x in v)), None)
    if bad is not None:  # checked before the cast: 1e-46 must not become a 0
        raise PruneError(f"model metadata {GATES_KEY}: {bad} must hold only 0 and 1")
    return {k: np.asarray(v, np.float32) for k, v in gates.items()}


def _gate_operand(value: ir.Value) -> np.ndarray | None:
    if value is None or value.const_value is None:
        return None
    shape = [int(d) for d in value.const_value.shape]
    if sum(d != 1 for d in shape) != 1:
        return None
    arr = value.const_value.numpy()
    return arr.reshape(-1) if arr.dtype == np.float32 else None


def identify_gates(model: ir.Model) -> dict[str, int]:
    """Tag every ``Mul`` constant operand equal to a recorded gate; return gate -> count found
    (tags already present count too)."""
    gates = recorded_gates(model)
    by_size: dict[int, list[str]] = {}
    for name, values in gates.items():
        by_size.setdefault(values.size, []).append(name)
    found: dict[str, int] = {}
    for node in model.graph:
        if node.op_type != "Mul" or node.domain not in ("", "ai.onnx"):
            continue
        for value in node.inputs:
            tag = value.metadata_props.get(GATE_TAG) if value is not None else None
            if tag is None and (arr := _gate_operand(value)) is not None:
                tag = next((n for n in by_size.get(arr.size, ())
                            if np.array_equal(gates[n], arr)), None)
                if tag is not None:
                    value.metadata_props[GATE_TAG] = tag
            if tag is not None:
                found[tag] = found.get(tag, 0) + 1
    return found


def require_gates_found(model: ir.Model, found: dict[str, int]) -> None:
    """Fail loudly when a recorded gate with zeros no longer feeds any ``Mul``."""
    for name, values in recorded_gates(model).items():
        if name not in found and np.any(values == 0):
            others = [use.node for value in model.graph.initializers.values()
                      if value.metadata_props.get(GATE_TAG) == name for use in value.uses()]
            if others:  # the graph itself uses the gate some other way: say how
                ops = ", ".join(f"{n.op_type} {n.name!r}" for n in others[:3])
                raise GatePreconditionError(
                    f"gate {name} cannot be applied: it feeds {ops}, not a Mul (a gate must "
                    "multiply the channels it gates); nothing was pruned")
            raise GatePreconditionError(
                f"bound gate {name} no longer appears as a Mul operand: a pass between "
                "binding and pruning rewrote it (run PruneGatedChannelsPass before passes that "
                "fuse Mul into weights)")
