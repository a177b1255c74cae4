"""Pass: bind gate graph inputs to constants (tagged, and recorded by name in the model's
metadata so later passes find them even after other optimizers rewrote the constants)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult

from nnfc.passes.errors import GatePreconditionError, PruneError
from nnfc.passes.gate_tags import record_gates
from nnfc.passes.graph_utils import fresh_names, new_initializer


class BindGatesPass(InPlacePass):
    """Replace each gate input ``gate.<layer>`` by a float32 initializer holding its values.

    Inputs not in ``gates`` stay inputs."""

    def __init__(self, gates: Mapping[str, np.ndarray]):
        super().__init__()
        self.gates = {k: np.asarray(v, dtype=np.float32).reshape(-1) for k, v in gates.items()}

    def requires(self, model: ir.Model) -> None:
        names = {v.name for v in model.graph.inputs}
        for name in self.gates:
            if name not in names:
                raise GatePreconditionError(f"the model has no gate input {name!r}")

    def call(self, model: ir.Model) -> PassResult:
        graph = model.graph
        by_name = {v.name: v for v in graph.inputs}
        with fresh_names(graph):
            for name, values in self.gates.items():
                const = new_initializer(graph, values, f"{name}.bound", tag=name)
                by_name[name].replace_all_uses_with(const)
                graph.inputs.remove(by_name[name])
        record_gates(model, self.gates)
        return PassResult(model, modified=bool(self.gates))

    def ensures(self, model: ir.Model) -> None:
        left = {v.name for v in model.graph.inputs} & set(self.gates)
        if left:
            raise PruneError(f"gate input(s) still unbound: {', '.join(sorted(left))}")

