"""Gate vectors -> the pruned graph's cost figures, without pruning anything.

The structure is made once from the gated supernet by ``cost_analysis.analyse``, which walks the
pruning passes' own channel regions and per-op rules; it is JSON-serialisable and stored in the
predictor, so compiling never re-reads the supernet to predict. It holds:

- ``sets``: one per channel region of the passes. Which of its channels go is a function of the
  bits its gates hold at each channel (a truth table per channel, from the passes' constant
  analysis: a channel goes when every sink can fold what it still carries), followed by the
  passes' :class:`~nnfc.passes.keep_rules.KeepRules` (Split parts, grouped convs, placeholder);
- ``dims``: every tensor or weight axis the passes slice, as ``full − Σ_set dropped · weights``
  (a Concat output loses the channels of each region it holds, a Flatten H·W per channel);
- ``params`` / ``tensors`` / ``macs``: monomials (a constant times a product of dims) for every
  constant of the pruned graph (gates and folded biases only where the passes leave them), every
  intermediate tensor, and every op's multiply-adds (its rule's factors);
- ``layers``: the weight ops (Conv, MatMul, Gemm) in graph order, for the latency features.

So predicted parameters, FLOPs and the largest tensor equal ``graph_stats`` of the pruned graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from nnfc.passes.keep_rules import KeepRules

VERSION = 2
#: most gates one region's truth table is made for (2**n constant analyses); larger merged
#: regions drop a channel only when every gate is off there (what an Add of gated tensors needs)
MAX_TABLE_GATES = 8


@dataclass
class ChannelSet:
    """One region: ``size`` channels, the gates (``vars``, indices into the structure's gates)
    whose bits decide them, where each gate's bits for a channel sit (``bits``: gate entries per
    channel, ``[size, n]``, -1 none; None: channel c is gate entry c), and ``table[code, c]``:
    channel ``c`` is removable when its gates' bits spell ``code`` (bit j: ``vars[j]`` is on at
    any of the channel's entries)."""

    size: int
    vars: list[int]
    bits: list[np.ndarray | None]
    table: np.ndarray
    keep: KeepRules

    def dropped(self, gates: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(dropped [B, size] bool, placeholder [B] bool) for the structure's gate masks."""
        removable = self.table[self.codes(gates), np.arange(self.size)[None, :]]
        kept, placeholder = self.keep.decide(removable)
        return ~kept, placeholder

    def codes(self, gates: list[np.ndarray]) -> np.ndarray:
        """[B, size]: the code its gates' bits spell at each channel."""
        batch = max(g.shape[0] for g in gates) if gates else 1
        code = np.zeros((batch, self.size), np.int64)
        for j in range(len(self.vars)):
            code |= self.bit(gates, j).astype(np.int64) << j
        return code

    def marked(self, gates: list[np.ndarray], rows: list[list[int]]) -> np.ndarray:
        """[B, size]: channel c is in ``rows[code]`` for the code its bits spell."""
        table = np.zeros((max(len(rows), 1), self.size), bool)
        for code, channels in enumerate(rows):
            table[code, np.asarray(channels, np.int64)] = True
        return table[np.minimum(self.codes(gates), len(rows) - 1), np.arange(self.size)[None, :]]

    def bit(self, gates: list[np.ndarray], j: int, every: bool = False) -> np.ndarray:
        """[B, size]: gate ``vars[j]`` is on at any (``every``: all) of each channel's entries."""
        mask, pos = gates[self.vars[j]], self.bits[j]
        if pos is None:
            return mask[:, :self.size]
        pos = pos.reshape(self.size, -1)
        on = mask[:, np.maximum(pos, 0)]                      # [B, size, n]
        if every:
            return np.where(pos >= 0, on, True).all(axis=2)
        return np.where(pos >= 0, on, False).any(axis=2)

    def to_json(self) -> dict:
        rows = ["".join("1" if v else "0" for v in row) for row in self.table]
        return {"size": self.size, "vars": self.vars,
                "bits": [None if b is None else b.tolist() for b in self.bits],
                "table": [r[0] if len(set(r)) == 1 else r for r in rows],
                "keep": self.keep.to_json()}

    @classmethod
    def from_json(cls, d: Mapping) -> "ChannelSet":
        size = int(d["size"])
        table = np.array([[c == "1" for c in (r * size if len(r) == 1 else r)]
                          for r in d["table"]], bool).reshape(-1, size)
        return cls(size, [int(v) for v in d["vars"]],
                   [None if b is None else np.asarray(b, np.int64).reshape(size, -1)
                    for b in d["bits"]],
                   table, KeepRules.from_json(size, d.get("keep", {})))


@dataclass
class Dim:
    """A pruned axis: ``full − Σ dropped[set] · weights``."""

    full: float
    terms: list[tuple[int, np.ndarray | float]] = field(default_factory=list)

    def to_json(self) -> list:
        def w(x):
            arr = np.asarray(x, np.float64).reshape(-1)
            return float(arr[0]) if arr.size and np.all(arr == arr[0]) else arr.tolist()
        return [self.full, [[s, w(x)] for s, x in self.terms]]

    @classmethod
    def from_json(cls, d: list) -> "Dim":
        return cls(float(d[0]), [(int(s), x if isinstance(x, float) else np.asarray(x))
                                 for s, x in d[1]])


@dataclass
class Monomial:
    """``coef · Π dims``; for a constant also its element size, whether it counts as a float
    parameter, and when it exists (``cond``: None always; ``["gate", set, var, channels]``: a
    gate left with a zero on a kept channel; ``["zeros", gate]``: an unpruned gate with a zero;
    ``["carry", set, channels, per_code]``: a bias made by folding removed channels' constants
    (``per_code[code]``: the channels that carry one when their gates' bits spell ``code``);
    ``["pruned", set]``: the region dropped something); ``alive``: the structure's bypasses
    that remove it (a branch behind a residual gate of zeros)."""

    coef: float
    dims: list[int]
    elem_bytes: int = 4
    is_float: bool = True
    cond: list | None = None
    alive: list[int] = field(default_factory=list)

    def to_json(self) -> list:
        return [self.coef, self.dims, self.elem_bytes, self.is_float, self.cond, self.alive]

    @classmethod
    def from_json(cls, d: list) -> "Monomial":
        return cls(float(d[0]), [int(x) for x in d[1]], int(d[2]), bool(d[3]), d[4],
                   [int(x) for x in (d[5] if len(d) > 5 else [])])


@dataclass
class Layer:
    """One weight op: its costs scale with the pruned sizes of its input/output channel axes
    (``in_dim``/``out_dim``: indices into ``dims``, -1 unpruned)."""

    name: str
    op: str
    in_dim: int
    out_dim: int
    in_channels: int
    out_channels: int
    depthwise: bool
    spatial: int            # output positions per channel (Hout·Wout, or token rows)
    kernel: int             # k² (or 1 for MatMul)
    bias: bool
    groups: int = 1


@dataclass
class CostStructure:
    """Everything needed to turn gate vectors into cost features (see module doc)."""

    gates: list[str]                       # graph input names, order of the bundle
    sizes: list[int]
    sets: list[ChannelSet] = field(default_factory=list)
    dims: list[Dim] = field(default_factory=list)
    layers: list[Layer] = field(default_factory=list)
    params: list[Monomial] = field(default_factory=list)
    tensors: list[Monomial] = field(default_factory=list)
    macs: list[Monomial] = field(default_factory=list)
    #: gate Muls whose product only feeds residual Adds: [gate, set (-1: none)]; all off (and
    #: not the set's placeholder), the passes remove them and the branch behind them
    bypass: list[list[int]] = field(default_factory=list)

    # ---- serialisation
    def to_json(self) -> dict:
        return {"version": VERSION, "gates": self.gates, "sizes": self.sizes,
                "sets": [s.to_json() for s in self.sets],
                "dims": [d.to_json() for d in self.dims],
                "layers": [asdict(x) for x in self.layers],
                "params": [m.to_json() for m in self.params],
                "tensors": [m.to_json()[:2] + [m.alive] for m in self.tensors],
                "macs": [m.to_json()[:2] + [m.alive] for m in self.macs],
                "bypass": self.bypass}

    @classmethod
    def from_json(cls, data: Mapping) -> "CostStructure":
        """A structure saved by :meth:`to_json` (``cost_legacy.structure_from_json`` also reads
        the format before version 2)."""
        if data.get("version") != VERSION:
            raise ValueError(f"cost structure version {data.get('version')!r}, expected {VERSION}")
        return cls(list(data["gates"]), [int(s) for s in data["sizes"]],
                   [ChannelSet.from_json(s) for s in data["sets"]],
                   [Dim.from_json(d) for d in data["dims"]],
                   [Layer(**x) for x in data["layers"]],
                   [Monomial.from_json(m) for m in data["params"]],
                   [_short(m) for m in data["tensors"]], [_short(m) for m in data["macs"]],
                   [[int(g), int(s)] for g, s in data.get("bypass", [])])

    # ---- evaluation
    def _masks(self, gates: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [np.atleast_2d(np.asarray(gates[k]) > 0.5) for k in self.gates]

    def _evaluate(self, gates: Mapping[str, np.ndarray]) -> dict[str, Any]:
        masks = self._masks(gates)
        batch = max((m.shape[0] for m in masks), default=1)
        dropped, placeholder = [], []
        for s in self.sets:
            d, p = s.dropped(masks)
            dropped.append(np.broadcast_to(d, (batch, s.size)))
            placeholder.append(np.broadcast_to(p, (batch,)))
        counts = np.zeros((batch, len(self.dims)))
        for i, dim in enumerate(self.dims):
            c = np.full(batch, dim.full)
            for s, w in dim.terms:
                c = c - (dropped[s] @ np.broadcast_to(np.asarray(w, np.float64),
                                                      (self.sets[s].size,)))
            counts[:, i] = c
        bypassed = np.zeros((batch, len(self.bypass)), bool)
        for b, (g, s) in enumerate(self.bypass):
            bypassed[:, b] = ~masks[g].any(axis=1) & (~placeholder[s] if s >= 0 else True)
        return {"masks": masks, "dropped": dropped, "placeholder": placeholder,
                "counts": counts, "batch": batch, "bypassed": bypassed}

    def _value(self, m: Monomial, ev: dict) -> np.ndarray:
        v = np.full(ev["batch"], m.coef)
        for d in m.dims:
            v = v * ev["counts"][:, d]
        if m.alive:
            v = np.where(ev["bypassed"][:, m.alive].any(axis=1), 0.0, v)
        return v

    def _exists(self, m: Monomial, ev: dict) -> np.ndarray:
        cond = m.cond
        if not cond:
            return np.ones(ev["batch"], bool)
        kind = cond[0]
        if kind == "zeros":
            return ~ev["masks"][cond[1]].all(axis=1)
        s = cond[1]
        dropped = ev["dropped"][s]
        if kind == "pruned":
            return dropped.any(axis=1)
        if kind == "carry":
            if len(cond) > 3:  # channels carrying a constant, per code of their gates' bits
                carries = self.sets[s].marked(ev["masks"], cond[3])
                return ((dropped | ev["placeholder"][s][:, None]) & carries).any(axis=1)
            ch = np.asarray(cond[2], np.int64)
            return dropped[:, ch].any(axis=1) | (ev["placeholder"][s] & (ch.size > 0))
        ch = np.asarray(cond[3], np.int64)  # gate
        off = ~self.sets[s].bit(ev["masks"], cond[2], every=True)
        return ~ev["placeholder"][s] & (~dropped[:, ch] & off[:, ch]).any(axis=1)

    def set_counts(self, gates: Mapping[str, np.ndarray]) -> np.ndarray:
        """Kept channels per set (region), shape [B, n_sets]; gates are [size] or [B, size]."""
        ev = self._evaluate(gates)
        if not self.sets:
            return np.zeros((ev["batch"], 0))
        return np.stack([s.size - d.sum(axis=1) for s, d in zip(self.sets, ev["dropped"])],
                        axis=1).astype(np.float64)

    def layer_terms(self, gates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per layer [B, L]: ``macs``, ``params``, ``out_elems``, ``in_elems``, ``active_in``,
        ``active_out`` and ``depthwise`` (bool) for the gates."""
        ev = self._evaluate(gates)
        b, n = ev["batch"], len(self.layers)
        macs, params, out_el, in_el, act_in, act_out = (np.zeros((b, n)) for _ in range(6))
        depthwise = np.zeros((b, n), dtype=bool)
        counts = ev["counts"]
        for j, lay in enumerate(self.layers):
            a_in = counts[:, lay.in_dim] if lay.in_dim >= 0 else np.full(b, float(lay.in_channels))
            a_out = counts[:, lay.out_dim] if lay.out_dim >= 0 \
                else np.full(b, float(lay.out_channels))
            if lay.depthwise:
                a_in = a_out
                depthwise[:, j] = True
                macs[:, j] = a_out * lay.kernel * lay.spatial
                params[:, j] = a_out * lay.kernel + (a_out if lay.bias else 0)
            else:
                macs[:, j] = a_in * a_out * lay.kernel * lay.spatial / lay.groups
                params[:, j] = a_in * a_out * lay.kernel / lay.groups + (a_out if lay.bias else 0)
            act_in[:, j], act_out[:, j] = a_in, a_out
            out_el[:, j] = a_out * lay.spatial
            in_el[:, j] = a_in * lay.spatial
        return {"macs": macs, "params": params, "out_elems": out_el, "in_elems": in_el,
                "active_in": act_in, "active_out": act_out, "depthwise": depthwise}

    def graph_terms(self, gates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """[B] arrays, the pruned graph's ``graph_stats`` figures: ``params`` (float
        constants' elements), ``param_bytes``, ``flops`` and ``peak_bytes`` (largest tensor)."""
        ev = self._evaluate(gates)
        params = np.zeros(ev["batch"])
        param_bytes = np.zeros(ev["batch"])
        for m in self.params:
            v = np.where(self._exists(m, ev), self._value(m, ev), 0.0)
            param_bytes += v * m.elem_bytes
            if m.is_float:
                params += v
        flops = 2 * sum((self._value(m, ev) for m in self.macs), np.zeros(ev["batch"]))
        peak = np.zeros(ev["batch"])
        for m in self.tensors:
            peak = np.maximum(peak, self._value(m, ev))
        return {"params": np.rint(params), "param_bytes": np.rint(param_bytes),
                "flops": np.rint(flops), "peak_bytes": np.rint(peak)}

    def memory_terms(self, gates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """[B] arrays: ``param_bytes`` and ``peak_bytes`` (largest intermediate tensor)."""
        terms = self.graph_terms(gates)
        return {"param_bytes": terms["param_bytes"], "peak_bytes": terms["peak_bytes"]}

    def activation_ratio(self, gates: Mapping[str, np.ndarray]) -> np.ndarray:
        """Fraction of gated modules that are on, over all gate layers, shape [B]."""
        on = sum(np.atleast_2d(np.asarray(gates[k]) > 0.5).sum(axis=1) for k in self.gates)
        return on / max(1, sum(self.sizes))


def _short(d: list) -> Monomial:
    return Monomial(float(d[0]), [int(x) for x in d[1]],
                    alive=[int(x) for x in (d[2] if len(d) > 2 else [])])

