"""Predictor accuracy on held-out subnets (1 − MAPE), latency and memory, for one target.

Profiles ``--subnets`` random subnets of a factory (resuming earlier measurements), fits the
layer-wise predictor on 80% and scores the rest (at least 50 held out), writes the predictor JSON
and the predicted-vs-measured PNG under ``--out``.

    .venv/bin/python benchmarks/predictor_accuracy.py --bundle factories/numvqa-resnet
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
    ap.add_argument("--runs", type=int, default=10, help="timed runs per round")
    ap.add_argument("--rounds", type=int, default=10, help="measurement rounds")
    args = ap.parse_args(argv)
    if args.standin:
        bundle_root = standin_bundle(Path(tempfile.gettempdir()) / "nnfc-standin-factory")
        name = f"standin-{args.target}"
    else:
        bundle_root = Path(args.bundle) if args.bundle else default_bundle_path()
        name = f"{bundle_root.name}-{args.target}"
    bundle = read_bundle(bundle_root)
    out = Path(args.out)
    from nnfc.targets import target_class
    options = ({"threads": args.threads}
               if args.threads and "threads" in target_class(args.target).option_help else {})
    target = make_target(args.target, options)
    data = profile_subnets(bundle, target, out / f"{name}.measurements.json",
                           subnets=args.subnets, runs=args.runs, rounds=args.rounds)
    data["_path"] = str(out / f"{name}.measurements.json")
    predictor, png = fit_and_save(bundle, args.target, data, out / f"{name}.json",
                                  out / f"{name}.png", target_options=options)
    report(predictor, data, options, args.target, bundle.root)
    print(f"  predictor {out / f'{name}.json'}, plot {png}")
    return 0


def report(predictor, data, options, target, root) -> None:
    """Print accuracy (5-fold CV and held-out), model selection, load and time per subnet."""
    import numpy as np
    acc = predictor.meta["accuracy"]
    rows = data["rows"]
    print(f"factory {root} on {target} ({predictor.meta['host'].get('cpu')}, "
          f"{options or 'default options'}), {len(rows)} subnets, latency "
          f"{min(r['latency_ms'] for r in rows):.2f}-{max(r['latency_ms'] for r in rows):.2f} ms")
    secs = [r["seconds"] for r in rows if r.get("seconds")]
    load = predictor.meta.get("load") or {}
    if secs:
        print(f"  profiling time per subnet: median {np.median(secs):.2f} s, mean "
              f"{np.mean(secs):.2f} s (prune + lower + measure)")
        lower = [r["lower_seconds"] for r in rows if r.get("lower_seconds") is not None]
        if lower:
            print(f"    of which lowering: median {np.median(lower):.3f} s, mean "
                  f"{np.mean(lower):.3f} s" + (
                      f" ({data['lowered']['derived']} derived from a converted subnet of the "
                      f"same graph, {data['lowered']['converted']} converted)"
                      if data.get("lowered") else ""))
    if load:
        print(f"  1-min load average while measuring: min {load['min']:.1f}, median "
              f"{load['median']:.1f}, max {load['max']:.1f}")
    ref = predictor.meta.get("reference")
    if ref:
        print(f"  drift-cancelled: relative to a reference subnet ({ref['gates']}), calibrated "
              f"at {ref['latency_ms']:.3f} ms")
    model = acc.get("latency_model", {})
    if model:
        print(f"  latency model: {model['feature_set']} (ridge {model['ridge']:g}), "
              f"{model['selected_by']}")
        print(f"    {'candidate':34s} {'feat':>5s} {'1-MAPE':>7s} {'±5%':>6s} {'±10%':>6s}")
        for name, t in model["cv_table"].items():
            print(f"    {name:34s} {t['features']:5d} {t['accuracy']:7.2%} "
                  f"{t['within_5']:6.1%} {t['within_10']:6.1%}")
    for key in ("latency", "memory"):
        cv, a = acc.get(f"{key}_cv"), acc[key]
        if cv:
            print(f"  {key:8s} {cv['folds']}-fold CV: 1-MAPE {cv['accuracy']:.2%}, within ±5% "
                  f"{cv['within_5']:.1%}, within ±10% {cv['within_10']:.1%} (n={cv['n']})")
        print(f"  {key:8s} held-out: 1-MAPE {a['accuracy']:.2%} on {a['n_test']} subnets "
              f"(p90 error {a['p90_rel_error']:.1%}, max {a['max_rel_error']:.1%})")
    margin = predictor.meta.get("margin")
    if margin:
        print(f"  safety margin (latency): {margin['latency']:.1%} = CV quantile "
              f"{margin['quantile']:.0%} of measured/predicted - 1")


if __name__ == "__main__":
    sys.exit(main())
