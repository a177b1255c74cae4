"""Benchmark a TFLite artifact on an Android phone over adb with TFLite's ``benchmark_model``.

Used by the android target when a device is named (``get_target("android", device=SERIAL)`` or
``$NNFC_ADB_SERIAL``). The phone needs USB debugging and TFLite's ``benchmark_model`` binary
for its ABI (from the TensorFlow releases, or built with bazel): either already on the device at
``/data/local/tmp/benchmark_model``, or on this machine at ``$NNFC_BENCHMARK_MODEL``, in which
case it is pushed first. The model is pushed to ``/data/local/tmp/nnfc/`` and run with XNNPACK,
the given thread count, warm-up and runs; the figures are parsed from the tool's output:
latency from its per-run statistics (median when the tool prints it, else the average; p90 from
its p95, else its max — stated in ``details``), memory from its peak memory footprint.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from nnfc.errors import NnfcError
from nnfc.targets.base import BenchResult

REMOTE_DIR = "/data/local/tmp/nnfc"
REMOTE_TOOL = "/data/local/tmp/benchmark_model"

_STATS = re.compile(r"count=(\d+)(?:\s+first=\S+)?(?:\s+curr=\S+)?\s+min=(\S+)\s+max=(\S+)"
                    r"\s+avg=(\S+)\s+std=\S+(.*)$")
_PCT = re.compile(r"\b(p5|median|p95)=([0-9.eE+-]+)")
_PEAK = re.compile(r"peak memory footprint \(MB\)[^:]*:\s*([0-9.]+)", re.IGNORECASE)
_OVERALL = re.compile(r"Memory footprint delta[^:]*:\s*init=([0-9.]+)\s+overall=([0-9.]+)")


def parse_benchmark_model_output(text: str) -> dict:
    """Latency (ms) and memory (MB) figures from ``benchmark_model``'s log.

    The timed runs' statistics are the last ``count=... avg=...`` line (in microseconds)."""
    stats = [m for line in text.splitlines() if (m := _STATS.search(line))]
    if not stats:
        raise NnfcError("benchmark_model printed no timing statistics (count=... avg=...); "
                        f"its last output: {_tail(text)}")
    count, lo, hi, avg, rest = stats[-1].groups()
    pct = dict(_PCT.findall(rest))
    us = {"min": float(lo), "max": float(hi), "avg": float(avg)}
    median_us = float(pct["median"]) if "median" in pct else us["avg"]
    p90_us = float(pct["p95"]) if "p95" in pct else us["max"]
    result = {"runs": int(count), "median_ms": median_us / 1e3, "p90_ms": p90_us / 1e3,
              "latency_note": ("median and p95 (as p90) from benchmark_model" if pct
                               else "average (as median) and max (as p90) from benchmark_model")}
    peak = [float(m.group(1)) for line in text.splitlines() if (m := _PEAK.search(line))]
    overall = [float(m.group(2)) for line in text.splitlines() if (m := _OVERALL.search(line))]
    if peak:
        result["memory_mb"], result["memory_note"] = peak[-1], "peak memory footprint (MB)"
    elif overall:
        result["memory_mb"], result["memory_note"] = overall[-1], "memory footprint delta (MB)"
    else:
        result["memory_mb"], result["memory_note"] = 0.0, "benchmark_model reported no memory"
    return result


class AdbBenchmark:
    """Run ``benchmark_model`` on the phone with serial ``serial``."""

    def __init__(self, serial: str, adb: str | None = None, tool: str | None = None):
        self.serial = serial
        self.adb = adb or os.environ.get("NNFC_ADB") or shutil.which("adb")
        if not self.adb:
            raise NnfcError("adb not found: install Android platform-tools (apt-get install adb) "
                            "or set NNFC_ADB to its path")
        self.local_tool = tool or os.environ.get("NNFC_BENCHMARK_MODEL")

    def _adb(self, *args: str, timeout: float = 600) -> str:
        cmd = [self.adb, "-s", self.serial, *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise NnfcError(f"adb {' '.join(args[:2])} timed out after {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise NnfcError(f"adb {' '.join(args[:2])} failed on {self.serial}: "
                            f"{_tail(proc.stderr or proc.stdout)}")
        return proc.stdout + proc.stderr

    def benchmark(self, artifact: str | Path, runs: int = 50, warmup: int = 10,
                  threads: int = 4) -> BenchResult:
        """Push ``artifact`` (and the tool if local), run it, parse the figures."""
        artifact = Path(artifact)
        remote_model = f"{REMOTE_DIR}/{artifact.name}"
        self._adb("shell", f"mkdir -p {REMOTE_DIR}")
        self._adb("push", str(artifact), remote_model)
        tool = REMOTE_TOOL
        if self.local_tool:
            tool = f"{REMOTE_DIR}/benchmark_model"
            self._adb("push", self.local_tool, tool)
            self._adb("shell", f"chmod 755 {tool}")
        command = " ".join(shlex.quote(p) for p in [
            tool, f"--graph={remote_model}", f"--num_threads={threads}",
            f"--num_runs={runs}", f"--warmup_runs={warmup}", "--use_xnnpack=true",
            "--report_peak_memory_footprint=true"])
        out = self._adb("shell", command)
        figures = parse_benchmark_model_output(out)
        return BenchResult(figures["median_ms"], figures["p90_ms"], figures["memory_mb"],
                           figures["runs"],
                           {"runtime": f"benchmark_model on adb device {self.serial} (XNNPACK)",
                            "threads": threads, "latency": figures["latency_note"],
                            "memory": figures["memory_note"],
                            "layout": "inputs fed in the TFLite model's own layout (NHWC)"})


def _tail(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return " | ".join(lines[-3:])[:500] or "no output"
