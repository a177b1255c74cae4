"""Profile a target on this machine when no profile exists yet (a first ``nnfc compile``, the
demo): as many random subnets as fit in about half a minute, written to the user's cache
(:mod:`nnfc.profile_cache`), then fitted like ``nnfc profile``."""

from __future__ import annotations

import logging
import tempfile
import time

from nnfc.bundle import Bundle

log = logging.getLogger("nnfc")

MIN_SUBNETS = 12  # fewest subnets profiled (the predictor's fit needs a dozen)
MAX_SUBNETS = 250


def affordable_subnets(bundle: Bundle, target, seconds: float = 30.0) -> tuple[int, float]:
    """(How many subnets profile in about ``seconds``, at least ``MIN_SUBNETS``; the estimated
    seconds per subnet, :func:`seconds_per_subnet`)."""
    per = seconds_per_subnet(bundle, target)
    return int(min(MAX_SUBNETS, max(MIN_SUBNETS, seconds / per))), per


def seconds_per_subnet(bundle: Bundle, target) -> float:
    """Profiling time of one subnet: time the full supernet once (half of it is a fair average
    over random subnets) plus a fixed prune/lower/session cost per subnet."""
    import onnx

    from nnfc.compiler.measure import measure
    from nnfc.compiler.profiler import random_gates
    from nnfc.passes import apply_gates
    names = [f"gate.{g['name']}" for g in bundle.gate_layers]
    sizes = [int(g["size"]) for g in bundle.gate_layers]
    with tempfile.TemporaryDirectory(prefix="nnfc-profile-") as tmp:
        t0 = time.perf_counter()
        pruned = apply_gates(onnx.load(str(bundle.supernet_path)),
                             random_gates(names, sizes, 1)[0])
        onnx.save_model(pruned, f"{tmp}/m.onnx")
        artifact = target.lower(f"{tmp}/m.onnx", tmp)
        overhead = time.perf_counter() - t0
        lat_s = measure(target, artifact, runs=5, warmup=1, rounds=1).latency_ms / 1e3
    return overhead + 0.02 * 5 + 0.5 * lat_s * 12 * 5 * 1.5


def profile_here(bundle: Bundle, target: str, reason: str = "",
                 subnets: int | None = None, progress: bool = True):
    """Profile ``target`` on this machine into the user's cache and return the predictor."""
    from nnfc.compiler.fitting import fit_and_save
    from nnfc.compiler.pipeline import make_target
    from nnfc.compiler.profiler import profile_subnets
    from nnfc.profile_cache import cache_profile_path
    from nnfc.targets import target_class

    pred_path = cache_profile_path(bundle.root, target)
    options = dict(target_class(target).repeatable_options)
    tgt = make_target(target, options)
    t0 = time.perf_counter()
    count, per = (subnets, None) if subnets else affordable_subnets(bundle, tgt)
    log.info("no %s profile of this factory on this machine%s: profiling %d subnets first (%s"
             "once; saved in %s)", target, f" ({reason})" if reason else "", count,
             f"about {count * per:.0f} s, " if per else "", pred_path.parent)
    data = profile_subnets(bundle, tgt, pred_path.with_name(pred_path.stem + ".measurements.json"),
                           subnets=count, runs=10, warmup=2, rounds=5, resume=False,
                           progress=progress)
    predictor, _ = fit_and_save(bundle, target, data, pred_path, None, target_options=options)
    acc = predictor.meta["accuracy"]
    log.info("predictor: latency %.1f%%, memory %.1f%% on %d held-out subnets (%d profiled in "
             "%.0f s)", 100 * acc["latency"]["accuracy"], 100 * acc["memory"]["accuracy"],
             acc["latency"]["n_test"], count, time.perf_counter() - t0)
    return predictor
