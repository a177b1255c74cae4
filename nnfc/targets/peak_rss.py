"""Peak resident memory of a block of work in this process (Linux), for in-process runtimes.

``with PeakRss() as peak: ...`` then ``peak.mb``: the highest resident set size reached inside
the block minus the resident size at its start, in MB (1e6 bytes). On Linux the kernel's
high-water mark (``VmHWM``) is reset on entry through ``/proc/self/clear_refs``, so the figure
is a true peak (weights, arena and transient buffers) rather than what is still held at the
end; where that is unavailable it falls back to the RSS growth at the end of the block.
"""

from __future__ import annotations

from nnfc.targets.memory import rss_mb


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        return None
    return None


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class PeakRss:
    """Context manager measuring the peak RSS growth (MB) of the work done inside it."""

    def __init__(self) -> None:
        self.mb = 0.0
        self.method = "rss-delta"
        self._start = 0.0
        self._hwm = False

    def __enter__(self) -> "PeakRss":
        self._hwm = _reset_high_water_mark() and _status_mb("VmHWM") is not None
        self._start = rss_mb()
        self.method = "peak RSS growth (VmHWM)" if self._hwm else "RSS growth at the end"
        return self

    def __exit__(self, *exc) -> None:
        end = _status_mb("VmHWM") if self._hwm else None
        self.mb = max(0.0, (end if end is not None else rss_mb()) - self._start)
