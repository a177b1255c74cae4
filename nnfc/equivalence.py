"""The one numeric equivalence check: an artifact reproduces its reference model's outputs.

Every output is compared on its own: both sides must be finite everywhere, the shapes must agree,
and ``max |got - want| <= RTOL * max |want| + ATOL`` (the tolerance scales with each output's
own magnitude; README, "How compile checks its output"). A failure is one :class:`NnfcError`
naming the output, its difference and the tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from nnfc.errors import NnfcError

#: float32 artifacts vs their float32 reference: relative to each output's largest magnitude
RTOL = 1e-4
#: floor of the tolerance (outputs whose largest magnitude is ~0)
ATOL = 1e-6


@dataclass(frozen=True)
class OutputDiff:
    """How far one output of an artifact is from the reference's."""

    name: str
    max_abs_diff: float
    scale: float          # max |reference output|
    tolerance: float

    def to_json(self) -> dict:
        return {"output": self.name, "max_abs_diff": self.max_abs_diff, "scale": self.scale,
                "tolerance": self.tolerance}


def _non_finite(name: str, arr: np.ndarray, whose: str) -> str:
    bad = ~np.isfinite(arr)
    kinds = [k for k, m in (("NaN", np.isnan(arr)), ("Inf", np.isinf(arr))) if m.any()]
    return (f"{whose} output {name!r} holds non-finite values ({'/'.join(kinds)} in "
            f"{int(bad.sum())} of {arr.size})")


def output_diff(name: str, got, want, *, rtol: float = RTOL, atol: float = ATOL,
                got_is: str = "the artifact's", want_is: str = "the reference's") -> OutputDiff:
    """Compare one output; raise one NnfcError when it is non-finite, misshapen or too far."""
    g = np.asarray(got, dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    if not np.all(np.isfinite(w)):
        raise NnfcError(_non_finite(name, w, want_is) + "; the model itself is broken")
    if not np.all(np.isfinite(g)):
        raise NnfcError(_non_finite(name, g, got_is))
    if g.shape != w.shape:
        raise NnfcError(f"{got_is} output {name!r} has shape {g.shape}, {want_is} {w.shape}")
    diff = float(np.max(np.abs(g - w), initial=0.0))
    scale = float(np.max(np.abs(w), initial=0.0))
    tol = rtol * scale + atol
    if not diff <= tol:
        raise NnfcError(f"{got_is} output {name!r} differs from {want_is} by {diff:.3g} "
                        f"(tolerance {tol:.3g} = {rtol:g} x max |output| {scale:.3g} + "
                        f"{atol:g}); refusing it")
    return OutputDiff(name, diff, scale, tol)


def compare_outputs(names: Sequence[str], gots: Sequence, wants: Sequence, *,
                    rtol: float = RTOL, atol: float = ATOL, got_is: str = "the artifact's",
                    want_is: str = "the reference's") -> list[OutputDiff]:
    """Compare every output in order (their numbers must agree); see :func:`output_diff`."""
    if len(gots) != len(wants):
        raise NnfcError(f"{got_is.removesuffix(chr(39) + 's')} has {len(gots)} output(s), "
                        f"{want_is.removesuffix(chr(39) + 's')} {len(wants)} "
                        f"({', '.join(names)})")
    return [output_diff(n, g, w, rtol=rtol, atol=atol, got_is=got_is, want_is=want_is)
            for n, g, w in zip(names, gots, wants)]


def max_diff(diffs: Sequence[OutputDiff]) -> float:
    """The largest absolute difference over the outputs (0.0 for none)."""
    return max((d.max_abs_diff for d in diffs), default=0.0)
