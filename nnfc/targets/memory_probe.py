"""The runtime's memory for a loaded artifact, measured in a fresh process.

``python -m nnfc.targets.memory_probe TARGET ARTIFACT [--threads N]`` imports the target's
runtime, then loads the artifact and runs it three times on random inputs inside
:class:`~nnfc.targets.peak_rss.PeakRss` and prints one JSON line: ``{"peak_rss_growth_mb",
"method", "runtime"}``. A fresh process per artifact keeps earlier sessions, arenas and
imports out of the figure. :func:`measure_runtime_memory` runs it from nnfc (compile, the
memory benchmark) and returns None where the target cannot run here (a Jetson engine).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

PROBE_TIMEOUT_S = 300


def probe(target_name: str, artifact: Path, threads: int | None) -> dict:
    from nnfc.targets import get_target, supported_options
    from nnfc.targets.peak_rss import PeakRss
    target = get_target(target_name, **supported_options(target_name, {"threads": threads}))
    if getattr(target, "runner", None) is None:
        raise SystemExit(f"the {target_name} target has no in-process runner here")
    # import the runtime first: its libraries are not the artifact's memory
    if target_name == "android":
        from nnfc.targets.tflite import litert_interpreter_class
        litert_interpreter_class()
    with PeakRss() as peak:
        call = target.runner(artifact)
        for _ in range(3):
            call()
    return {"peak_rss_growth_mb": round(peak.mb, 3), "method": peak.method,
            "runtime": getattr(target, "runtime", target_name)}


def measure_runtime_memory(target_name: str, artifact: str | Path,
                           threads: int | None = None) -> dict | None:
    """:func:`probe` in a fresh interpreter; None where it cannot run (with the reason logged
    in the returned dict's absence)."""
    cmd = [sys.executable, "-m", "nnfc.targets.memory_probe", target_name, str(artifact)]
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target")
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    sys.stdout.write(json.dumps(probe(args.target, args.artifact, args.threads)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
