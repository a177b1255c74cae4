"""Pass: bind gate graph inputs to constants (tagged so later passes can find them)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import onnx_ir as ir

from nnfc.errors import NnfcError
from nnfc.passes.graph_utils import new_initializer


def bind_gates(model: ir.Model, gates: Mapping[str, np.ndarray]) -> ir.Model:
    """Replace each gate input ``gate.<layer>`` by a float32 initializer holding its values.

    The initializer carries the ``nnfc.gate`` metadata tag; inputs not in ``gates`` stay inputs.
    """
    graph = model.graph
    by_name = {v.name: v for v in graph.inputs}
    for name, values in gates.items():
        inp = by_name.get(name)
        if inp is None:
            raise NnfcError(f"the model has no gate input {name!r}")
        const = new_initializer(graph, np.asarray(values, dtype=np.float32).reshape(-1),
                                f"{name}.bound", tag=name)
        inp.replace_all_uses_with(const)
        graph.inputs.remove(inp)
    return model
