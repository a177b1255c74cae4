"""The passes on real architectures nobody here wrote (timm, random weights and norm statistics,
gates added by forward hooks, exported by torch's dynamo exporter), plus a gated FPN detector.

Per model: exact (max relative difference of the pruned model's outputs vs the gated supernet's,
worst over random 50 %, random 25 % and one-layer-off gates; pass at <= 1e-4), the parameters
removed as a share of the ideal (torch-pruning's dependency groups on the same masks; grouped
convs analytically) for each gate set, the prune time (``apply_gates``, random 50 %) and the ORT
speed-up of the 25 % model over the ungated network (batch 1, one thread, median of runs).

    .venv/bin/python benchmarks/passes_real_archs.py            # every architecture
    .venv/bin/python benchmarks/passes_real_archs.py resnet50 ghostnet_050
    .venv/bin/python benchmarks/passes_real_archs.py --exporter torchscript
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _latency(model, feeds, runs: int = 30) -> float:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in names}
    for _ in range(3):
        sess.run(None, feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _max_rel(got: list, ref: list) -> float:
    return max(float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-12))
               for g, r in zip(got, ref))


def measure(name: str, exporter: str) -> dict:
    from nnfc.onnx_io import count_params
    from nnfc.passes import apply_gates
    from onnx_text import run_all
    import real_archs

    t0 = time.perf_counter()
    if name == "fpn_detector":
        arch, model, gate_sets, ideal = _detector(exporter)
    else:
        arch = real_archs.build(name)
        model = real_archs.export(arch, dynamo=exporter == "dynamo")
        gate_sets = real_archs.gate_sets(arch)
        ideal = lambda g: real_archs.ideal_removed(arch, g)  # noqa: E731
    export_s = time.perf_counter() - t0
    size = model.graph.input[0].type.tensor_type.shape.dim[-1].dim_value or 64
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    row = {"model": name, "gates": len(gate_sets["random50"]), "export_s": round(export_s, 1),
           "params": count_params(model)}
    worst, shares = 0.0, {}
    for label, gates in gate_sets.items():
        t = time.perf_counter()
        pruned = apply_gates(model, gates)
        elapsed = time.perf_counter() - t
        if label == "random50":
            row["prune_s"] = round(elapsed, 3)
        worst = max(worst, _max_rel(run_all(pruned, {"x": x}), run_all(model, {"x": x, **gates})))
        removed = count_params(model) - count_params(pruned)
        best = ideal(gates)
        # None: no ideal (the detector) or nothing removable (a gate on a residual stream whose
        # other members are on: its all-zero gate constant stays, which the share would punish)
        shares[label] = None if not best else 100.0 * removed / best
        if label == "random25":
            ones = {k: np.ones_like(v) for k, v in gates.items()}
            full = _latency(model, {"x": x, **ones})
            row["speedup25"] = round(full / _latency(pruned, {"x": x}), 2)
    row["max_rel"] = worst
    row["exact"] = worst <= 1e-4
    row.update({f"ideal_{k}": None if v is None else round(v, 1) for k, v in shares.items()})
    return row


def _detector(exporter: str):
    from test_passes_detection import GATES, exported
    model = exported(exporter == "dynamo")
    rng = np.random.default_rng(0)
    sets = {}
    for label, p in (("random50", 0.5), ("random25", 0.25)):
        sets[label] = {n: np.maximum(rng.random(s) < p,
                                     np.arange(s) == rng.integers(s)).astype(np.float32)
                       for n, s in GATES.items()}
    ones = {n: np.ones(s, np.float32) for n, s in GATES.items()}
    ones["gate.lat4"][:] = 0
    sets["layer_off"] = ones
    return None, model, sets, lambda g: None


def main(argv: list[str] | None = None) -> int:
    import real_archs
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="architectures (default: all)")
    parser.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    names = args.models or [*real_archs.ARCHS, "fpn_detector"]
    rows = []
    print(f"{'model':22s} {'gates':>5s} {'params':>10s} {'exact':>5s} {'max rel':>8s} "
          f"{'%ideal 50':>9s} {'%ideal 25':>9s} {'%ideal 1-off':>12s} {'prune s':>8s} "
          f"{'ORT x@25%':>9s}", flush=True)
    for name in names:
        try:
            row = measure(name, args.exporter)
        except Exception as exc:  # one model's failure is a row, not the end of the table
            row = {"model": name, "error": f"{type(exc).__name__}: {str(exc)[:120]}"}
            print(f"{name:22s} ERROR {row['error']}", flush=True)
            rows.append(row)
            continue
        fmt = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
        print(f"{name:22s} {row['gates']:5d} {row['params']:10,d} "
              f"{'yes' if row['exact'] else 'NO':>5s} {row['max_rel']:8.1e} "
              f"{fmt(row['ideal_random50']):>9s} {fmt(row['ideal_random25']):>9s} "
              f"{fmt(row['ideal_layer_off']):>12s} {row['prune_s']:8.3f} "
              f"{row['speedup25']:9.2f}", flush=True)
        rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if all(r.get("exact") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
