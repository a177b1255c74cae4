"""Gate vectors: read ``{"gate.<layer>": [0,1,...]}`` JSON and validate them against a model."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import onnx

from nnfc.errors import NnfcError
from nnfc.jsonfile import read_json
from nnfc.passes.errors import PruneError
from nnfc.file_schemas import GATES

GATE_PREFIX = "gate."


def gate_inputs(model: onnx.ModelProto) -> dict[str, int]:
    """The model's gate inputs (name -> size), in graph order: inputs named ``gate.*``."""
    found = {}
    for inp in model.graph.input:
        if not inp.name.startswith(GATE_PREFIX):
            continue
        dims = inp.type.tensor_type.shape.dim
        if len(dims) != 1 or not dims[0].HasField("dim_value"):
            raise PruneError(f"gate input {inp.name} must have a static 1-D shape [size]")
        found[inp.name] = dims[0].dim_value
    return found


MAX_GATES_BYTES = 16 << 20


def load_gates_json(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a gates JSON file (through :func:`nnfc.jsonfile.read_json`: regular file, size cap,
    duplicate gates refused) into name -> float32 array; every value must be exactly 0 or 1
    before the cast (1e-46 would round to 0)."""
    try:
        raw = read_json(path, GATES, what="gates file", max_bytes=MAX_GATES_BYTES)
    except NnfcError as exc:
        raise PruneError(str(exc)) from None
    gates = {}
    for name, values in raw.items():
        bad = next((i for i, v in enumerate(values) if v not in (0, 1)), None)
        if bad is not None:
            raise PruneError(f"gates file {path}: {name}[{bad}] is {values[bad]!r}; gates "
                             "hold only 0 and 1")
        gates[name] = np.asarray(values, dtype=np.float32)
    return gates


def validate_gates(model: onnx.ModelProto, gates: Mapping[str, np.ndarray],
                   require_all: bool = True) -> dict[str, np.ndarray]:
    """Check names, lengths and 0/1 values of ``gates`` against the model's gate inputs.

    Returns float32 copies. ``require_all``: every gate input must be given.
    """
    expected = gate_inputs(model)
    unknown = sorted(set(gates) - set(expected))
    if unknown:
        known = ", ".join(expected) or "none"
        raise PruneError(f"unknown gate {unknown[0]!r}; the model's gate inputs are: {known}")
    checked = {}
    for name, values in gates.items():
        raw = np.asarray(values).reshape(-1)
        if raw.size != expected[name]:
            raise PruneError(f"gate {name} has {raw.size} values; the model expects "
                            f"{expected[name]}")
        if raw.dtype.kind not in "biuf":
            raise PruneError(f"gate {name} must hold only 0 and 1 (found {raw.dtype} values)")
        if not np.all((raw == 0) | (raw == 1)):  # checked before the float32 cast: 1e-46 is no 0
            bad = raw[(raw != 0) & (raw != 1)][0]
            raise PruneError(f"gate {name} must hold only 0 and 1 (found {bad!r})")
        checked[name] = raw.astype(np.float32)
    if require_all:
        missing = [name for name in expected if name not in gates]
        if missing:
            raise PruneError(f"no values for gate(s) {', '.join(missing)}")
    return checked


def gates_to_json(gates: Mapping[str, np.ndarray]) -> dict[str, list[int]]:
    """The JSON form of gates: name -> list of 0/1 ints."""
    return {name: [int(v) for v in np.asarray(arr).reshape(-1)] for name, arr in gates.items()}
