"""``--precision auto``: precision x limit. With a profile per precision, the search runs once
per precision (one batched assembler call each) and the compile goes on with the precision
whose subnet is the largest within the budget (int8 on a tie: it is the faster): a larger int8
subnet beats a smaller fp32 one where int8's speed buys channels, a fp32 one wins where it
does not (a detector's small subnets gain little from int8: the float decode graph and the
quantize/dequantize steps at its edges cost the same). The precision stage then holds the
chosen artifact to ``--max-drop``.
"""

from __future__ import annotations

from typing import Callable

from nnfc.errors import NnfcError


def choose(bundle, req, task_vec, predictor, load: Callable[[str], object]):
    """The predictor (and so the precision) ``auto`` compiles with: ``predictor`` (the one
    found for ``auto``: an int8 or fp16 profile where one exists) against the fp32 one from
    ``load("fp32")``; each searched over the whole limit grid (``--search best``: an assembler
    need not grow its subnets with the limit), the larger activation wins."""
    from nnfc.compiler.assembler_runtime import Assembler
    from nnfc.compiler.search import SEARCHES
    options = [predictor]
    if predictor.meta.get("precision", "fp32") != "fp32":
        try:
            options.append(load("fp32"))
        except NnfcError:
            pass
    best = None
    for p in options:
        margins = p.margins if req.margin is None else (req.margin, req.margin)
        try:
            found = SEARCHES["best"](Assembler(bundle.assembler_path, p.structure.gates),
                                         p, task_vec, req.lat_ms, req.mem_mb, step=req.step,
                                         margins=margins)
        except NnfcError:  # infeasible in this precision
            continue
        key = (round(found.activation_ratio, 6), p.meta.get("precision", "fp32") != "fp32")
        if best is None or key > best[0]:
            best = (key, p)
    return best[1] if best is not None else predictor
