"""Latency predictor accuracy per precision: each profile's 5-fold cross-validated share of
subnets predicted within ±10 % and ±5 % (and 1 - MAPE), as `nnfc profile` recorded it.

    python benchmarks/precision_predictor_accuracy.py fp32.json int8.json ...
"""

from __future__ import annotations

import sys

from nnfc.compiler.predictor import Predictor


def main(paths: list[str]) -> None:
    print("| profile | target | precision | subnets | 1 - MAPE (CV) | within ±10 % | within ±5 % "
          "| held-out p90 error |")
    print("|---|---|---|---|---|---|---|---|")
    for path in paths:
        p = Predictor.load(path)
        acc = p.meta.get("accuracy", {})
        cv = acc.get("latency_cv") or {}
        held = acc.get("latency") or {}
        print(f"| {path.rsplit('/', 1)[-1]} | {p.target} | {p.meta.get('precision', 'fp32')} | "
              f"{cv.get('n', '?')} | {cv.get('accuracy', float('nan')):.1%} | "
              f"{cv.get('within_10', float('nan')):.1%} | {cv.get('within_5', float('nan')):.1%} "
              f"| {held.get('p90_rel_error', float('nan')):.1%} |")


if __name__ == "__main__":
    main(sys.argv[1:])
