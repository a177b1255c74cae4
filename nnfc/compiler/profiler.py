"""Profile random subnets of a factory on a target: prune each random gate vector with the passes,
lower it, measure it (batch 1) and record latency and memory.

Where the target can run one inference at a time (``runner``), every subnet is timed call by call
interleaved with a fixed *reference* subnet (half of every gate's channels on) and recorded as
candidate / reference (``measure_relative``): a load that comes and goes slows both alike and
cancels. Milliseconds are that ratio times the reference's calibrated latency (a low percentile
of its medians over the whole profile, i.e. its latency on a quiet machine). The lowered
reference is kept beside the measurements so compile can time artifacts against the same model.
Other targets keep the best of several rounds' medians (``measure``). Every row records the
load average; after profiling, subnets the fitted model misses by far are measured again.

Gate vectors cover the whole range of activation ratios: subnet *i* gets a target ratio from a
shuffled even grid over [2%, 100%], and each layer jitters around it. The measurement file is
rewritten atomically after every subnet and resumed from where it stopped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import onnx

from nnfc.bundle import Bundle, sha256_file
from nnfc.compiler.graph_stats import graph_stats
from nnfc.compiler.measure import clock_for, clock_name, measure, measure_relative, runner
from nnfc.atomic import copy_file_atomic, write_json_atomic
from nnfc.compiler.predictor import host_info, pack_gates
from nnfc.onnx_io import shapes_only
from nnfc.errors import NnfcError
from nnfc.file_schemas import DEVICE_PLAN, MEASUREMENTS
from nnfc.schema import SchemaError

MEASUREMENTS_FORMAT = "nnfc-profile-measurements"


def random_gates(names: Sequence[str], sizes: Sequence[int], count: int, seed: int = 0,
                 min_ratio: float = 0.02) -> list[dict[str, np.ndarray]]:
    """``count`` random gate vectors whose activation ratios spread evenly over [min_ratio, 1].

    Subnet 0 is the full supernet. Subnet *i* targets the ratio of a golden-ratio sequence (so
    every prefix covers the range evenly and a resumed run continues the same plan); each layer
    jitters around it, and at least one channel per layer stays on. Deterministic per (seed, i).
    """
    golden = (np.sqrt(5.0) - 1.0) / 2.0
    out = [{n: np.ones(s, dtype=np.float32) for n, s in zip(names, sizes)}]
    for i in range(1, count):
        rng = np.random.default_rng([seed, i])
        r = min_ratio + (1.0 - min_ratio) * ((0.5 + i * golden) % 1.0)
        gates = {}
        spread = rng.uniform(0.0, 0.25)
        for name, size in zip(names, sizes):
            layer_ratio = float(np.clip(r + rng.normal(0.0, spread), 0.0, 1.0))
            k = int(np.clip(round(layer_ratio * size), 1, size))
            g = np.zeros(size, dtype=np.float32)
            g[rng.choice(size, k, replace=False)] = 1.0
            gates[name] = g
        out.append(gates)
    return out[:count]


def reference_gates(names: Sequence[str], sizes: Sequence[int]) -> dict[str, np.ndarray]:
    """The fixed reference subnet timed beside every candidate: the first half of each gate."""
    out = {}
    for name, size in zip(names, sizes):
        g = np.zeros(size, dtype=np.float32)
        g[: max(1, (size + 1) // 2)] = 1.0
        out[name] = g
    return out


#: Which low percentile of the reference's per-subnet medians calibrates it (its quiet latency).
REFERENCE_PERCENTILE = 10.0


def reference_latency(data: dict[str, Any]) -> float | None:
    """The reference's calibrated latency (ms) for a measurement file: a low percentile of its
    medians over all profiled subnets (the first calibration when there are fewer than 10)."""
    ref = data.get("reference") or {}
    seen = [float(r["reference_ms"]) for r in data.get("rows", []) if r.get("reference_ms")]
    if len(seen) >= 10:
        return float(np.percentile(seen, REFERENCE_PERCENTILE))
    return ref.get("calibration_ms")


def apply_reference(data: dict[str, Any]) -> None:
    """(Re)compute every relative row's ``latency_ms`` from the reference's calibration."""
    ref_ms = reference_latency(data)
    if ref_ms is None:
        return
    data["reference"]["latency_ms"] = ref_ms
    for row in data["rows"]:
        if row.get("relative") is not None:
            row["latency_ms"] = float(row["relative"]) * ref_ms


def bundle_fingerprint(bundle: Bundle) -> dict[str, str]:
    """What a profile belongs to: the bundle path, its supernet's sha256 and its architecture's
    (see :func:`architecture_sha256`)."""
    return {"path": str(bundle.root), "supernet_sha256": supernet_sha256(bundle),
            "architecture_sha256": architecture_sha256(bundle.supernet_path)}


def supernet_sha256(bundle: Bundle) -> str:
    """The sha256 of the bundle's ``supernet.onnx`` (from the manifest where it is recorded)."""
    return bundle.manifest.get("files", {}).get("supernet.onnx") or sha256_file(
        bundle.supernet_path)


def architecture_sha256(path: str | os.PathLike) -> str:
    """The sha256 of an ONNX model with its initializers' values left out (names, shapes and
    types kept): two factories with the same graph and other weights — a retrained one — share
    it, so a latency/memory profile, which does not depend on weight values, stays valid."""
    import hashlib
    model = onnx.load(str(path))
    for i, t in enumerate(model.graph.initializer):
        model.graph.initializer[i].CopyFrom(onnx.TensorProto(name=t.name, dims=t.dims,
                                                             data_type=t.data_type))
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()


def same_factory(recorded: Any, bundle: Bundle) -> bool:
    """Whether a profile's or measurement file's ``bundle`` record belongs to ``bundle``: the
    same supernet file, or (when the record has one) the same architecture."""
    if not isinstance(recorded, dict):
        return False
    if recorded.get("supernet_sha256") in (None, supernet_sha256(bundle)):
        return True
    arch = recorded.get("architecture_sha256")
    return bool(arch) and arch == architecture_sha256(bundle.supernet_path)


def load_measurements(path: Path, bundle: Bundle, target: str) -> dict[str, Any] | None:
    """An existing measurement file for the same bundle and target, or None (none there, or
    one for another bundle or target). A file that is not a measurement file nnfc wrote is an
    NnfcError: resuming from it or overwriting it would lose someone's data."""
    if not os.path.lexists(path):
        return None
    try:
        data = read_measurement_json(path, "measurement file")
    except NnfcError as exc:
        raise NnfcError(f"cannot resume: {exc}; move it away or pass --fresh") from None
    problem = measurement_problem(data)
    if problem or data.get("format") != MEASUREMENTS_FORMAT:
        raise NnfcError(f"cannot resume from {path}: "
                        f"{problem or 'it is not an nnfc measurement file'}; move it away or "
                        "pass --fresh")
    if data.get("target") != target or not same_factory(data.get("bundle"), bundle):
        return None
    return data


MAX_MEASUREMENTS_BYTES = 256 << 20


def measurement_problem(data: Any, need_index: bool = True) -> str:
    """Why ``data`` is not ``{"rows": [{"gates": {...}, "latency_ms": ...}, ...]}`` with
    finite, positive figures (:data:`nnfc.file_schemas.MEASUREMENTS`; "" if it is)."""
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        return "it has no measurement rows (expected an object with a list 'rows')"
    try:
        MEASUREMENTS.check(data)
    except SchemaError as exc:
        return f"field {exc.field}: {exc.message}"
    if need_index:
        for i, row in enumerate(data["rows"]):
            if "index" not in row:
                return f"row {i} has no integer 'index'"
    return ""


def read_measurement_json(path: Path, what: str) -> Any:
    """A measurement or plan file through :func:`nnfc.jsonfile.read_json`; callers check its
    schema (``file_schemas.MEASUREMENTS`` / ``DEVICE_PLAN``)."""
    from nnfc.jsonfile import read_json
    return read_json(path, what=what, max_bytes=MAX_MEASUREMENTS_BYTES)


def profile_subnets(bundle: Bundle, target, path: str | os.PathLike, subnets: int = 300,
                    runs: int = 10, warmup: int = 3, rounds: int = 10, seed: int = 0,
                    resume: bool = True,
                    progress: bool = True, remeasure: bool = True,
                    on_row: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Measure ``subnets`` random subnets on ``target``; write and return the measurements.

    Each row: packed gates, activation ratio, median/p90 latency (ms), the runtime's memory
    reading, and the pruned graph's exact params, FLOPs, parameter bytes and largest tensor."""
    from nnfc.passes import apply_gates  # the passes import onnx-ir: load only when profiling
    path = Path(path)
    data = load_measurements(path, bundle, target.name) if resume else None
    settings = {"seed": seed, "runs": runs, "warmup": warmup, "rounds": rounds,
                "target_options": dict(getattr(target, "options", {}) or {})}
    here = host_info()
    if data is not None and (any(data.get(k) != v for k, v in settings.items())
                             or {k: data.get("host", {}).get(k) for k in ("cpu", "cores")}
                             != {k: here[k] for k in ("cpu", "cores")}):
        data = None  # measured differently or elsewhere: rows not comparable, start over
    if data is None:
        data = {"format": MEASUREMENTS_FORMAT, "version": 1, "target": target.name,
                "bundle": bundle_fingerprint(bundle), "host": here, "seed": seed,
                "target_options": dict(getattr(target, "options", {}) or {}),
                "runs": runs, "warmup": warmup, "rounds": rounds,
                "latency": "min over rounds of the median of runs (batch 1)", "rows": []}
    names = [f"gate.{g['name']}" for g in bundle.gate_layers]
    sizes = [int(g["size"]) for g in bundle.gate_layers]
    supernet = onnx.load(str(bundle.supernet_path))
    prepare = getattr(target, "prepare_profiling", None)  # e.g. android: reuse conversions
    if prepare is not None:
        prepare()
    with tempfile.TemporaryDirectory(prefix="nnfc-reference-") as tmp:
        ref_run = _reference(data, path, supernet, apply_gates, target, names, sizes,
                             Path(tmp), runs, warmup, rounds)
    if ref_run is not None and data["rows"] and data["rows"][0].get("relative") is None:
        data["rows"], data["failed"] = [], []  # measured without the reference: not comparable
    failed: list[dict] = data.setdefault("failed", [])
    done = len(data["rows"])
    if done >= subnets:
        apply_reference(data)
        return data
    start = 1 + max([r["index"] for r in data["rows"]] + [f["index"] for f in failed] + [-1])
    plan = random_gates(names, sizes, start + 2 * subnets, seed)
    from tqdm import tqdm
    bar = tqdm(total=subnets, initial=done, desc=f"profiling {target.name}", unit="subnet",
               disable=not progress)
    i = start
    with tempfile.TemporaryDirectory(prefix="nnfc-profile-") as tmp:
        while len(data["rows"]) < subnets:
            if i >= len(plan):
                plan = random_gates(names, sizes, 2 * len(plan), seed)
            gates = plan[i]
            work = Path(tmp) / f"subnet{i}"
            work.mkdir()
            try:
                row = _profile_one(i, gates, supernet, apply_gates, target, work, runs, warmup,
                                   rounds, sum(sizes), ref_run, data.get("reference"))
            except NnfcError as exc:  # one bad subnet is reported and skipped, not fatal
                failed.append({"index": i, "error": str(exc)})
                bar.write(f"subnet {i}: {exc}")
                if len(failed) > max(3, subnets // 10):
                    write_json_atomic(path, data)
                    raise NnfcError(f"{len(failed)} subnets failed to prune, lower or measure "
                                    f"on {target.name}; last: {exc}") from exc
                row = None
            finally:
                shutil.rmtree(work, ignore_errors=True)
            i += 1
            if row is None:
                continue
            data["rows"].append(row)
            write_json_atomic(path, data)
            if on_row:
                on_row(row)
            bar.set_postfix(lat=f"{row['latency_ms']:.2f}ms",
                            ratio=f"{row['activation_ratio']:.2f}", load=f"{row['load']:.1f}",
                            refresh=False)
            bar.update(1)
        bar.close()
        if ref_run is not None and remeasure and not data.get("outliers_remeasured"):
            _remeasure_outliers(data, path, supernet, apply_gates, target, Path(tmp), runs,
                                warmup, rounds, sum(sizes), ref_run, progress)
    lowered = getattr(target, "lowered", None)  # e.g. android: derived vs converted
    if lowered:
        data["lowered"] = dict(lowered)
    apply_reference(data)
    write_json_atomic(path, data)
    return data


def _reference(data, path: Path, supernet, apply_gates, target, names, sizes, tmp: Path, runs,
               warmup, rounds):
    """Lower the reference subnet once (kept beside the measurements as
    ``<name>.reference<suffix>``), calibrate it, and return a callable running it; None where
    the target cannot run one inference at a time."""
    if getattr(target, "runner", None) is None:
        return None
    work = tmp / "reference"
    work.mkdir()
    pruned = apply_gates(supernet, reference_gates(names, sizes))
    onnx.save_model(pruned, str(work / "model.onnx"))
    artifact = Path(target.lower(work / "model.onnx", work))
    digest = sha256_file(artifact)
    stem = path.name[: -len(".measurements.json")] if path.name.endswith(
        ".measurements.json") else path.stem
    keep = path.with_name(f"{stem}.reference{artifact.suffix}")
    ref = data.get("reference") or {}
    clock = clock_for(target)
    if ref.get("sha256") != digest or ref.get("clock") != clock_name(clock):
        data["rows"], data["failed"] = [], []  # another reference or clock: rows are void
        ref_run = runner(target, artifact)
        first = measure_relative(ref_run, ref_run, runs=runs, warmup=warmup, rounds=3,
                                 clock=clock)
        data["reference"] = {"gates": "first half of every gate's channels on",
                             "artifact": keep.name, "sha256": digest,
                             "calibration_ms": first.reference_ms, "latency_ms": None,
                             "percentile": REFERENCE_PERCENTILE,
                             "latency": "calibration: a low percentile of the reference's "
                                        "medians over all subnets (its quiet latency)"}
        data["latency"] = ("relative to the reference subnet timed call by call beside each "
                           "subnet (median over rounds of median ratios) x the reference's "
                           f"calibrated latency; batch 1; clock: {clock_name(clock_for(target))}")
        data["reference"]["clock"] = clock_name(clock_for(target))
    if os.path.islink(keep) or not keep.is_file() or sha256_file(keep) != digest:
        copy_file_atomic(artifact, keep)
    return runner(target, keep)


def _remeasure_outliers(data, path: Path, supernet, apply_gates, target, tmp: Path, runs,
                        warmup, rounds, total_size, ref_run, progress: bool) -> None:
    """Measure again the subnets a 5-fold cross-validated fit misses by more than 3 robust
    standard deviations (and 4 %), at most a tenth of them; keep the second measurement."""
    from nnfc.compiler.cost_analysis import analyse
    from nnfc.compiler.predictor import cv_residuals
    rows = data["rows"]
    if len(rows) < 50:
        return
    apply_reference(data)
    rel = cv_residuals(analyse(supernet), rows)
    scale = 1.4826 * float(np.median(np.abs(rel - np.median(rel))))
    bad = np.flatnonzero((np.abs(rel) > 3.0 * scale) & (np.abs(rel) > 0.04))
    bad = bad[np.argsort(-np.abs(rel[bad]))][: max(1, len(rows) // 10)]
    from tqdm import tqdm
    for j in tqdm(bad, desc="re-measuring outliers", unit="subnet", disable=not progress):
        old = rows[int(j)]
        from nnfc.compiler.predictor import unpack_gates
        work = tmp / f"again{old['index']}"
        work.mkdir()
        try:
            row = _profile_one(old["index"], unpack_gates(old["gates"]), supernet, apply_gates,
                               target, work, runs, warmup, rounds, total_size, ref_run,
                               data.get("reference"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        row["remeasured"] = {"relative": old.get("relative"), "cv_error": float(rel[j]),
                             "load": old.get("load")}
        rows[int(j)] = row
    data["outliers_remeasured"] = {"count": int(len(bad)),
                                   "rule": "5-fold CV error > 3 robust sd and > 4 %"}
    write_json_atomic(path, data)


#: every n-th subnet's runtime memory is measured in a fresh process (~1.5 s each), so that
#: the profile records how far the runtime's memory lies from the computed figure
MEMORY_PROBE_EVERY = 5


def _probed_memory(i: int, target, artifact) -> float | None:
    """Peak RSS growth (MB) of a process loading and running ``artifact``, for every
    ``MEMORY_PROBE_EVERY``-th subnet; None for the others or where it cannot run."""
    if i % MEMORY_PROBE_EVERY:
        return None
    from nnfc.targets.memory_probe import measure_runtime_memory
    probe = measure_runtime_memory(target.name, artifact,
                                   (getattr(target, "options", {}) or {}).get("threads"))
    return probe["peak_rss_growth_mb"] if probe else None


def _profile_one(i, gates, supernet, apply_gates, target, work: Path, runs, warmup, rounds,
                 total_size, ref_run=None, reference=None) -> dict[str, Any]:
    """Prune, lower and measure one subnet; its measurement row."""
    t0, c0 = time.perf_counter(), time.process_time()
    pruned = apply_gates(supernet, gates)
    stats = graph_stats(shapes_only(pruned))  # sizes from dims: no weight bytes copied
    onnx.save_model(pruned, str(work / "model.onnx"))
    t_lower = time.perf_counter()
    artifact = target.lower(work / "model.onnx", work)
    t_lower = time.perf_counter() - t_lower
    on = sum(float(g.sum()) for g in gates.values())
    row = {"index": i, "gates": pack_gates(gates), "activation_ratio": on / max(1, total_size)}
    if ref_run is not None:
        m = measure_relative(runner(target, artifact), ref_run, runs=runs, warmup=warmup,
                             rounds=max(3, rounds // 2), clock=clock_for(target))
        row.update(latency_ms=m.relative * float(reference["calibration_ms"]),
                   relative=m.relative, candidate_ms=m.candidate_ms, reference_ms=m.reference_ms,
                   round_ratios=m.round_ratios, outlier_rounds=m.outlier_rounds, load=m.load,
                   runtime_memory_mb=_probed_memory(i, target, artifact))
    else:
        result = measure(target, artifact, runs=runs, warmup=warmup, rounds=rounds)
        row.update(latency_ms=result.latency_ms, latency_p90_ms=result.p90_ms,
                   round_medians_ms=result.round_medians,
                   runtime_memory_mb=result.runtime_memory_mb, load=os.getloadavg()[0])
    row.update(graph_memory_mb=stats.memory_mb, params=stats.params,
               param_bytes=stats.param_bytes, peak_tensor_bytes=stats.peak_tensor_bytes,
               flops=stats.flops, seconds=time.perf_counter() - t0, lower_seconds=t_lower,
               cpu_seconds=time.process_time() - c0)
    return row


def read_measurements(path: str | os.PathLike) -> dict[str, Any]:
    """A measurement file written by ``nnfc profile`` or converted from device-side runs.

    Needs ``rows`` with ``gates`` ({gate: "0101…" or [0,1,…]}), ``latency_ms`` and a memory
    figure (``graph_memory_mb`` or ``runtime_memory_mb``)."""
    path = Path(path)
    data = read_measurement_json(path, "measurement file")
    problem = measurement_problem(data, need_index=False)
    if problem:
        raise NnfcError(f"{path}: {problem}")
    if not data["rows"]:
        raise NnfcError(f"{path} has no measurement rows")
    return data


# ---- profiling on a device this machine cannot drive (e.g. a Jetson) ------------------------
PLAN_FORMAT = "nnfc-device-plan"
PLAN_NAME = "plan.json"



def export_device_subnets(bundle: Bundle, target, out_dir: str | os.PathLike,
                          subnets: int = 300, seed: int = 0, progress: bool = True) -> Path:
    """Prune ``subnets`` random gate vectors, lower each for ``target`` into ``out_dir`` as
    ``subnet<i>.onnx`` with a ``plan.json`` (their gates) and the target's device-side
    profiling script. Returns the script's path; measure there, then ``nnfc profile fit``."""
    from nnfc.passes import apply_gates
    writer = getattr(target, "write_device_profile_script", None)  # a DeviceProfiling hook
    if writer is None:
        raise NnfcError(f"target {target.name!r} has no device-side profiling script; "
                        f"profile it directly with `nnfc profile --target {target.name}`")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [f"gate.{g['name']}" for g in bundle.gate_layers]
    sizes = [int(g["size"]) for g in bundle.gate_layers]
    supernet = onnx.load(str(bundle.supernet_path))
    rows, files = [], []
    from tqdm import tqdm
    with tempfile.TemporaryDirectory(prefix="nnfc-device-") as tmp:
        for i, gates in enumerate(tqdm(random_gates(names, sizes, subnets, seed),
                                       desc=f"exporting {target.name} subnets", unit="subnet",
                                       disable=not progress)):
            pruned = apply_gates(supernet, gates)
            stats = graph_stats(shapes_only(pruned))
            work = Path(tmp) / f"s{i}"
            work.mkdir()
            onnx.save_model(pruned, str(work / "model.onnx"))
            lowered = Path(target.lower(work / "model.onnx", work))
            if lowered.suffix != ".onnx":
                lowered = work / "model.onnx"
            dst = out_dir / f"subnet{i:04d}.onnx"
            os.replace(lowered, dst)
            files.append(dst)
            on = sum(float(g.sum()) for g in gates.values())
            rows.append({"index": i, "model": dst.name, "gates": pack_gates(gates),
                         "activation_ratio": on / max(1, sum(sizes)),
                         "graph_memory_mb": stats.memory_mb, "params": stats.params,
                         "param_bytes": stats.param_bytes,
                         "peak_tensor_bytes": stats.peak_tensor_bytes, "flops": stats.flops})
    write_json_atomic(out_dir / PLAN_NAME, {
        "format": PLAN_FORMAT, "version": 1, "target": target.name,
        "bundle": bundle_fingerprint(bundle), "seed": seed, "rows": rows})
    return Path(writer(files, out_dir))


def read_device_measurements(path: str | os.PathLike, target, plan: str | os.PathLike | None
                             = None) -> dict[str, Any]:
    """Join a device log (parsed by the target's ``parse_device_measurements``) with the
    ``plan.json`` written beside the subnets; returns measurement data ``fit`` accepts."""
    path = Path(path)
    parse = getattr(target, "parse_device_measurements", None)  # a DeviceProfiling hook
    if parse is None:
        raise NnfcError(f"target {target.name!r} has no device measurement parser; give "
                        "measurements as JSON ({'rows': [{'gates': ..., 'latency_ms': ...}]})")
    plan_path = Path(plan) if plan else path.with_name(PLAN_NAME)
    try:
        plan_data = read_measurement_json(plan_path, "subnet plan")
    except NnfcError as exc:
        raise NnfcError(f"{exc} (the plan is written by `nnfc profile --device-dir`)") from None
    if not isinstance(plan_data, dict) or plan_data.get("format") != PLAN_FORMAT:
        raise NnfcError(f"{plan_path} is not an nnfc device plan")
    try:
        DEVICE_PLAN.check(plan_data)
    except SchemaError as exc:
        raise NnfcError(f"subnet plan {plan_path}: field {exc.field}: {exc.message}") from None
    by_model = {r["model"]: r for r in plan_data["rows"]}
    rows = []
    for measured in parse(path):
        planned = by_model.get(Path(str(measured.get("model"))).name)
        if planned is None:
            raise NnfcError(f"{path}: model {measured['model']} is not in {plan_path}")
        rows.append({**planned, **{k: v for k, v in measured.items() if k != "model"}})
    data = {"format": MEASUREMENTS_FORMAT, "version": 1, "target": plan_data["target"],
            "bundle": plan_data["bundle"], "host": {"device": f"{target.name} (device log "
                                                              f"{path.name})"},
            "seed": plan_data.get("seed"), "rows": rows}
    problem = measurement_problem(data, need_index=False)  # the device's figures, checked
    if problem:
        raise NnfcError(f"{path}: {problem}")
    return data
