"""``nnfc compile`` end to end: request -> search (predictor + assembler) -> prune (passes) ->
lower (target) -> measure -> equivalence check -> ``report.json``, written atomically.

Never imports torch.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from nnfc.bundle import Bundle, read_bundle
from nnfc.compiler.assembler_runtime import Assembler
from nnfc.compiler.graph_stats import graph_stats
from nnfc.compiler.predictor import Predictor, host_info
from nnfc.compiler.search import SEARCHES, SearchResult
from nnfc.errors import NnfcError
from nnfc.families.attrod.decode import deployable
from nnfc.onnx_io import shapes_only
from nnfc.outputs import check_output_dir, output_dir
from nnfc.units import format_mb, format_ms


def seconds_since_process_start() -> float | None:
    """Wall seconds since this process started (Linux /proc), else None."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 overall: starttime in clock ticks after boot
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def make_target(name: str, options: dict | None = None):
    """``get_target(name, **options)``, with a clear error for an option the target lacks."""
    from nnfc.targets import get_target
    try:
        target = get_target(name, **(options or {}))
    except TypeError as exc:
        raise NnfcError(f"target {name!r} does not take option(s) "
                        f"{', '.join(sorted(options or {}))}") from exc
    target.options = dict(options or {})
    return target


def default_profile_path(bundle_root: str | os.PathLike, target: str) -> Path:
    """Where ``nnfc profile`` writes a bundle's predictor for ``target`` by default."""
    return Path(bundle_root) / "profiles" / f"{target}.json"


def profile_command(bundle_root: str | os.PathLike, target: str) -> str:
    return f"nnfc profile --bundle {bundle_root} --target {target}"


def load_predictor_for(bundle: Bundle, target: str, path: str | os.PathLike | None = None,
                       device: str | None = None) -> Predictor:
    """The predictor for ``bundle`` on ``target``; a clear error naming the command that makes
    it when it is missing or was made for another factory, target or machine. A jetson target
    without a measured profile gets the roofline estimate of ``device`` (default: Orin Nano);
    a measured profile always wins."""
    cmd = profile_command(bundle.root, target) + (f" -o {path}" if path else "")
    explicit = path is not None
    path = Path(path) if path else default_profile_path(bundle.root, target)
    if target == "jetson" and not explicit and not path.is_file():
        from nnfc.compiler.cost_structure import analyse
        from nnfc.compiler.jetson_estimate import DEFAULT_MODULE, estimated_predictor
        return estimated_predictor(analyse(onnx.load(str(bundle.supernet_path))),
                                   str(bundle.root), device or DEFAULT_MODULE)
    if not path.is_file():
        raise NnfcError(f"no {target} profile for factory {bundle.root} ({path} is missing); "
                        f"make it with: {cmd}")
    predictor = Predictor.load(path)
    if predictor.target != target:
        raise NnfcError(f"{path} is a profile for target {predictor.target!r}, not {target!r}; "
                        f"make one with: {cmd}")
    want = bundle.manifest.get("files", {}).get("supernet.onnx")
    have = predictor.meta.get("bundle", {}).get("supernet_sha256")
    if want and have and want != have and not _same_architecture(predictor, bundle):
        raise NnfcError(f"{path} was made for another factory (supernet sha256 {have[:12]}…, "
                        f"this one is {want[:12]}…, another architecture); profile again "
                        f"with: {cmd}")
    if predictor.meta.get("measured_locally", True):
        made, here = predictor.meta.get("host", {}), host_info()
        if (made.get("cpu"), made.get("cores")) != (here["cpu"], here["cores"]):
            raise NnfcError(f"{path} was measured on another machine ({made.get('cpu')}, "
                            f"{made.get('cores')} cores; this one: {here['cpu']}, "
                            f"{here['cores']} cores); profile again with: {cmd}")
    return predictor


def _same_architecture(predictor: Predictor, bundle: Bundle) -> bool:
    """A profile of another supernet file still fits a retrained factory of the same graph."""
    from nnfc.compiler.profiler import same_factory
    return same_factory(predictor.meta["bundle"], bundle)


@dataclass
class ScenarioRequest:
    """An edge scenario to customise a model for: task attributes, target, budgets (None =
    unconstrained), output directory, factory and predictor profile (None: the defaults).
    ``nnfc compile`` and the baselines take it, with their own knobs in a subclass."""

    task: list[str]
    target: str
    out: Path
    lat_ms: float | None = None
    mem_mb: float | None = None
    bundle: Path | None = None
    profile: Path | None = None


@dataclass
class CompileRequest(ScenarioRequest):
    """What to build: the scenario, and how to search, measure and verify."""

    device: str | None = None          # jetson module of the estimate (no measured profile)
    method: str = "batched"            # or "algorithm1", "best" (see search.py)
    step: float = 0.01
    margin: float | None = None        # None: the predictor's calibrated margin (CV quantile)
    refine_rounds: int = 3             # measured rounds at most (step down / up; 1: no refining)
    step_up_below: float = 0.97        # step up when measured / budget lands below this
    runs: int | None = None            # None: as the profile measured its subnets
    warmup: int | None = None
    rounds: int | None = None
    verify: bool = True
    force: bool = False                # --force: write into a non-empty foreign directory
    count_startup: bool = True         # report time since process start (one compile per run)


def compile_model(req: CompileRequest) -> dict[str, Any]:
    """Run the whole compile and return the report (also written to ``out/report.json``)."""
    from nnfc.bundle import default_bundle_path
    from nnfc.passes import apply_gates, gates_to_json
    from nnfc.targets import get_target

    timings: dict[str, float] = {}
    started = seconds_since_process_start() if req.count_startup else None
    if started is not None:
        timings["startup"] = started
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    if req.lat_ms is None and req.mem_mb is None:
        raise NnfcError("give a budget: --lat (e.g. 5ms) and/or --mem (e.g. 50MB)")
    get_target(req.target)  # an unknown target is the first error
    bundle = read_bundle(req.bundle or default_bundle_path())
    check_output_dir(req.out, "compile", force=req.force, inputs=[bundle.root, req.profile])
    task_vec = bundle.encode_task(req.task)
    predictor = load_predictor_for(bundle, req.target, req.profile, req.device)
    # measure the artifact exactly as the profile measured its subnets (e.g. threads)
    target = make_target(req.target, predictor.meta.get("target_options"))
    store = getattr(target, "use_template_store", None)  # android: reuse earlier conversions
    if store is not None:
        store(_profile_dir(bundle, req) / f"{req.target}.templates")
    assembler = Assembler(bundle.assembler_path, predictor.structure.gates)
    lap("load")

    margins = predictor.margins if req.margin is None else (req.margin, req.margin)
    if req.method not in SEARCHES:
        raise NnfcError(f"unknown search method {req.method!r} ({', '.join(SEARCHES)})")
    search = SEARCHES[req.method]
    found: SearchResult = search(assembler, predictor, task_vec, req.lat_ms, req.mem_mb,
                                 step=req.step, margins=margins)
    lap("search")

    supernet = onnx.load(str(bundle.supernet_path))
    pruned = apply_gates(supernet, found.gates)
    lap("prune")

    with output_dir(req.out, "compile", force=req.force,
                    inputs=[bundle.root, req.profile]) as tmp:
        # detection bundles: the target runs the network joined to its decode graph
        artifact = _lower(target, pruned, tmp, bundle.manifest)
        lap("lower")

        meter = Meter(target, predictor, req, _profile_dir(bundle, req))
        bench = meter(artifact)
        lap("measure")
        rounds = [_round(found, bench)]
        if isinstance(bench, Measured) and req.lat_ms is not None and req.refine_rounds > 1:
            found, pruned, artifact, bench, rounds = _refine(
                req, assembler, predictor, task_vec, margins, supernet, apply_gates, target,
                meter, found, pruned, artifact, bench, tmp, bundle.manifest)
            lap("refine")
        (tmp / "gates.json").write_text(json.dumps(gates_to_json(found.gates)) + "\n",
                                        encoding="utf-8")

        diff = _equivalence(bundle, supernet, found.gates, target, artifact) if req.verify \
            else None
        stats = graph_stats(shapes_only(pruned))  # sizes from dims: no weight bytes copied
        lap("verify")
        # total: from process start when known (one compile per process), else from the call;
        # the swap into place that follows takes milliseconds
        timings["total"] = sum(timings.values())
        report = _report(req, bundle, found, predictor, margins, bench, stats, diff,
                         artifact.name, timings, target, rounds)
        (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        (tmp / "summary.txt").write_text(summary(report) + "\n", encoding="utf-8")
    return report


@dataclass
class Measured:
    """A compile-time latency measurement (ms) and how it was made."""

    latency_ms: float
    p90_ms: float | None
    runtime_memory_mb: float | None
    round_values: list[float]
    runs: int
    spread: float
    details: dict
    definition: str
    relative: float | None = None
    load: float | None = None


def _profile_dir(bundle: Bundle, req: CompileRequest) -> Path:
    return Path(req.profile).parent if req.profile else default_profile_path(
        bundle.root, req.target).parent


class Meter:
    """Measures artifacts as the profile measured its subnets: call by call against the
    profile's reference subnet where the target and profile allow (drift-cancelling, see
    ``measure_relative``), else the best of several rounds' medians."""

    def __init__(self, target, predictor: Predictor, req: CompileRequest, profile_dir: Path):
        from nnfc.compiler.measure import runner
        self.target, self.req = target, req
        prof = predictor.meta.get("profile", {})
        self.ref = predictor.meta.get("reference")
        self.ref_run = None
        self.note = None
        if self.ref and getattr(target, "runner", None) is not None:
            path = profile_dir / self.ref["artifact"]
            if path.is_file():
                self.ref_run = runner(target, path)
            else:
                self.note = (f"reference subnet {path} is missing: measured without drift "
                             "correction")
        relative = self.ref_run is not None
        # relative timing pairs every run with the reference: fewer, interleaved runs suffice
        self.runs = req.runs or (5 if relative else prof.get("runs") or 10)
        self.rounds = req.rounds or (3 if relative else prof.get("rounds") or 10)
        self.warmup = req.warmup if req.warmup is not None else (
            1 if relative else (prof.get("warmup") if prof.get("warmup") is not None else 3))

    def __call__(self, artifact: Path) -> "Measured | str":
        from nnfc.compiler.measure import (clock_for, clock_name, measure, measure_relative,
                                           runner)
        if self.ref_run is not None:
            clock = clock_for(self.target)
            m = measure_relative(runner(self.target, artifact), self.ref_run, runs=self.runs,
                                 warmup=self.warmup, rounds=self.rounds, clock=clock)
            ref_ms = float(self.ref["latency_ms"])
            return Measured(m.relative * ref_ms, None, None,
                            [r * ref_ms for r in m.round_ratios], m.runs, m.spread,
                            {"reference_ms_now": m.reference_ms,
                             "candidate_ms_now": m.candidate_ms},
                            "candidate / reference subnet (timed call by call, median over "
                            "rounds of median ratios) x the reference's calibrated latency "
                            f"{ref_ms:.4g} ms; batch 1; clock: {clock_name(clock)}",
                            m.relative, m.load)
        try:
            b = measure(self.target, artifact, runs=self.runs, warmup=self.warmup,
                        rounds=self.rounds)
        except NnfcError as exc:  # e.g. jetson without TensorRT here: the artifact still ships
            return str(exc)
        return Measured(b.latency_ms, b.p90_ms, b.runtime_memory_mb, b.round_medians, b.runs,
                        b.spread, dict(b.details), "best of the rounds' medians, batch 1"
                        + (f" ({self.note})" if self.note else ""), None, os.getloadavg()[0])


def _lower(target, pruned: onnx.ModelProto, work: Path, manifest: dict) -> Path:
    """Save what the target runs (``deployable``) as ``work/model.onnx`` and lower it."""
    onnx.save_model(deployable(pruned, manifest), str(work / "model.onnx"))
    return Path(target.lower(work / "model.onnx", work))


def _round(found: SearchResult, bench) -> dict[str, Any]:
    return {"limit": found.limit, "predicted_ms": found.latency_ms,
            "measured_ms": bench.latency_ms if isinstance(bench, Measured) else None}


def _refine(req, assembler, predictor, task_vec, margins, supernet, apply_gates, target, meter,
            found, pruned, artifact, bench, tmp: Path, manifest: dict):
    """Measure-and-adjust rounds (the paper's Algorithm 1 measures every round): while the
    measured latency breaks the budget, or lands below ``step_up_below`` of it, move to the
    grid limit whose prediction, rescaled by this artifact's measured / predicted ratio, fits
    best; keep the largest measured subnet within the budget. At most ``refine_rounds``."""
    from nnfc.compiler.assembler_runtime import select
    from nnfc.compiler.search import candidates
    limits, gates, lat, mem = candidates(assembler, predictor, task_vec, step=req.step)
    ratio = predictor.structure.activation_ratio(gates)
    mem_ok = np.ones(len(limits), bool) if req.mem_mb is None else \
        mem * (1.0 + margins[1]) <= req.mem_mb
    tried = {int(np.argmin(np.abs(limits - found.limit)))}
    cur = (found, pruned, artifact, bench)
    best = cur if bench.latency_ms <= req.lat_ms else None
    rounds = [_round(found, bench)]
    budget = req.lat_ms
    for r in range(1, req.refine_rounds):
        f, _, _, b = cur
        use = b.latency_ms / budget
        if use <= 1.0 and use >= req.step_up_below:
            break
        scale = b.latency_ms / max(f.latency_ms, 1e-9)   # this subnet's measured / predicted
        noise = max(0.01, b.spread / 2)
        ok = (lat * scale * (1.0 + noise) <= budget) & mem_ok
        ok[list(tried)] = False
        if use > 1.0:  # over budget: the largest smaller subnet that fits after rescaling
            ok &= ratio < f.activation_ratio
        else:          # far inside: a larger one that still fits after rescaling
            ok &= ratio > f.activation_ratio
        if not ok.any():
            if use > 1.0 and best is None:  # nothing fits the rescaled prediction: smallest
                ok = (ratio < f.activation_ratio) & mem_ok
                ok[list(tried)] = False
                if not ok.any():
                    break
                i = int(np.flatnonzero(ok)[np.argmin(ratio[ok])])
            else:
                break
        else:
            i = int(np.flatnonzero(ok)[np.argmax(ratio[ok])])
        tried.add(i)
        chosen = select(gates, i)
        nf = SearchResult(float(limits[i]), chosen, float(lat[i]), float(mem[i]),
                          float(ratio[i]), f.assembler_calls, f.candidates,
                          f"{f.method}+measured", found.trace)
        work = tmp / f"round{r + 1}"
        work.mkdir()
        npruned = apply_gates(supernet, chosen)
        nart = _lower(target, npruned, work, manifest)
        nb = meter(nart)
        if not isinstance(nb, Measured):
            break
        cur = (nf, npruned, nart, nb)
        rounds.append(_round(nf, nb))
        if nb.latency_ms <= budget and (best is None or nf.activation_ratio
                                        > best[0].activation_ratio):
            best = cur
    keep = best or cur
    if keep[2].parent != tmp:  # move the kept round's artifact into the output directory
        for old in list(tmp.iterdir()):
            if old.is_file():
                old.unlink()
        for f in keep[2].parent.iterdir():
            if f.is_file():
                os.replace(f, tmp / f.name)
        keep = (keep[0], keep[1], tmp / keep[2].name, keep[3])
    for d in tmp.iterdir():
        if d.is_dir() and d.name.startswith("round"):
            shutil.rmtree(d, ignore_errors=True)
    return (*keep, rounds)


def _equivalence(bundle: Bundle, supernet: onnx.ModelProto, gates: dict, target, artifact
                 ) -> float:
    """Largest |difference| between the artifact and the gated supernet on one random input,
    over every graph output (compared in order, shapes must agree)."""
    from nnfc.targets.onnxruntime import open_reference_session
    manifest = bundle.manifest if bundle is not None else {}
    run = deployable(supernet, manifest)
    # the bundle's file as loaded where nothing is joined to it (no re-serialising a large
    # supernet), else the deployable model itself
    session = open_reference_session(bundle.supernet_path if bundle is not None
                                     and run is supernet else run.SerializeToString())
    main = next(i for i in session.get_inputs() if not i.name.startswith("gate."))
    shape = [d if isinstance(d, int) else 1 for d in main.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    feeds = {main.name: x, **{k: np.asarray(v, np.float32) for k, v in gates.items()}}
    names = [o.name for o in session.get_outputs()]
    wants = session.run(None, feeds)
    gots = target.run(artifact, {main.name: x})
    if len(gots) != len(wants):
        raise NnfcError(f"the artifact has {len(gots)} output(s), the supernet {len(wants)} "
                        f"({', '.join(names)})")
    diff = 0.0
    for name, got, want in zip(names, gots, wants):
        if np.shape(got) != np.shape(want):
            raise NnfcError(f"the artifact's output {name} has shape {np.shape(got)}, the "
                            f"supernet's {np.shape(want)}")
        diff = max(diff, float(np.max(np.abs(np.asarray(got, np.float64) - want), initial=0.0)))
    return diff


def _measured(bench, mem: float) -> dict[str, Any]:
    if isinstance(bench, str):
        return {"latency_ms": None, "memory_mb": mem, "runtime_memory_mb": None,
                "not_measured": bench}
    return {"latency_ms": {"median": bench.latency_ms, "p90": bench.p90_ms,
                           "round_medians": bench.round_values, "spread": bench.spread},
            "memory_mb": mem, "runtime_memory_mb": bench.runtime_memory_mb, "runs": bench.runs,
            "relative_to_reference": bench.relative, "load": bench.load,
            "latency_definition": bench.definition}


def _utilisation(req, found, predictor, margins, lat, mem, measured: bool,
                 rounds=None) -> dict[str, Any]:
    """measured (or predicted) / budget per given budget, and whether it binds: the next grid
    limit's prediction breaks it, or (latency) a larger subnet measured in an earlier round
    did."""
    nxt = next((t for t in found.trace if t["limit"] > found.limit), None)
    out = {}
    for key, budget, value, m, unit in (("latency", req.lat_ms, lat, margins[0], "latency_ms"),
                                        ("memory", req.mem_mb, mem, margins[1], "memory_mb")):
        if budget is None or value is None:
            continue
        binding = nxt is not None and nxt[unit] * (1.0 + m) > budget
        if key == "latency":
            binding |= any(r["limit"] > found.limit and (r["measured_ms"] or 0) > budget
                           for r in rounds or [])
        out[key] = {"utilisation": value / budget, "binding": bool(binding),
                    "of": "measured" if measured or key == "memory" else "predicted"}
    return out


def _report(req, bundle, found, predictor, margins, bench, stats, diff, artifact, timings,
            target, rounds=None):
    mem = stats.memory_mb
    measured = not isinstance(bench, str)
    lat = bench.latency_ms if measured else found.latency_ms
    within = ((req.lat_ms is None or lat <= req.lat_ms)
              and (req.mem_mb is None or mem <= req.mem_mb))
    estimate = predictor.meta.get("estimated")
    return {
        "request": {"task": list(req.task), "target": req.target, "lat_ms": req.lat_ms,
                    "mem_mb": req.mem_mb},
        "limit": found.limit,
        "activation_ratio": found.activation_ratio,
        "params": stats.params,
        "flops": stats.flops,
        "predicted": {"latency_ms": found.latency_ms, "memory_mb": found.memory_mb},
        "measured": _measured(bench, mem),
        "within_budget": bool(within) if measured else None,
        "within_budget_predicted": bool(within) if not measured else None,
        "budget_use": _utilisation(req, found, predictor, margins, lat, mem, measured, rounds),
        "latency_estimated": estimate,
        "max_abs_diff_vs_supernet": diff,
        "artifact": artifact,
        "timings_s": dict(timings),
        "search": {"method": found.method, "assembler_calls": found.assembler_calls,
                   "candidates": found.candidates, "step": req.step,
                   "next_limit": next((t for t in found.trace if t["limit"] > found.limit),
                                      None),
                   "measured_rounds": rounds or [],
                   "safety_margin": {"latency": margins[0], "memory": margins[1],
                                     "source": (predictor.meta.get("margin") or {}).get(
                                         "source", "held-out p90 error")}},
        "memory_definition": "parameter bytes + largest intermediate tensor of the pruned graph "
                             "(MB = 1e6 bytes); runtime_memory_mb is what the runtime reports",
        **report_provenance(bundle, predictor, bench, target),
    }


def report_provenance(bundle, predictor, bench, target) -> dict[str, Any]:
    """The report's ``bundle``, ``predictor_accuracy`` and ``runtime`` entries."""
    return {
        "bundle": {"path": str(bundle.root),
                   "supernet_sha256": bundle.manifest.get("files", {}).get("supernet.onnx")},
        "predictor_accuracy": {k: predictor.meta.get("accuracy", {}).get(k, {}).get("accuracy")
                               for k in ("latency", "memory")},
        "runtime": {**(bench.details if not isinstance(bench, str) else {}),
                    "target_options": getattr(target, "options", {})},
    }


def summary(report: dict[str, Any]) -> str:
    """A few human lines about a compile report."""
    req = report["request"]
    budget = ", ".join(x for x in (
        f"latency ≤ {format_ms(req['lat_ms'])}" if req.get("lat_ms") else "",
        f"memory ≤ {format_mb(req['mem_mb'])}" if req.get("mem_mb") else "") if x)
    meas, pred = report["measured"], report["predicted"]
    t = report["timings_s"]
    diff = report.get("max_abs_diff_vs_supernet")
    est = report.get("latency_estimated")
    if meas["latency_ms"] is None:
        lat_line = (f"  latency  estimated {format_ms(pred['latency_ms'])} on "
                    f"{est['device']} (roofline estimate, not measured); measure the real "
                    f"device: {est['profile_command']}" if est else
                    f"  latency  predicted {format_ms(pred['latency_ms'])}, not measured here")
        verdict = ("within budget (predicted; measure on the device)"
                   if report["within_budget_predicted"] else "OVER BUDGET (predicted)")
    else:
        lat_line = (f"  latency  predicted {format_ms(pred['latency_ms'])}, "
                    f"measured {format_ms(meas['latency_ms']['median'])}"
                    + (f" (p90 {format_ms(meas['latency_ms']['p90'])})"
                       if meas["latency_ms"].get("p90") is not None else
                       " (drift-cancelled)" if meas.get("relative_to_reference") else ""))
        verdict = "within budget" if report["within_budget"] else "OVER BUDGET"
    runtime_mem = (f" (runtime reports {format_mb(meas['runtime_memory_mb'])})"
                   if meas.get("runtime_memory_mb") is not None else "")
    use = report.get("budget_use") or {}
    use_line = ", ".join(f"{k} {v['utilisation']:.1%} of budget ({v['of']}"
                         + (", binding)" if v["binding"] else ")") for k, v in use.items())
    lines = [
        f"task {{{', '.join(req['task'])}}} on {req['target']} with {budget}:",
        f"  limit {report['limit']:.0%} -> activation {report['activation_ratio']:.1%}, "
        f"{report['params'] / 1e6:.3f} M params, {report['flops'] / 1e6:.1f} MFLOPs",
        lat_line,
        f"  memory   predicted {format_mb(pred['memory_mb'])}, "
        f"measured {format_mb(meas['memory_mb'])}{runtime_mem}",
        *([f"  uses {use_line}"] if use_line else []),
        f"  {verdict}; "
        + (f"max |diff| vs gated supernet {diff:.2g}" if diff is not None else "not verified"),
        "  time " + ", ".join(f"{k} {v:.2f}s" for k, v in t.items()),
    ]
    return "\n".join(lines)
