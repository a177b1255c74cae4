"""Latency and size of pruned supernets on ONNX Runtime (CPU, batch 1) versus activation ratio.

    .venv/bin/python benchmarks/prune_latency.py [--presets resnet50 vit-small] [--runs 30]

For each backbone preset: export the gated supernet (random weights; latency does not depend on
them), prune it with ``nnfc.passes.apply_gates`` keeping the same fraction of channels in every
gated layer, lower with the desktop target and benchmark it (median of ``--runs`` after warm-up).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx

from nnfc.onnx_io import count_params, save_onnx
from nnfc.passes import apply_gates
from nnfc.targets import get_target

RATIOS = (1.0, 0.75, 0.5, 0.25, 0.10)


def export(preset: str, out: Path) -> onnx.ModelProto:
    from nnfc.training.backbones import build_backbone
    from nnfc.training.export import export_supernet
    net = build_backbone(preset)
    size = net.config.get("image_size", 224)
    return export_supernet(net, out / f"{preset}.onnx", (1, 3, size, size))


def uniform_gates(model: onnx.ModelProto, ratio: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Keep round(ratio * size) random channels (at least one) in every gate layer."""
    rng = np.random.default_rng(seed)
    gates = {}
    for inp in model.graph.input:
        if inp.name.startswith("gate."):
            size = inp.type.tensor_type.shape.dim[0].dim_value
            g = np.zeros(size, np.float32)
            g[rng.choice(size, max(1, round(ratio * size)), replace=False)] = 1
            gates[inp.name] = g
    return gates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["resnet50", "vit-small"])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    target = get_target("desktop", threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"{'backbone':<12} {'active':>7} {'params':>12} {'median ms':>10} {'p90 ms':>8} "
              f"{'speed-up':>8}")
        for preset in args.presets:
            model = export(preset, tmp)
            base = None
            for ratio in RATIOS:
                pruned = apply_gates(model, uniform_gates(model, ratio))
                path = save_onnx(pruned, tmp / f"{preset}-{ratio}.onnx")
                artifact = target.lower(path, tmp / f"{preset}-{ratio}")
                res = target.benchmark(artifact, runs=args.runs, warmup=args.warmup)
                base = base or res.median_ms
                print(f"{preset:<12} {ratio:>7.0%} {count_params(pruned):>12,} "
                      f"{res.median_ms:>10.2f} {res.p90_ms:>8.2f} {base / res.median_ms:>7.2f}x",
                      flush=True)


if __name__ == "__main__":
    main()
