"""How long ``nnfc prune`` takes against the physical limit, and how prune time grows with size.

For each model (timm architectures, gated by tests/real_archs.py, dynamo export, random 50 %
gates): the ``nnfc prune`` command run in-process (best of ``--repeats``), its parts (load +
check, the passes, save), and a bare numpy baseline doing the least any pruner must do: read the
ONNX file, gather the kept slices of every Conv/Gemm/MatMul weight (``np.take`` on both axes, the
counts the pruned model has) and write the file. The ratio is prune / baseline (goal <= 2).

    .venv/bin/python benchmarks/passes_prune_time.py                 # resnet50 densenet121 tinynet_a
    .venv/bin/python benchmarks/passes_prune_time.py resnet18 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _baseline(path: Path, pruned_path: Path, out: Path) -> None:
    """Load, gather each weight's kept slices (as many as the pruned model keeps), save."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(path))
    pruned = onnx.load(str(pruned_path), load_external_data=False)
    shapes = {i.name: tuple(i.dims) for i in pruned.graph.initializer}
    kept = {n.output[0]: shapes.get(n.input[1]) for n in pruned.graph.node
            if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1}
    inits = {i.name: i for i in model.graph.initializer}
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for node in model.graph.node:
        if node.output[0] not in kept or node.input[1] not in inits or kept[node.output[0]] is None:
            continue
        init = inits[node.input[1]]
        w = numpy_helper.to_array(init)
        target = kept[node.output[0]]
        for axis in range(min(2, w.ndim)):
            if target[axis] < w.shape[axis]:
                idx = np.sort(rng.choice(w.shape[axis], target[axis], replace=False))
                w = np.take(w, idx, axis=axis)
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w), init.name))
    onnx.save(model, str(out))
    return time.perf_counter() - t


def measure(name: str, repeats: int, work: Path) -> dict:
    import onnx
    import real_archs
    from nnfc.cli import main as cli
    from nnfc.onnx_io import load_onnx
    from nnfc.passes import apply_gates

    arch = real_archs.build(name)
    model = real_archs.export(arch)
    path = work / f"{name}.onnx"
    onnx.save(model, str(path))
    gates = real_archs.gate_sets(arch)["random50"]
    gates_path = work / f"{name}.gates.json"
    gates_path.write_text(json.dumps({k: [int(x) for x in v] for k, v in gates.items()}))
    out = work / f"{name}.pruned.onnx"

    def run_cli():
        try:
            cli(["prune", str(path), "--gates", str(gates_path), "-o", str(out)])
        except SystemExit as exc:
            if exc.code:
                raise
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        prune_s = _best(run_cli, repeats)
    load_s = _best(lambda: load_onnx(path), repeats)
    loaded = load_onnx(path)
    passes_s = _best(lambda: apply_gates(loaded, gates), repeats)
    base_s = _best(lambda: _baseline(path, out, work / f"{name}.numpy.onnx"), repeats)
    return {"model": name, "gates": len(gates), "params": sum(
        int(np.prod(i.dims)) for i in model.graph.initializer), "nodes": len(model.graph.node),
        "prune_s": prune_s, "load_check_s": load_s, "passes_s": passes_s,
        "numpy_s": base_s, "ratio": prune_s / base_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["resnet50", "densenet121", "tinynet_a"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{'model':14s} {'gates':>5s} {'nodes':>6s} {'params':>11s} {'nnfc prune':>10s} "
          f"{'load+chk':>8s} {'passes':>7s} {'numpy':>7s} {'ratio':>6s}  ms/node", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            r = measure(name, args.repeats, Path(tmp))
            print(f"{r['model']:14s} {r['gates']:5d} {r['nodes']:6d} {r['params']:11,d} "
                  f"{r['prune_s']:10.3f} {r['load_check_s']:8.3f} {r['passes_s']:7.3f} "
                  f"{r['numpy_s']:7.3f} {r['ratio']:6.2f}  "
                  f"{1000 * r['passes_s'] / r['nodes']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
