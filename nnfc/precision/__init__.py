"""Precision, nnfc's second customization axis: the same subnet as float32, float16 or int8.

``nnfc compile --precision fp32|fp16|int8|auto`` (:data:`CHOICES`). Each target says which
precisions it builds (``Target.precisions``); int8 is calibrated on the factory's own data for
the compiled task (:mod:`nnfc.precision.calibration`) and held to the family's metric by
:mod:`nnfc.precision.accuracy` (``--max-drop``, points of the metric, against the float
artifact of the same subnet). ``auto`` takes the fastest precision within the drop.
"""

from __future__ import annotations

from nnfc.errors import NnfcError

#: what an artifact can be built as, slowest first
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
#: what ``--precision`` takes
CHOICES: tuple[str, ...] = PRECISIONS + ("auto",)
#: ``--max-drop`` default: points of the family's metric (mAP@0.5 x 100, accuracy in %)
DEFAULT_MAX_DROP = 1.0
#: bytes per weight as each precision stores it
WEIGHT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


def memory_mb(param_bytes: float, peak_tensor_bytes: float, precision: str) -> float:
    """nnfc's computed memory (MB) of a subnet built in ``precision``: its float32 weights'
    ``param_bytes`` at the precision's size (int8: one byte per weight; the per-channel scales
    and int32 biases, under 1 %, are not counted) plus the largest intermediate tensor (float:
    the layers at the network's edges and a detector's decode graph stay float)."""
    return (param_bytes * WEIGHT_BYTES[precision] / 4 + peak_tensor_bytes) / 1e6


def check_precision(precision: str, target_name: str, supported: tuple[str, ...],
                    refusals: dict[str, str] | None = None) -> str:
    """``precision`` when ``target_name`` builds it; else one clear error naming what it builds
    (and why a precision is refused, from ``refusals``)."""
    if precision not in CHOICES:
        raise NnfcError(f"unknown precision {precision!r}; choose one of {', '.join(CHOICES)}")
    if precision != "auto" and precision not in supported:
        why = (refusals or {}).get(precision)
        raise NnfcError(f"the {target_name} target does not build {precision}"
                        + (f": {why}" if why else "")
                        + f"; it builds {', '.join(supported)}")
    return precision


__all__ = ["CHOICES", "DEFAULT_MAX_DROP", "PRECISIONS", "WEIGHT_BYTES", "check_precision",
           "memory_mb"]
