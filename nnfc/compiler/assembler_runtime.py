"""Run a bundle's assembler (``assembler.onnx``) with ONNX Runtime: task + limits -> gates.

Inputs ``task`` float32 [B, A] (multi-hot) and ``limit`` float32 [B]; outputs ``gate.<layer>``
[B, size] of 0/1. One batched call answers many candidate limits at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from nnfc.errors import NnfcError


class Assembler:
    """An ORT session on a bundle's assembler; ``gates(task, limits)`` -> {gate name: [B, size]}."""

    def __init__(self, path: str | Path, gate_names: Sequence[str] | None = None):
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = 1   # tiny MLP: thread start-up costs more than it saves
        try:
            self.session = ort.InferenceSession(str(path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise NnfcError(f"onnxruntime cannot load the assembler {path}: "
                            f"{str(exc).splitlines()[0]}") from exc
        inputs = {i.name for i in self.session.get_inputs()}
        if not {"task", "limit"} <= inputs:
            raise NnfcError(f"{path}: an assembler needs inputs 'task' and 'limit', "
                            f"found {sorted(inputs)}")
        outputs = [o.name for o in self.session.get_outputs()]
        self.gate_names = list(gate_names) if gate_names is not None else \
            [o for o in outputs if o.startswith("gate.")]
        missing = [g for g in self.gate_names if g not in outputs]
        if missing:
            raise NnfcError(f"{path}: the assembler lacks output(s) {', '.join(missing)}")
        task_shape = next(i.shape for i in self.session.get_inputs() if i.name == "task")
        self.num_attributes = task_shape[-1] if isinstance(task_shape[-1], int) else None

    def gates(self, task: Sequence[float], limits: Sequence[float] | np.ndarray
              ) -> dict[str, np.ndarray]:
        """Gates for one task at each limit: {``gate.<layer>``: float32 [len(limits), size]}."""
        limits = np.asarray(limits, dtype=np.float32).reshape(-1)
        task_vec = np.asarray(task, dtype=np.float32).reshape(1, -1)
        if self.num_attributes is not None and task_vec.shape[1] != self.num_attributes:
            raise NnfcError(f"the assembler expects {self.num_attributes} attributes, "
                            f"got a task vector of {task_vec.shape[1]}")
        feeds = {"task": np.repeat(task_vec, len(limits), axis=0), "limit": limits}
        outs = self.session.run(self.gate_names, feeds)
        return {name: binary_gates(name, out, "the assembler's output")
                for name, out in zip(self.gate_names, outs)}


def binary_gates(name: str, values, whose: str) -> np.ndarray:
    """``values`` as float32 once checked (before any cast) to be finite and exactly 0 or 1;
    one NnfcError naming the gate and the first bad value otherwise."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise NnfcError(f"{whose} {name} is not numeric (dtype {arr.dtype})")
    bad = ~((arr == 0) | (arr == 1))
    if bad.any():
        raise NnfcError(f"{whose} {name} must hold only 0 and 1; found "
                        f"{arr[bad].reshape(-1)[0]!r} ({int(bad.sum())} of {arr.size} values)")
    return arr.astype(np.float32)


def select(gates: dict[str, np.ndarray], index: int) -> dict[str, np.ndarray]:
    """Row ``index`` of batched gates, as 1-D arrays (the form ``apply_gates`` takes)."""
    return {k: np.asarray(v)[index].reshape(-1) for k, v in gates.items()}
