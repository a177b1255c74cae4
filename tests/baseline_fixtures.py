"""A tiny trained NumVQA factory with a fitted desktop profile, for the baseline tests."""

from __future__ import annotations

import tempfile
from pathlib import Path

_CACHE: dict[str, Path] = {}


def profiled_tiny_factory() -> Path:
    """Train the tiny factory (seconds) and profile it on desktop; once per process."""
    if "root" not in _CACHE:
        from factory_fixtures import train_tiny
        from nnfc.bundle import read_bundle
        from nnfc.compiler.fitting import fit_and_save
        from nnfc.compiler.pipeline import make_target
        from nnfc.profile_cache import shipped_profile_path
        from nnfc.compiler.profiler import profile_subnets

        root = Path(tempfile.mkdtemp(prefix="nnfc-baseline-fixture-")) / "factory"
        train_tiny(root)
        bundle = read_bundle(root)
        target = make_target("desktop", {"threads": 1})
        pred = shipped_profile_path(root, "desktop")  # shipped inside the bundle
        data = profile_subnets(bundle, target, pred.with_name("desktop.measurements.json"),
                               subnets=24, runs=3, warmup=1, rounds=1, progress=False)
        fit_and_save(bundle, "desktop", data, pred, target_options={"threads": 1})
        _CACHE["root"] = root
    return _CACHE["root"]
