"""Prune exactness and the cost structure's predictions on a factory's supernet, as one JSON.

For ``--samples`` random gate vectors (seeded; ~50 % on, plus all-on and one layer all-off): the
max |pruned − gated| output difference in ONNX Runtime, the pruned graph's ``graph_stats`` and the
cost structure's prediction of the same figures, the time of ``apply_gates`` and of building the
cost structure. Two code versions give the same JSON (except times) when the passes and the cost
model behave the same::

    .venv/bin/python benchmarks/prune_plan_figures.py factories/default --samples 8
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np


def figures(bundle: Path, samples: int) -> dict:
    import onnx
    import onnxruntime as ort

    from nnfc.compiler.cost_analysis import analyse
    from nnfc.compiler.graph_stats import graph_stats
    from nnfc.passes import apply_gates, gate_inputs

    model = onnx.load(str(bundle / "supernet.onnx"))
    sizes = gate_inputs(model)
    t = time.perf_counter()
    structure = analyse(model)
    analyse_s = time.perf_counter() - t
    blob = json.dumps(structure.to_json(), sort_keys=True).encode()
    rng = np.random.default_rng(0)
    names = list(sizes)
    vectors = [{k: np.ones(s, np.float32) for k, s in sizes.items()}]
    off = {k: np.ones(s, np.float32) for k, s in sizes.items()}
    off[names[0]][:] = 0
    vectors.append(off)
    for _ in range(samples):
        vectors.append({k: (rng.random(s) < rng.uniform(0.2, 0.8)).astype(np.float32)
                        for k, s in sizes.items()})
    inp = model.graph.input[0]
    shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
    x = rng.standard_normal(shape).astype(np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    gated = ort.InferenceSession(model.SerializeToString(), opts,
                                 providers=["CPUExecutionProvider"])
    rows, prune_s = [], 0.0
    for gates in vectors:
        t = time.perf_counter()
        pruned = apply_gates(model, gates)
        prune_s += time.perf_counter() - t
        sess = ort.InferenceSession(pruned.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        got = sess.run(None, {inp.name: x})
        ref = gated.run(None, {inp.name: x, **gates})
        diff = max(float(np.max(np.abs(g - r))) for g, r in zip(got, ref))
        stats = graph_stats(pruned)
        pred = structure.graph_terms(gates)
        rows.append({"on": int(sum(v.sum() for v in gates.values())), "max_diff": diff,
                     "nodes": len(pruned.graph.node),
                     "real": [stats.params, stats.param_bytes, stats.flops,
                              stats.peak_tensor_bytes],
                     "predicted": [int(pred[k][0]) for k in ("params", "param_bytes", "flops",
                                                             "peak_bytes")]})
    return {"bundle": str(bundle), "structure_sha256": hashlib.sha256(blob).hexdigest(),
            "rows": rows, "analyse_s": round(analyse_s, 3),
            "prune_s_per_model": round(prune_s / len(vectors), 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+", type=Path)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("-o", "--output", type=Path, default=None, help="write the JSON here too")
    args = ap.parse_args(argv)
    result = [figures(b, args.samples) for b in args.bundles]
    for r in result:
        exact = max(row["max_diff"] for row in r["rows"])
        agree = sum(row["real"] == row["predicted"] for row in r["rows"])
        print(f"{r['bundle']}: {len(r['rows'])} gate vectors, max |diff| {exact:.2e}, "
              f"predicted = real {agree}/{len(r['rows'])}, structure {r['structure_sha256'][:12]}, "
              f"analyse {r['analyse_s']:.2f} s, apply_gates {r['prune_s_per_model']:.3f} s")
    if args.output:
        args.output.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
