"""The measured rounds of ``nnfc compile`` (the paper's Algorithm 1 measures every round).

A round builds one candidate subnet (prune -> lower) and measures it as the profile measured
its subnets (:class:`Meter`). Rounds then move to a better candidate: down while the measured
latency breaks the budget, up while it lands below ``step_up_below`` of it and a larger subnet
below every measured violation is still predicted to fit, at most ``refine_rounds`` times.
The largest measured subnet within the budget is kept and verified against the gated supernet.

Rounds run one after another on purpose: two candidates measured at once on two cores (each
call by call against the reference) spread the same subnet's figure over ±4 % where one at a
time stays within ±1 %. What can overlap is opening sessions (:meth:`RoundBuilder.warm_up`).
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from nnfc.bundle import Bundle
from nnfc.compiler.graph_stats import GraphStats, graph_stats
from nnfc.compiler.predictor import Predictor
from nnfc.compiler.search import SearchResult
from nnfc.errors import NnfcError
from nnfc.equivalence import compare_outputs, max_diff
from nnfc.families.attrod.decode import deployable, manifest_decode_spec
from nnfc.onnx_io import shapes_only
from nnfc.trust import plain_name, verified_member


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


class Meter:
    """Measures artifacts as the profile measured its subnets: call by call against the
    profile's reference subnet where the target and profile allow (drift-cancelling, see
    ``measure_relative``), else the best of several rounds' medians."""

    def __init__(self, target, predictor: Predictor, req, profile_dir: Path):
        from nnfc.compiler.measure import runner
        self.target, self.req = target, req
        prof = predictor.meta.get("profile", {})
        self.ref = predictor.meta.get("reference")
        self.ref_run = None
        self.note = None
        if self.ref and getattr(target, "runner", None) is not None:
            where = f"the profile's reference subnet ({profile_dir})"
            path = profile_dir / plain_name(self.ref.get("artifact"), where)
            if os.path.lexists(path):  # what nnfc runs is checked like a bundle's files
                self.ref_run = runner(target, verified_member(
                    profile_dir, path.name, self.ref.get("sha256"), where))
            else:
                self.note = (f"reference subnet {path} is missing: measured without drift "
                             "correction")
        relative = self.ref_run is not None
        # relative timing pairs every run with the reference: fewer, interleaved runs suffice
        self.runs = req.runs or (5 if relative else prof.get("runs") or 10)
        self.rounds = req.rounds or (3 if relative else prof.get("rounds") or 10)
        self.warmup = req.warmup if req.warmup is not None else (
            1 if relative else (prof.get("warmup") if prof.get("warmup") is not None else 3))

    def __call__(self, artifact: Path, decides: tuple[float, ...] = ()) -> "Measured | str":
        """``decides``: the latencies (ms) the figure is compared with; a drift-cancelled
        measurement ends after two rounds when it lies clearly apart from each of them
        (:func:`clear_of`), the third round could not change a decision."""
        from nnfc.compiler.measure import (clock_for, clock_name, measure, measure_relative,
                                           runner)
        if self.ref_run is not None:
            clock = clock_for(self.target)
            ref_ms = float(self.ref["latency_ms"])
            settled = ((lambda ratio, spread: clear_of(ratio * ref_ms, spread, decides))
                       if decides and self.req.rounds is None else None)
            m = measure_relative(runner(self.target, artifact), self.ref_run, runs=self.runs,
                                 warmup=self.warmup, rounds=self.rounds, clock=clock,
                                 settled=settled)
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


def clear_of(latency_ms: float, spread: float, thresholds: tuple[float, ...],
             gap: float = 0.01) -> bool:
    """Whether ``latency_ms`` lies more than ``gap`` and twice the measurement's ``spread``
    (relative) away from every threshold: on the same side of each as more rounds would put
    it."""
    return all(abs(latency_ms / t - 1.0) > max(gap, 2.0 * spread) for t in thresholds)


def lower(target, pruned: onnx.ModelProto, work: Path, manifest: dict) -> tuple[Path, bytes]:
    """Lower what the target runs (``deployable``) into ``work``; returns the artifact and the
    serialized model, which :func:`settle` writes as ``model.onnx`` for the kept round only."""
    data = deployable(pruned, manifest).SerializeToString()
    return Path(target.lower(data, work)), data


def reference_session(bundle: Bundle | None, supernet: onnx.ModelProto | None):
    """An ORT session (one thread, no graph rewrites) on the gated supernet as the target runs
    it: the bundle's file where nothing is joined to it (no loading or re-serialising a large
    supernet), else ``deployable(supernet)`` (detection: joined to its decode graph)."""
    from nnfc.families.attrod.decode import manifest_decode_spec
    from nnfc.targets.onnxruntime import open_reference_session
    if bundle is not None and manifest_decode_spec(bundle.manifest) is None:
        return open_reference_session(bundle.supernet_path, threads=1)
    if supernet is None:
        raise ValueError("the supernet must be loaded to join it to its decode graph")
    run = deployable(supernet, bundle.manifest if bundle is not None else {})
    return open_reference_session(run.SerializeToString(), threads=1)


def equivalence(bundle: Bundle | None, supernet: onnx.ModelProto | None, gates: dict, target,
                artifact, session=None) -> float:
    """Largest |difference| between the artifact and the gated supernet on one random input,
    over every graph output (compared in order by :func:`nnfc.equivalence.compare_outputs`:
    finite, same shape, within the stated tolerance, else one NnfcError naming the output).
    ``session``: the supernet's :func:`reference_session` when already open."""
    session = session or reference_session(bundle, supernet)
    main = next(i for i in session.get_inputs() if not i.name.startswith("gate."))
    shape = [d if isinstance(d, int) else 1 for d in main.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    feeds = {main.name: x, **{k: np.asarray(v, np.float32) for k, v in gates.items()}}
    names = [o.name for o in session.get_outputs()]
    wants = session.run(None, feeds)
    gots = target.run(artifact, {main.name: x})
    return max_diff(compare_outputs(names, gots, wants, want_is="the gated supernet's"))


@dataclass
class Round:
    """One built and measured candidate."""

    found: SearchResult
    artifact: Path
    bench: "Measured | str"
    stats: GraphStats
    model: bytes = field(default=b"", repr=False)  # the serialized pruned model (model.onnx)
    diff: float | None = None             # max |artifact - gated supernet|; None: unverified
    number: int = 1                       # the measured round

    @property
    def latency_ms(self) -> float | None:
        return self.bench.latency_ms if isinstance(self.bench, Measured) else None

    def entry(self) -> dict[str, Any]:
        """The report's ``measured_rounds`` entry."""
        return {"round": self.number, "limit": self.found.limit,
                "activation_ratio": self.found.activation_ratio,
                "predicted_ms": self.found.latency_ms, "measured_ms": self.latency_ms}


@dataclass
class Candidates:
    """Every grid limit's gates and predictions (one batched assembler call), for choosing the
    next round."""

    limits: np.ndarray
    gates: dict[str, np.ndarray]
    latency_ms: np.ndarray
    memory_mb: np.ndarray
    ratio: np.ndarray
    mem_ok: np.ndarray

    def index(self, limit: float) -> int:
        return int(np.argmin(np.abs(self.limits - limit)))

    def result(self, i: int, like: SearchResult) -> SearchResult:
        from nnfc.compiler.assembler_runtime import select
        return SearchResult(float(self.limits[i]), select(self.gates, i),
                            float(self.latency_ms[i]), float(self.memory_mb[i]),
                            float(self.ratio[i]), like.assembler_calls, like.candidates,
                            like.method if like.method.endswith("+measured")
                            else f"{like.method}+measured", like.trace)


def candidates_for(assembler, predictor: Predictor, task_vec, req, margins) -> Candidates:
    from nnfc.compiler.search import candidates
    limits, gates, lat, mem = candidates(assembler, predictor, task_vec, step=req.step)
    mem_ok = np.ones(len(limits), bool) if req.mem_mb is None else \
        mem * (1.0 + margins[1]) <= req.mem_mb
    return Candidates(limits, gates, lat, mem, predictor.structure.activation_ratio(gates),
                      mem_ok)


@dataclass
class RoundBuilder:
    """Builds rounds for one compile: prune the supernet with a candidate's gates, lower it
    into a work directory and measure it (one :class:`Meter`); verifies the kept one against
    the gated supernet."""

    bundle: Bundle
    target: Any
    predictor: Predictor
    req: Any
    profile_dir: Path
    supernet: onnx.ModelProto | None = None  # set before the first build
    _meter: Meter | None = field(default=None, repr=False)
    _reference: Any = field(default=None, repr=False)
    _warm: threading.Thread | None = field(default=None, repr=False)
    _warm_error: BaseException | None = field(default=None, repr=False)

    def meter(self) -> Meter:
        if self._meter is None:
            self._meter = Meter(self.target, self.predictor, self.req, self.profile_dir)
        return self._meter

    def decides(self, number: int) -> tuple[float, ...]:
        """The latencies round ``number``'s figure is compared with: the budget, and the
        step-up line while rounds are left."""
        lat = self.req.lat_ms
        if lat is None:
            return ()
        more = number < self.req.refine_rounds
        return (lat, lat * self.req.step_up_below) if more else (lat,)

    def reference(self):
        """The gated supernet's session for verifying, opened once."""
        if self._reference is None:
            self._reference = reference_session(self.bundle, self.supernet)
        return self._reference

    def warm_up(self) -> None:
        """Open the sessions every round uses: the measurement's reference subnet and, where it
        needs no loaded supernet, the one that verifies. ORT releases the GIL while it builds
        a session, so a thread does this while the search runs."""
        self.meter()
        if self.req.verify and manifest_decode_spec(self.bundle.manifest) is None:
            self.reference()

    def start_warm_up(self) -> None:
        """:meth:`warm_up` in a thread; :meth:`join_warm_up` waits for it (and raises what it
        raised). Join before building."""
        def run():
            try:
                self.warm_up()
            except BaseException as exc:  # noqa: BLE001 - re-raised by join_warm_up
                self._warm_error = exc
        self._warm_error = None
        self._warm = threading.Thread(target=run, name="nnfc-warm-up", daemon=True)
        self._warm.start()

    def join_warm_up(self, quiet: bool = False) -> None:
        warm = self._warm
        if warm is not None:
            warm.join()
            self._warm = None
            if self._warm_error is not None and not quiet:
                raise self._warm_error

    def build(self, found: SearchResult, work: Path, number: int = 1,
              lap: Callable[[str], None] = lambda name: None) -> Round:
        from nnfc.passes import apply_gates
        pruned = apply_gates(self.supernet, found.gates)
        lap("prune")
        artifact, model = lower(self.target, pruned, work, self.bundle.manifest)
        lap("lower")
        bench = self.meter()(artifact, self.decides(number))
        lap("measure")
        stats = graph_stats(shapes_only(pruned))  # sizes from dims: no weight bytes copied
        return Round(found, artifact, bench, stats, model, number=number)

    def verify(self, r: Round) -> None:
        r.diff = equivalence(self.bundle, self.supernet, r.found.gates, self.target,
                             r.artifact, self.reference())


def uses_budget_well(latency_ms: float, budget: float, step_up_below: float) -> bool:
    """Within the budget and at or above ``step_up_below`` of it: no round follows."""
    return step_up_below * budget <= latency_ms <= budget


def next_candidate(cands: Candidates, rounds: list[Round], budget: float, tried: set[int],
                   step_up_below: float) -> int | None:
    """The grid index the next round measures, or None when the rounds are done: the largest
    measured subnet within the budget uses at least ``step_up_below`` of it, or nothing
    between it and the smallest measured one over the budget is predicted to fit once the
    predictions are rescaled by the nearest measured subnet's measured / predicted ratio."""
    measured = [r for r in rounds if r.latency_ms is not None]
    if not measured:
        return None
    within = [r for r in measured if r.latency_ms <= budget]
    over = [r for r in measured if r.latency_ms > budget]
    best = max(within, key=lambda r: r.found.activation_ratio, default=None)
    ceiling = min((r.found.activation_ratio for r in over), default=np.inf)
    if best is not None and uses_budget_well(best.latency_ms, budget, step_up_below):
        return None
    base = best or min(over, key=lambda r: r.found.activation_ratio)
    scale = base.latency_ms / max(base.found.latency_ms, 1e-9)  # measured / predicted
    noise = max(0.01, base.bench.spread / 2)
    untried = np.ones(len(cands.limits), bool)
    untried[list(tried)] = False
    ok = (cands.latency_ms * scale * (1.0 + noise) <= budget) & cands.mem_ok & untried
    if best is not None:  # far inside: a larger one below every measured violation
        ok &= (cands.ratio > best.found.activation_ratio) & (cands.ratio < ceiling)
        return int(np.flatnonzero(ok)[np.argmax(cands.ratio[ok])]) if ok.any() else None
    smaller = cands.ratio < base.found.activation_ratio
    ok &= smaller  # over budget: the largest smaller one
    if ok.any():
        return int(np.flatnonzero(ok)[np.argmax(cands.ratio[ok])])
    smaller &= cands.mem_ok & untried
    # nothing fits the rescaled prediction: the smallest, the best chance left
    return int(np.flatnonzero(smaller)[np.argmin(cands.ratio[smaller])]) if smaller.any() \
        else None


def keep(rounds: list[Round], budget: float | None) -> Round:
    """The largest measured subnet within the budget, else the last one measured."""
    within = [r for r in rounds if r.latency_ms is not None
              and (budget is None or r.latency_ms <= budget)]
    return max(within, key=lambda r: r.found.activation_ratio) if within else rounds[-1]


def settle(kept: Round, out: Path) -> Round:
    """Move the kept round's files into ``out`` (replacing another round's), write its
    ``model.onnx`` and remove every round's work directory."""
    if kept.artifact.parent != out:
        for old in list(out.iterdir()):
            if old.is_file():
                old.unlink()
        for f in kept.artifact.parent.iterdir():
            if f.is_file():
                os.replace(f, out / f.name)
        kept.artifact = out / kept.artifact.name
    for d in out.iterdir():
        if d.is_dir() and d.name.startswith("round"):
            shutil.rmtree(d, ignore_errors=True)
    if kept.model:
        (out / "model.onnx").write_bytes(kept.model)
    return kept
