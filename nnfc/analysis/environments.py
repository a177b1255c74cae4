"""The full supernet's latency in different execution environments (the paper's Fig. 2): alone,
beside 1, 2 and 3 background processes running the same model, and with 1 and 2 intra-op
threads. Wall-clock time per call (what a user waits), batch 1.

Three background processes are started once and paused (SIGSTOP); each condition resumes as
many as it needs. The conditions are measured in interleaved rounds (every round visits every
condition), so a load that changes while the analysis runs — another user's job on a shared
machine — spreads over all conditions instead of landing on one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import onnx

from nnfc.analysis.context import Analysis
from nnfc.analysis.plotting import PALETTE, pyplot, save_png
from nnfc.errors import NnfcError

#: (label, background processes, intra-op threads)
CONDITIONS = (("alone, 1 thread", 0, 1), ("+1 background process", 1, 1),
              ("+2 background processes", 2, 1), ("+3 background processes", 3, 1),
              ("alone, 2 threads", 0, 2))


class Tenants:
    """``count`` background processes running ``artifact`` in a loop, paused until
    :meth:`run` resumes some of them (POSIX signals)."""

    def __init__(self, target: str, artifact: Path, count: int):
        self.procs: list[subprocess.Popen] = []
        try:
            for _ in range(count):
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "nnfc.analysis.background", target, str(artifact)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                    env={**os.environ, "OMP_NUM_THREADS": "1"}))
            for p in self.procs:
                if p.stdout.readline().strip() != "ready":
                    raise NnfcError("environments: a background process failed to start")
                p.send_signal(signal.SIGSTOP)
        except BaseException:
            self.close()
            raise

    def run(self, count: int) -> None:
        """Exactly the first ``count`` processes running, the others paused."""
        for i, p in enumerate(self.procs):
            p.send_signal(signal.SIGCONT if i < count else signal.SIGSTOP)
        if count:
            time.sleep(0.05)  # let them take their cores

    def close(self) -> None:
        for p in self.procs:
            try:
                p.send_signal(signal.SIGCONT)
                p.stdin.close()
                p.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                p.kill()
                p.wait()


def time_calls(run: Callable[[], Any], runs: int, warmup: int) -> np.ndarray:
    """Wall-clock milliseconds of ``runs`` calls after ``warmup``."""
    for _ in range(warmup):
        run()
    out = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        run()
        out[i] = (time.perf_counter() - t0) * 1e3
    return out


def compute(a: Analysis, runs: int = 60, warmup: int = 2, rounds: int = 5,
            progress: Callable[[Iterable], Iterable] = lambda x: x) -> dict[str, Any]:
    """``{"target", "model", "conditions": [{"label", "background", "threads", "median_ms",
    "p10_ms", "p90_ms", "slowdown", "round_medians_ms"}], "cores", "load_before"}``: ``runs``
    calls per condition in ``rounds`` interleaved rounds."""
    from nnfc.compiler.measure import runner
    from nnfc.compiler.pipeline import make_target
    from nnfc.passes import apply_gates
    from nnfc.targets import target_class

    cls = target_class(a.target)
    if "threads" not in getattr(cls, "option_help", {}) or not hasattr(cls, "runner"):
        raise NnfcError(f"environments: target {a.target!r} cannot be run here call by call "
                        "with a thread count (desktop and android can)")
    ones = {n: np.ones(int(g["size"]), np.float32)
            for n, g in zip(a.gate_names, a.bundle.gate_layers)}
    load = os.getloadavg()[0]
    times: dict[int, list[np.ndarray]] = {i: [] for i in range(len(CONDITIONS))}
    with tempfile.TemporaryDirectory(prefix="nnfc-env-") as tmp:
        work = Path(tmp)
        onnx.save_model(apply_gates(a.supernet, ones), str(work / "model.onnx"))
        artifact = Path(make_target(a.target, {"threads": 1}).lower(work / "model.onnx", work))
        runs_by_threads = {t: runner(make_target(a.target, {"threads": t}), artifact)
                           for t in sorted({c[2] for c in CONDITIONS})}
        tenants = Tenants(a.target, artifact, max(c[1] for c in CONDITIONS))
        try:
            for _ in progress(range(rounds)):
                for i, (_, background, threads) in enumerate(CONDITIONS):
                    tenants.run(background)
                    times[i].append(time_calls(runs_by_threads[threads], max(1, runs // rounds),
                                               warmup))
                tenants.run(0)
        finally:
            tenants.close()
    rows = []
    for i, (label, background, threads) in enumerate(CONDITIONS):
        ms = np.concatenate(times[i])
        rows.append({"label": label, "background": background, "threads": threads,
                     "median_ms": float(np.median(ms)),
                     "p10_ms": float(np.percentile(ms, 10)),
                     "p90_ms": float(np.percentile(ms, 90)), "runs": int(len(ms)),
                     "round_medians_ms": [float(np.median(t)) for t in times[i]]})
    base = rows[0]["median_ms"]
    for r in rows:
        r["slowdown"] = r["median_ms"] / base
    return {"target": a.target, "model": "full supernet (every gate on), batch 1",
            "clock": "wall time per call", "conditions": rows, "cores": os.cpu_count(),
            "load_before": load}


def plot(data: dict[str, Any], path) -> None:
    plt = pyplot()
    rows = data["conditions"]
    fig, ax = plt.subplots(figsize=(10, 5))
    med = np.array([r["median_ms"] for r in rows])
    err = np.array([[m - r["p10_ms"] for m, r in zip(med, rows)],
                    [r["p90_ms"] - m for m, r in zip(med, rows)]])
    colours = [PALETTE["blue"] if r["background"] == 0 and r["threads"] == 1 else
               PALETTE["vermillion"] if r["background"] else PALETTE["green"] for r in rows]
    bars = ax.bar(range(len(rows)), med, yerr=err, capsize=5, color=colours)
    for b, r in zip(bars, rows):  # above the whisker, so neither hides the other
        ax.annotate(f"{r['median_ms']:.2f} ms\n{r['slowdown']:.2f}× alone", (b.get_x()
                    + b.get_width() / 2, r["p90_ms"]), textcoords="offset points",
                    xytext=(0, 4), ha="center", va="bottom", fontsize=10)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["label"] for r in rows], rotation=15)
    ax.set_ylabel("latency per call (ms, wall clock)")
    ax.set_xlabel("execution environment")
    ax.set_ylim(0, float(max(r["p90_ms"] for r in rows)) * 1.25)
    ax.set_title(f"Full supernet on {data['target']} in different environments\n(bar: median "
                 f"of {rows[0]['runs']} calls in interleaved rounds, whiskers: p10–p90; "
                 f"{data['cores']} cores, "
                 f"1-min load {data['load_before']:.1f} before)")
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=PALETTE["blue"], label="alone, 1 thread (baseline)"),
                       Patch(color=PALETTE["vermillion"], label="beside background processes"),
                       Patch(color=PALETTE["green"], label="alone, 2 threads")],
              loc="upper left")
    save_png(fig, path)


def summary(data: dict[str, Any]) -> str:
    return "environments: " + ", ".join(f"{r['label']} {r['median_ms']:.2f} ms"
                                        for r in data["conditions"])
