"""nnfc's passes inside an onnxscript optimizer pipeline.

Binds gate vectors into a gated supernet, runs onnxscript's optimizer (constant folding, ...),
prunes the gated-off channels, removes the identity gates and runs the optimizer again, all as
one onnx-ir ``PassManager``; then checks the result against the gated supernet in ORT.

    .venv/bin/python examples/onnxscript-pipeline/prune_in_optimizer.py supernet.onnx gates.json \\
        -o small.onnx

``gates.json`` is ``{"gate.<layer>": [0, 1, ...]}`` with one list per gate input (the form
``nnfc prune`` reads).
"""

from __future__ import annotations

import argparse

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import onnxscript.optimizer
from onnx_ir.passes import InPlacePass, PassManager, PassResult

from nnfc.passes import (BindGatesPass, PruneGatedChannelsPass, RemoveIdentityGatesPass,
                         load_gates_json)


class OnnxscriptOptimize(InPlacePass):
    """onnxscript's ``optimize_ir`` as a pass."""

    def call(self, model: ir.Model) -> PassResult:
        onnxscript.optimizer.optimize_ir(model)
        return PassResult(model, modified=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("gates")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()

    supernet = onnx.load(args.model)
    gates = load_gates_json(args.gates)
    model = ir.from_proto(supernet)
    prune = PruneGatedChannelsPass()
    # BindGatesPass records the gates by name in the model's metadata, so the pruning pass finds
    # them although the optimizer folded the gate reshapes into new constants.
    PassManager([BindGatesPass(gates), OnnxscriptOptimize(), prune, RemoveIdentityGatesPass(),
                 OnnxscriptOptimize()])(model)
    model.metadata_props.pop("nnfc.gates", None)
    small = ir.to_proto(model)
    onnx.save(small, args.output)

    for r in prune.reports:
        print(f"{r.gate}: {r.active}/{r.size} active, {r.kept} kept"
              + (f" ({'; '.join(r.notes)})" if r.notes else ""))
    feeds = {}
    for inp in supernet.graph.input:
        if inp.name not in gates:
            dims = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
            feeds[inp.name] = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
    ref = ort.InferenceSession(supernet.SerializeToString()).run(None, {**feeds, **gates})
    got = ort.InferenceSession(small.SerializeToString()).run(None, feeds)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(got, ref))
    print(f"wrote {args.output}; max |pruned - gated supernet| = {diff:.2e}")


if __name__ == "__main__":
    main()
