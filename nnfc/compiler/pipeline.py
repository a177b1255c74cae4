"""``nnfc compile`` end to end: request -> search (predictor + assembler) -> prune (passes) ->
lower (target) -> measure -> equivalence check -> ``report.json``, written atomically.

Never imports torch.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from nnfc.bundle import Bundle, read_bundle
from nnfc.compiler.assembler_runtime import Assembler
from nnfc.compiler.measured_rounds import (Round, RoundBuilder, candidates_for, keep,
                                           next_candidate, settle, uses_budget_well)
from nnfc.compiler.predictor import Predictor, host_info
from nnfc.compiler.search import SEARCHES, SearchResult
from nnfc.errors import NnfcError
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


def default_profile_path(bundle_root: str | os.PathLike, target: str,
                         precision: str = "fp32") -> Path:
    """Where ``nnfc profile`` writes a bundle's predictor for ``target`` (and ``precision``)
    by default: this host's entry in the user's cache (:mod:`nnfc.profile_cache`)."""
    from nnfc.profile_cache import cache_profile_path
    return cache_profile_path(bundle_root, target, precision)


def profile_in_use(bundle_root: str | os.PathLike, target: str,
                   explicit: str | os.PathLike | None = None, precision: str = "fp32") -> Path:
    """The profile a compile reads: ``explicit``, else the cached or shipped one of
    ``precision`` (``auto``: an int8, else fp16 one), else the fp32 one, else where a new one
    would be written."""
    from nnfc.profile_cache import cache_profile_path, find_profile
    if explicit:
        return Path(explicit)
    wanted = {"fp32": [], "auto": ["int8", "fp16"]}.get(precision, [precision])
    # a precision's own profile lives only in the cache (a bundle ships one fp32 profile per
    # target): else this host's fp32 profile must win over the bundle's
    own = next((p for p in (cache_profile_path(bundle_root, target, w) for w in wanted)
                if p.is_file()), None)
    return own or find_profile(bundle_root, target) or default_profile_path(bundle_root, target)


class ProfileMissing(NnfcError):
    """No usable profile: none for this factory and target, or one measured on another
    machine (a compile then profiles this one, unless told not to)."""


def profile_command(bundle_root: str | os.PathLike, target: str) -> str:
    return f"nnfc profile --bundle {bundle_root} --target {target}"


def load_predictor_for(bundle: Bundle, target: str, path: str | os.PathLike | None = None,
                       device: str | None = None, precision: str = "fp32") -> Predictor:
    """The predictor for ``bundle`` on ``target``; a clear error naming the command that makes
    it when it is missing or was made for another factory, target or machine. A jetson target
    without a measured profile gets the roofline estimate of ``device`` (default: Orin Nano);
    a measured profile always wins. ``precision``: that precision's profile where one exists
    (its ``meta["precision"]`` says which was read)."""
    cmd = profile_command(bundle.root, target) + (f" -o {path}" if path else "")
    explicit = path is not None
    path = profile_in_use(bundle.root, target, path, precision)
    if target == "jetson" and not explicit and not path.is_file():
        from nnfc.compiler.cost_analysis import analyse
        from nnfc.compiler.jetson_estimate import DEFAULT_MODULE, estimated_predictor
        return estimated_predictor(analyse(onnx.load(str(bundle.supernet_path))),
                                   str(bundle.root), device or DEFAULT_MODULE,
                                   {"fp16": "fp16", "int8": "int8", "auto": "int8"}.get(
                                       precision, "fp32"))
    if not path.is_file():
        raise (NnfcError if explicit else ProfileMissing)(
            f"no {target} profile for factory {bundle.root} ({path} is missing); make it "
            f"with: {cmd}")
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
            raise (NnfcError if explicit else ProfileMissing)(
                f"{path} was measured on another machine ({made.get('cpu')}, "
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

    task: list[str] | str              # attributes, or a phrase ("crimson cars": task_text.py)
    target: str
    out: Path
    lat_ms: float | None = None
    mem_mb: float | None = None
    bundle: Path | None = None
    profile: Path | None = None
    task_text: str | None = None       # the phrase as written (set when the task is resolved)


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
    precision: str = "fp32"            # fp32, fp16, int8 or auto (nnfc.precision)
    max_drop: float = 1.0              # points of the family's metric the precision may lose
    auto_profile: bool = True          # no usable profile: profile this machine first
    force: bool = False                # --force: write into a non-empty foreign directory
    count_startup: bool = True         # report time since process start (one compile per run)


def compile_model(req: CompileRequest) -> dict[str, Any]:
    """Run the whole compile and return the report (also written to ``out/report.json``)."""
    from nnfc.factories import resolve_factory
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
    bundle = read_bundle(resolve_factory(req.bundle))
    check_output_dir(req.out, "compile", force=req.force, inputs=[bundle.root, req.profile])
    resolve_task(bundle, req)
    task_vec = bundle.encode_task(req.task)
    predictor, profiled = _predictor(bundle, req)
    if profiled:
        lap("profile")
    if req.precision == "auto" and req.profile is None and req.method in SEARCHES:
        from nnfc.precision.auto import choose
        predictor = choose(bundle, req, task_vec, predictor, lambda p: load_predictor_for(
            bundle, req.target, None, req.device, p))
    # measure the artifact exactly as the profile measured its subnets (e.g. threads)
    target = make_target(req.target, predictor.meta.get("target_options"))
    from nnfc.precision.stage import check as check_precision
    check_precision(req.precision, target)  # a precision the target refuses: before any work
    measured_in = predictor.meta.get("precision", "fp32")
    if measured_in != "fp32" and req.precision in (measured_in, "auto"):
        # the profile measured this precision: so do the rounds (search and rounds agree)
        from nnfc.precision.target import precision_target
        target = precision_target(target, measured_in, bundle, req.task,
                                  keep_float_lowering=False)
    store = getattr(target, "use_template_store", None)  # android: reuse earlier conversions
    if store is not None:  # in the cache: a shipped profile's directory may be read-only
        store((Path(req.profile).parent if req.profile else default_profile_path(
            bundle.root, req.target).parent) / f"{req.target}.templates")
    builder = RoundBuilder(bundle, target, predictor, req, _profile_dir(bundle, req))
    builder.start_warm_up()  # sessions open on another core while the search runs
    try:
        return _compile(req, bundle, task_vec, predictor, target, builder, timings, lap)
    finally:
        builder.join_warm_up(quiet=True)  # an error of the compile's own wins


def resolve_task(bundle: Bundle, req: ScenarioRequest) -> None:
    """Turn the request's task (attributes or a phrase) into the factory's attributes; a phrase
    that needed resolving is logged ("task 'crimson cars' -> red,car (crimson ≈ red ...)")."""
    from nnfc.task_text import resolve_for
    resolution = resolve_for(bundle, req.task)
    if req.task_text is None:
        req.task_text = resolution.text
    req.task = resolution.attributes
    if not resolution.exact:
        logging.getLogger("nnfc").info(resolution.describe())


def _predictor(bundle: Bundle, req: CompileRequest) -> tuple[Predictor, bool]:
    """The request's predictor, and whether this machine was profiled first for it (it had
    none: one log line and a progress bar), which ``auto_profile`` off refuses."""
    try:
        return load_predictor_for(bundle, req.target, req.profile, req.device,
                                  req.precision), False
    except ProfileMissing as exc:
        if not req.auto_profile:
            raise NnfcError(f"{exc} (--no-profile: not profiling it now)") from exc
        from nnfc.compiler.auto_profile import profile_here
        profile_here(bundle, req.target)
        return load_predictor_for(bundle, req.target, None, req.device, req.precision), True


def _compile(req: CompileRequest, bundle: Bundle, task_vec, predictor: Predictor, target,
             builder: RoundBuilder, timings: dict[str, float], lap) -> dict[str, Any]:
    """Search, build and measure the rounds, verify, write the report."""
    from nnfc.passes import gates_to_json
    assembler = Assembler(bundle.assembler_path, predictor.structure.gates)
    lap("load")

    margins = predictor.margins if req.margin is None else (req.margin, req.margin)
    if req.method not in SEARCHES:
        raise NnfcError(f"unknown search method {req.method!r} ({', '.join(SEARCHES)})")
    search = SEARCHES[req.method]
    found: SearchResult = search(assembler, predictor, task_vec, req.lat_ms, req.mem_mb,
                                 step=req.step, margins=margins)
    lap("search")

    builder.supernet = onnx.load(str(bundle.supernet_path))
    builder.join_warm_up()
    with output_dir(req.out, "compile", force=req.force,
                    inputs=[bundle.root, req.profile]) as tmp:
        kept, rounds = _measured_rounds(req, builder, assembler, predictor, task_vec, margins,
                                        found, tmp, lap)
        rounds_in_precision = getattr(builder.target, "inner", None) is not None
        if req.verify and kept.diff is None and not rounds_in_precision:
            builder.verify(kept)
            lap("verify")
        from nnfc.precision.stage import run_stage
        precision = run_stage(req, bundle, builder.target, builder.meter(), kept, tmp,
                              kept.stats, verify=builder.verify if req.verify else None)
        precision["profile_precision"] = predictor.meta.get("precision", "fp32")
        if req.precision != "fp32":
            lap("precision")
        runtime_memory = None
        if req.mem_mb is not None:  # a memory budget: the runtime's figure beside nnfc's
            from nnfc.targets.memory_probe import measure_runtime_memory
            runtime_memory = measure_runtime_memory(
                req.target, kept.artifact, (getattr(target, "options", {}) or {}).get("threads"))
            lap("memory")
        found, bench = kept.found, kept.bench
        (tmp / "gates.json").write_text(json.dumps(gates_to_json(found.gates)) + "\n",
                                        encoding="utf-8")
        # total: from process start when known (one compile per process), else from the call;
        # the swap into place that follows takes milliseconds
        timings["total"] = sum(timings.values())
        report = _report(req, bundle, found, predictor, margins, bench, kept.stats, kept.diff,
                         kept.artifact.name, timings, target, [r.entry() for r in rounds],
                         precision)
        report["measured"]["runtime_peak_memory"] = runtime_memory
        report["memory_budget_held_to"] = ("computed: parameter bytes + largest intermediate "
                                           "tensor (MB = 1e6 bytes)")
        (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        (tmp / "summary.txt").write_text(summary(report) + "\n", encoding="utf-8")
    return report


def _measured_rounds(req, builder: RoundBuilder, assembler, predictor, task_vec, margins,
                     found: SearchResult, tmp: Path, lap) -> tuple[Round, list[Round]]:
    """The search's pick, measured; then (within ``refine_rounds``) candidates chosen from
    what was measured. Returns the kept round and every round."""
    rounds = [builder.build(found, tmp, 1, lap)]
    first = rounds[0].latency_ms
    if (req.lat_ms is not None and req.refine_rounds > 1 and first is not None
            and not uses_budget_well(first, req.lat_ms, req.step_up_below)):
        cands = candidates_for(assembler, predictor, task_vec, req, margins)
        tried = {cands.index(found.limit)}
        for number in range(2, req.refine_rounds + 1):
            i = next_candidate(cands, rounds, req.lat_ms, tried, req.step_up_below)
            if i is None:
                break
            tried.add(i)
            work = tmp / f"round{number}"
            work.mkdir()
            r = builder.build(cands.result(i, found), work, number)
            if r.latency_ms is None:
                break
            rounds.append(r)
        if len(rounds) > 1:
            lap("refine")
    kept = settle(keep(rounds, req.lat_ms), tmp)
    lap("write")
    return kept, rounds


def _profile_dir(bundle: Bundle, req: CompileRequest) -> Path:
    return profile_in_use(bundle.root, req.target, req.profile, req.precision).parent


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
            target, rounds=None, precision=None):
    precision = precision or {"requested": "fp32", "built": "fp32"}
    mem = precision.get("memory_mb", stats.memory_mb)
    measured = not isinstance(bench, str)
    lat = bench.latency_ms if measured else found.latency_ms
    within = ((req.lat_ms is None or lat <= req.lat_ms)
              and (req.mem_mb is None or mem <= req.mem_mb))
    estimate = predictor.meta.get("estimated")
    return {
        "request": {"task": list(req.task), "task_text": req.task_text, "target": req.target,
                    "lat_ms": req.lat_ms, "mem_mb": req.mem_mb},
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
        "precision": precision,
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


def precision_lines(prec: dict | None) -> list[str]:
    """The summary's lines about a reduced precision (none for fp32)."""
    if not prec or prec.get("requested", "fp32") == "fp32":
        return []
    lines = []
    for t in prec.get("tried", []):
        m = t["metric"]
        speed = (f", {t['speedup_vs_float']:.2f}x the float artifact's speed"
                 if t.get("speedup_vs_float") else "")
        lines.append(f"  {t['precision']}: {m['name']} {m['quantized']:.4f} against float "
                     f"{m['float']:.4f} ({m['drop_points']:+.2f} points lost, max "
                     f"{prec['max_drop_points']:g}){speed}; "
                     f"{len(t['kept_float'])} layer(s) kept float")
    lines.append(f"  precision {prec['requested']} -> built {prec['built']} "
                 f"({'within' if prec.get('within_max_drop', True) else 'BEYOND'} the drop "
                 f"bound); the equivalence check is of the float artifact")
    return lines


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
    peak = meas.get("runtime_peak_memory")
    if peak:
        runtime_mem += (f"; a process loading and running it grows by "
                        f"{format_mb(peak['peak_rss_growth_mb'])} (peak RSS; the budget holds "
                        f"the computed figure)")
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
        *precision_lines(report.get("precision")),
        "  time " + ", ".join(f"{k} {v:.2f}s" for k, v in t.items()),
    ]
    return "\n".join(lines)
