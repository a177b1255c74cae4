"""``nnfc compile`` end to end: request -> search (predictor + assembler) -> prune (passes) ->
lower (target) -> measure -> equivalence check -> ``report.json``, written atomically.

Never imports torch.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from nnfc.bundle import Bundle, read_bundle
from nnfc.compiler.assembler_runtime import Assembler
from nnfc.compiler.graph_stats import graph_stats
from nnfc.compiler.measure import measure
from nnfc.compiler.predictor import Predictor, host_info
from nnfc.compiler.search import SEARCHES, SearchResult
from nnfc.errors import NnfcError
from nnfc.families.attrod.decode import deployable
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


def load_predictor_for(bundle: Bundle, target: str, path: str | os.PathLike | None = None
                       ) -> Predictor:
    """The predictor for ``bundle`` on ``target``; a clear error naming the command that makes
    it when it is missing or was made for another factory, target or machine."""
    cmd = profile_command(bundle.root, target) + (f" -o {path}" if path else "")
    path = Path(path) if path else default_profile_path(bundle.root, target)
    if not path.is_file():
        raise NnfcError(f"no {target} profile for factory {bundle.root} ({path} is missing); "
                        f"make it with: {cmd}")
    predictor = Predictor.load(path)
    if predictor.target != target:
        raise NnfcError(f"{path} is a profile for target {predictor.target!r}, not {target!r}; "
                        f"make one with: {cmd}")
    want = bundle.manifest.get("files", {}).get("supernet.onnx")
    have = predictor.meta.get("bundle", {}).get("supernet_sha256")
    if want and have and want != have:
        raise NnfcError(f"{path} was made for another factory (supernet sha256 {have[:12]}…, "
                        f"this one is {want[:12]}…); profile again with: {cmd}")
    if predictor.meta.get("measured_locally", True):
        made, here = predictor.meta.get("host", {}), host_info()
        if (made.get("cpu"), made.get("cores")) != (here["cpu"], here["cores"]):
            raise NnfcError(f"{path} was measured on another machine ({made.get('cpu')}, "
                            f"{made.get('cores')} cores; this one: {here['cpu']}, "
                            f"{here['cores']} cores); profile again with: {cmd}")
    return predictor


@dataclass
class CompileRequest:
    """What to build: task attributes, target, budgets (None = unconstrained), output dir."""

    task: list[str]
    target: str
    out: Path
    lat_ms: float | None = None
    mem_mb: float | None = None
    bundle: Path | None = None
    profile: Path | None = None
    method: str = "batched"            # or "algorithm1", "best" (see search.py)
    step: float = 0.01
    margin: float | None = None        # None: the predictor's held-out p90 error
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
    predictor = load_predictor_for(bundle, req.target, req.profile)
    # measure the artifact exactly as the profile measured its subnets (e.g. threads)
    target = make_target(req.target, predictor.meta.get("target_options"))
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
        onnx.save_model(deployable(pruned, bundle.manifest), str(tmp / "model.onnx"))
        (tmp / "gates.json").write_text(json.dumps(gates_to_json(found.gates)) + "\n",
                                        encoding="utf-8")
        artifact = target.lower(tmp / "model.onnx", tmp)
        lap("lower")

        prof = predictor.meta.get("profile", {})
        try:
            bench = measure(target, artifact,
                            runs=req.runs or prof.get("runs") or 10,
                            warmup=req.warmup if req.warmup is not None
                            else (prof.get("warmup") if prof.get("warmup") is not None else 3),
                            rounds=req.rounds or prof.get("rounds") or 10)
        except NnfcError as exc:  # e.g. jetson without TensorRT here: the artifact still ships
            bench = str(exc)
        lap("measure")

        diff = _equivalence(bundle, supernet, found.gates, target, artifact) if req.verify \
            else None
        stats = graph_stats(pruned)
        lap("verify")
        # total: from process start when known (one compile per process), else from the call;
        # the swap into place that follows takes milliseconds
        timings["total"] = sum(timings.values())
        report = _report(req, bundle, found, predictor, margins, bench, stats, diff,
                         artifact.name, timings, target)
        (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        (tmp / "summary.txt").write_text(summary(report) + "\n", encoding="utf-8")
    return report


def _equivalence(bundle: Bundle, supernet: onnx.ModelProto, gates: dict, target, artifact
                 ) -> float:
    """Largest |difference| between the artifact and the gated supernet on one random input,
    over every graph output (compared in order, shapes must agree)."""
    from nnfc.targets.onnxruntime import open_session
    manifest = bundle.manifest if bundle is not None else {}
    session = open_session(deployable(supernet, manifest).SerializeToString())
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
                           "round_medians": bench.round_medians, "spread": bench.spread},
            "memory_mb": mem, "runtime_memory_mb": bench.runtime_memory_mb, "runs": bench.runs,
            "latency_definition": "best of the rounds' medians, batch 1"}


def _report(req, bundle, found, predictor, margins, bench, stats, diff, artifact, timings,
            target):
    mem = stats.memory_mb
    measured = not isinstance(bench, str)
    lat = bench.latency_ms if measured else found.latency_ms
    within = ((req.lat_ms is None or lat <= req.lat_ms)
              and (req.mem_mb is None or mem <= req.mem_mb))
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
        "max_abs_diff_vs_supernet": diff,
        "artifact": artifact,
        "timings_s": dict(timings),
        "search": {"method": found.method, "assembler_calls": found.assembler_calls,
                   "candidates": found.candidates, "step": req.step,
                   "next_limit": next((t for t in found.trace if t["limit"] > found.limit),
                                      None),
                   "safety_margin": {"latency": margins[0], "memory": margins[1]}},
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
    if meas["latency_ms"] is None:
        lat_line = f"  latency  predicted {format_ms(pred['latency_ms'])}, not measured here"
        verdict = ("within budget (predicted; measure on the device)"
                   if report["within_budget_predicted"] else "OVER BUDGET (predicted)")
    else:
        lat_line = (f"  latency  predicted {format_ms(pred['latency_ms'])}, "
                    f"measured {format_ms(meas['latency_ms']['median'])} "
                    f"(p90 {format_ms(meas['latency_ms']['p90'])})")
        verdict = "within budget" if report["within_budget"] else "OVER BUDGET"
    runtime_mem = (f" (runtime reports {format_mb(meas['runtime_memory_mb'])})"
                   if meas.get("runtime_memory_mb") is not None else "")
    lines = [
        f"task {{{', '.join(req['task'])}}} on {req['target']} with {budget}:",
        f"  limit {report['limit']:.0%} -> activation {report['activation_ratio']:.1%}, "
        f"{report['params'] / 1e6:.3f} M params, {report['flops'] / 1e6:.1f} MFLOPs",
        lat_line,
        f"  memory   predicted {format_mb(pred['memory_mb'])}, "
        f"measured {format_mb(meas['memory_mb'])}{runtime_mem}",
        f"  {verdict}; "
        + (f"max |diff| vs gated supernet {diff:.2g}" if diff is not None else "not verified"),
        "  time " + ", ".join(f"{k} {v:.2f}s" for k, v in t.items()),
    ]
    return "\n".join(lines)
