"""Desktop latency of the AttrOD detector supernets (ONNX Runtime, CPU, 1 thread, batch 1).

    .venv/bin/python benchmarks/attrod_latency.py [--configs configs/attrod-resnet.toml ...]

For each config: build the gated detector (random weights; latency does not depend on them) at
the family's deployed input, export it, and benchmark with the desktop target: the full supernet
(raw outputs), the supernet joined to the decode graph, and uniformly pruned subnets (the same
fraction of channels kept in every gated layer), so the latency range a budget can select from is
visible. The machine may be shared: compare figures from one run only.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from nnfc.families.attrod.decode import join_decode
from nnfc.onnx_io import save_onnx
from nnfc.passes import apply_gates
from nnfc.targets import get_target

RATIOS = (1.0, 0.5, 0.25)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+",
                    default=["configs/attrod-resnet.toml", "configs/attrod-mobilenet.toml"])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from nnfc.training.config import load_config
    from nnfc.training.export import export_supernet
    from nnfc.training.trainer import build_models, build_task_family

    target = get_target("desktop", threads=args.threads)
    print(f"{'config':34s} {'variant':18s} {'median ms':>10s} {'p90 ms':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for cfg_path in args.configs:
            cfg = load_config(cfg_path)
            family = build_task_family(cfg)
            det, _ = build_models(cfg, family)
            model = export_supernet(det, tmp / "supernet.onnx", (1, *family.image_shape))
            layers = det.gate_layers()
            rng = np.random.default_rng(0)
            for ratio in RATIOS:
                gates = {}
                for g in layers:
                    v = np.zeros(g.size, np.float32)
                    v[rng.permutation(g.size)[:max(1, round(ratio * g.size))]] = 1
                    gates[g.input_name] = v
                pruned = apply_gates(model, gates)
                variants = [(f"channels {ratio:.0%}", pruned)]
                if ratio == 1.0:
                    variants.append(("+ decode graph", join_decode(pruned,
                                                                   family.decode_spec())))
                for name, m in variants:
                    path = save_onnx(m, tmp / f"{name.replace(' ', '_')}.onnx")
                    artifact = target.lower(path, tmp / f"out-{name.replace(' ', '_')}")
                    res = target.benchmark(artifact, runs=args.runs, warmup=args.warmup)
                    print(f"{Path(cfg_path).name:34s} {name:18s} {res.median_ms:10.2f} "
                          f"{res.p90_ms:8.2f}", flush=True)


if __name__ == "__main__":
    main()
