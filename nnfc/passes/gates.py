"""Gate vectors: read ``{"gate.<layer>": [0,1,...]}`` JSON and validate them against a model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx

from nnfc.passes.errors import PruneError

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


def load_gates_json(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a gates JSON file into name -> float32 array (values checked by validate_gates)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PruneError(f"gates file {path} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PruneError(f"gates file {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise PruneError(f'gates file {path} must hold an object {{"gate.<layer>": [0,1,...]}}')
    gates = {}
    for name, values in raw.items():
        if not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise PruneError(f"gates file {path}: {name} must be a list of 0/1 numbers")
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
        arr = np.asarray(values, dtype=np.float32).reshape(-1)
        if arr.size != expected[name]:
            raise PruneError(f"gate {name} has {arr.size} values; the model expects "
                            f"{expected[name]}")
        if not np.all((arr == 0) | (arr == 1)):
            bad = arr[(arr != 0) & (arr != 1)][0]
            raise PruneError(f"gate {name} must hold only 0 and 1 (found {bad:g})")
        checked[name] = arr
    if require_all:
        missing = [name for name in expected if name not in gates]
        if missing:
            raise PruneError(f"no values for gate(s) {', '.join(missing)}")
    return checked


def gates_to_json(gates: Mapping[str, np.ndarray]) -> dict[str, list[int]]:
    """The JSON form of gates: name -> list of 0/1 ints."""
    return {name: [int(v) for v in np.asarray(arr).reshape(-1)] for name, arr in gates.items()}
