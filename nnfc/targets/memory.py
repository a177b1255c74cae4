"""Resident memory readings for in-process benchmarks (Linux /proc, with a portable fallback)."""

from __future__ import annotations

import resource
import sys


def rss_mb() -> float:
    """Current resident set size of this process in MB (1e6 bytes)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e6
