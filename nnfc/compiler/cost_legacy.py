"""Reading cost structures saved by nnfc before version 2 (profiles made with the old gate-tag
analysis), as the same :class:`CostStructure` with the figures they were fitted on: a tag (a set
of gates) keeps the channels where all its gates are on (at least one), a layer's weights are
in·out·k² (+ bias), an intermediate tensor scales with its tag's kept share, and the rest of the
parameters are the fixed byte count the old analysis stored."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from nnfc.compiler.cost_structure import (VERSION, ChannelSet, CostStructure, Dim, Layer,
                                          Monomial)
from nnfc.passes.keep_rules import KeepRules


def structure_from_json(data: Mapping) -> CostStructure:
    """A saved cost structure, of this version or of the format before version 2."""
    return CostStructure.from_json(data) if data.get("version") == VERSION \
        else from_legacy_json(data)


def from_legacy_json(data: Mapping) -> CostStructure:
    gates, sizes = list(data["gates"]), [int(s) for s in data["sizes"]]
    structure = CostStructure(gates, sizes)
    for tag in data["tags"]:
        idx = [gates.index(g) for g in tag]
        size = min(sizes[i] for i in idx)
        table = np.ones((2 ** len(idx), size), bool)
        table[-1] = False  # removable unless every gate of the tag is on
        structure.sets.append(ChannelSet(size, idx, [None] * len(idx), table, KeepRules(size)))

    def dim(tag: int, full: int) -> int:
        if tag < 0:
            return -1
        structure.dims.append(Dim(float(full), [(tag, 1.0)]))
        return len(structure.dims) - 1

    for x in data["layers"]:
        depthwise = bool(x["depthwise"])
        out_tag = x["out_tag"] if x["out_tag"] >= 0 or not depthwise else x["in_tag"]
        out_dim = dim(out_tag, x["out_channels"])
        in_dim = out_dim if depthwise else dim(x["in_tag"], x["in_channels"])
        lay = Layer(x["name"], x["op"], in_dim, out_dim, int(x["in_channels"]),
                    int(x["out_channels"]), depthwise, int(x["spatial"]), int(x["kernel"]),
                    bool(x["bias"]))
        structure.layers.append(lay)
        for k, (factors, coef) in enumerate(_layer_monomials(lay)):
            fixed = [f for f in factors if f < 0]
            scale = np.prod([lay.in_channels if f == -2 else lay.out_channels
                             for f in fixed]) if fixed else 1.0
            dims = [f for f in factors if f >= 0]
            structure.params.append(Monomial(coef * float(scale), dims))
            if k == 0:  # the weight term also gives the layer's multiply-adds
                structure.macs.append(Monomial(coef * float(scale) * lay.spatial, dims))
    structure.params.append(Monomial(float(data["fixed_param_bytes"]), [], 1, False))
    for tag, channels, full_bytes in data["tensors"]:
        if tag < 0:
            structure.tensors.append(Monomial(float(full_bytes), []))
        else:
            structure.tensors.append(Monomial(full_bytes / channels, [dim(tag, channels)]))
    return structure


def _layer_monomials(lay: Layer) -> list[tuple[list[int], float]]:
    """(factor dims, coefficient) of a layer's weight and bias; -2 / -3: the fixed in / out
    channel count where the layer is not pruned."""
    i = lay.in_dim if lay.in_dim >= 0 else -2
    o = lay.out_dim if lay.out_dim >= 0 else -3
    terms = [([o], float(lay.kernel))] if lay.depthwise else [([i, o], float(lay.kernel))]
    if lay.bias:
        terms.append(([o], 1.0))
    return terms
