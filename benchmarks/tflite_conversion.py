"""Android target figures: onnx2tf conversion time and TFLite-vs-ONNX max |diff| per backbone.

For each preset: export the gated supernet (random weights), prune it with random gates
(about half on), lower it with the android target (float16 too) and compare float32/float16
TFLite outputs with the pruned ONNX on 5 random inputs; then benchmark both with LiteRT.

    .venv/bin/python benchmarks/tflite_conversion.py                 # the tiny test presets
    .venv/bin/python benchmarks/tflite_conversion.py resnet18 mobilenetv2 --image 224
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

TINY = ["resnet-tiny", "resnet-tiny-bottleneck", "mobilenet-tiny", "efficientnet-tiny",
        "vit-tiny"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", default=TINY)
    parser.add_argument("--image", type=int, default=16, help="input height/width")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import onnxruntime as ort
    from nnfc.passes import apply_gates, gate_inputs
    from nnfc.targets import get_target
    from nnfc.training.backbones import build_backbone
    from nnfc.training.export import export_supernet
    from supernets import randomize

    target = get_target("android", precision="float16", threads=args.threads)
    print(f"{'preset':24s} {'convert s':>9s} {'fp32 diff':>10s} {'fp16 diff':>10s} "
          f"{'|out|':>7s} {'fp32 ms':>8s} {'fp16 ms':>8s} {'ORT ms':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            work = Path(tmp) / preset
            shape = (1, 3, args.image, args.image)
            model = export_supernet(randomize(build_backbone(preset)), work / "supernet.onnx",
                                    shape)
            rng = np.random.default_rng(0)
            gates = {}
            for name, size in gate_inputs(model).items():
                g = (rng.random(size) < 0.5).astype(np.float32)
                g[rng.integers(size)] = 1
                gates[name] = g
            pruned = apply_gates(model, gates)
            (work / "pruned.onnx").write_bytes(pruned.SerializeToString())
            t0 = time.perf_counter()
            try:
                fp16 = target.lower(work / "pruned.onnx", work / "out")
            except Exception as exc:  # report and go on to the next backbone
                print(f"{preset:24s} FAILED: {exc}")
                continue
            seconds = time.perf_counter() - t0
            fp32 = fp16.parent / "model.tflite"
            session = ort.InferenceSession(str(work / "pruned.onnx"))
            d32 = d16 = scale = 0.0
            for _ in range(5):
                x = rng.standard_normal(shape).astype(np.float32)
                want = session.run(None, {"input": x})[0]
                d32 = max(d32, float(np.abs(target.run(fp32, {"input": x})[0] - want).max()))
                d16 = max(d16, float(np.abs(target.run(fp16, {"input": x})[0] - want).max()))
                scale = max(scale, float(np.abs(want).max()))
            b32 = target.benchmark(fp32, runs=50, warmup=10).median_ms
            b16 = target.benchmark(fp16, runs=50, warmup=10).median_ms
            ort_ms = get_target("desktop", threads=args.threads).benchmark(
                work / "pruned.onnx", runs=50, warmup=10).median_ms
            print(f"{preset:24s} {seconds:9.1f} {d32:10.2e} {d16:10.2e} {scale:7.2f} "
                  f"{b32:8.3f} {b16:8.3f} {ort_ms:7.3f}", flush=True)


if __name__ == "__main__":
    main()
