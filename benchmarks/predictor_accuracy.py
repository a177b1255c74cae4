"""Predictor accuracy on held-out subnets (1 − MAPE), latency and memory, for one target.

Profiles ``--subnets`` random subnets of a factory (resuming earlier measurements), fits the
layer-wise predictor on 80% and scores the rest (at least 50 held out), writes the predictor JSON
and the predicted-vs-measured PNG under ``--out``.

    .venv/bin/python benchmarks/predictor_accuracy.py --bundle factories/default
    .venv/bin/python benchmarks/predictor_accuracy.py --standin   # a wider ResNet,
                                                                  # random weights (needs torch)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def standin_bundle(root: Path) -> Path:
    """A factory with a wider ResNet than the default (depths 2,2,2, widths 32,64,128,
    1x16x16 input), random weights and a rule assembler.
    Latency depends on the architecture and the gates, not on trained weights."""
    sys.path.insert(0, str(ROOT / "tests"))
    from compile_fixtures import make_bundle
    if not (root / "manifest.json").is_file():
        make_bundle(root, "resnet", image_shape=(1, 16, 16), depths=(2, 2, 2),
                    widths=(32, 64, 128), stem="small", num_classes=2)
    return root


def main(argv: list[str] | None = None) -> int:
    from nnfc.bundle import default_bundle_path, read_bundle
    from nnfc.compiler.fitting import fit_and_save
    from nnfc.compiler.pipeline import make_target
    from nnfc.compiler.profiler import profile_subnets

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--standin", action="store_true", help="profile the stand-in factory")
    ap.add_argument("--target", default="desktop")
    ap.add_argument("--subnets", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "profiles"))
    args = ap.parse_args(argv)
    if args.standin:
        bundle_root = standin_bundle(Path(tempfile.gettempdir()) / "nnfc-standin-factory")
        name = f"standin-{args.target}"
    else:
        bundle_root = Path(args.bundle) if args.bundle else default_bundle_path()
        name = f"{bundle_root.name}-{args.target}"
    bundle = read_bundle(bundle_root)
    out = Path(args.out)
    options = {"threads": args.threads} if args.threads and args.target == "desktop" else {}
    target = make_target(args.target, options)
    data = profile_subnets(bundle, target, out / f"{name}.measurements.json",
                           subnets=args.subnets)
    data["_path"] = str(out / f"{name}.measurements.json")
    predictor, png = fit_and_save(bundle, args.target, data, out / f"{name}.json",
                                  out / f"{name}.png", target_options=options)
    acc = predictor.meta["accuracy"]
    print(f"factory {bundle.root} on {args.target} ({predictor.meta['host'].get('cpu')}, "
          f"{options or 'default options'}), {len(data['rows'])} subnets")
    for key in ("latency", "memory"):
        a = acc[key]
        print(f"  {key:8s} accuracy {a['accuracy']:.2%} on {a['n_test']} held-out subnets "
              f"(trained on {a['n_train']}; p90 error {a['p90_rel_error']:.1%}, max "
              f"{a['max_rel_error']:.1%})")
    print(f"  predictor {out / f'{name}.json'}, plot {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
