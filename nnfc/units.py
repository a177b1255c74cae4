"""Parse budget strings: ``"20ms"``, ``"0.5s"``, ``"500us"`` -> milliseconds; ``"300MB"``,
``"1.2GiB"`` -> megabytes (1 MB = 1e6 bytes). Bare numbers are rejected: a budget always names
its unit. Every bad input is one :class:`~nnfc.errors.NnfcError` naming the accepted units.
"""

from __future__ import annotations

import math
import re

from nnfc.errors import NnfcError

#: latency unit -> milliseconds
LATENCY_UNITS: dict[str, float] = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}
#: memory unit -> megabytes (1e6 bytes); KB/MB/GB are decimal, KiB/MiB/GiB binary
MEMORY_UNITS: dict[str, float] = {
    "B": 1e-6, "KB": 1e-3, "MB": 1.0, "GB": 1e3,
    "KiB": 1024 / 1e6, "MiB": 1024 ** 2 / 1e6, "GiB": 1024 ** 3 / 1e6,
}

# one way to match each number (no nested optional digits: linear time on any input)
_NUMBER = re.compile(r"^\s*((?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*([A-Za-zµ]*)\s*$")
#: a budget is a number and a unit: anything longer is refused before it is parsed
MAX_BUDGET_TEXT = 64


def _parse(text: str | float | int, units: dict[str, float], what: str, example: str) -> float:
    accepted = ", ".join(units)
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise NnfcError(f"{what} budget must be a string like {example!r}, got {text!r}")
    raw = str(text)
    if len(raw) > MAX_BUDGET_TEXT:
        raise NnfcError(f"{what} budget of {len(raw)} characters: expected a positive number "
                        f"and a unit, e.g. {example!r} (units: {accepted})")
    match = _NUMBER.match(raw)
    if not match:
        raise NnfcError(f"cannot parse {what} budget {raw!r}: expected a positive number and a "
                        f"unit, e.g. {example!r} (units: {accepted})")
    number, unit = float(match.group(1)), match.group(2)
    if not unit:
        raise NnfcError(f"{what} budget {raw!r} has no unit; write e.g. {example!r} "
                        f"(units: {accepted})")
    lookup = {u.lower(): u for u in units}
    key = lookup.get(unit.lower())
    if key is not None and units is MEMORY_UNITS and unit != key and unit.endswith("b"):
        # "50Mb" is megabits to many people, megabytes to others: refuse to guess
        raise NnfcError(f"{what} unit {unit!r} in {raw!r} is ambiguous (bits or bytes?); write "
                        f"{number:g}{key} for bytes or {number / 8:g}{key} for {number:g} "
                        f"{unit[:-1]}bits (units: {accepted})")
    if key is None:
        raise NnfcError(f"unknown {what} unit {unit!r} in {raw!r}; accepted units: {accepted}")
    value = number * units[key]
    if not math.isfinite(value) or value <= 0:
        raise NnfcError(f"{what} budget {raw!r} must be positive and finite")
    return float(f"{value:.12g}")  # "346us" -> 0.346, not 0.34600000000000003


def parse_latency_ms(text: str) -> float:
    """``"5ms"`` -> 5.0, ``"0.5s"`` -> 500.0, ``"500us"`` -> 0.5. Units: us/µs, ms, s."""
    return _parse(text, LATENCY_UNITS, "latency", "20ms")


def parse_memory_mb(text: str) -> float:
    """``"50MB"`` -> 50.0, ``"1GiB"`` -> 1073.741824, ``"512KB"`` -> 0.512 (MB = 1e6 bytes).
    Units: B, KB, MB, GB (decimal), KiB, MiB, GiB (binary)."""
    return _parse(text, MEMORY_UNITS, "memory", "50MB")


def format_ms(ms: float) -> str:
    """Human latency: ``"4.31 ms"``, ``"1.20 s"``, ``"850 µs"``, ``"0.42 µs"``; absurdly
    large values in scientific notation (``"1e+300 s"``), never hundreds of digits."""
    if not math.isfinite(ms):
        return f"{ms} ms"
    if ms >= 1e7:
        return f"{ms / 1000:.3g} s"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 1:
        return f"{ms:.2f} ms"
    us = ms * 1000
    return f"{us:.0f} µs" if us >= 10 else f"{us:.2g} µs"


def format_mb(mb: float) -> str:
    """Human memory: ``"12.5 MB"``, ``"1.20 GB"``, ``"340 KB"``, ``"12 B"``; absurdly large
    values in scientific notation."""
    if not math.isfinite(mb):
        return f"{mb} MB"
    if mb >= 1e7:
        return f"{mb / 1000:.3g} GB"
    if mb >= 1000:
        return f"{mb / 1000:.2f} GB"
    if mb >= 1:
        return f"{mb:.1f} MB"
    if mb >= 1e-3:
        return f"{mb * 1000:.0f} KB"
    return f"{mb * 1e6:.3g} B"
