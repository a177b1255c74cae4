"""Which channels of a region go: the one decision the pruning pass and the predictor's cost
analysis share.

A channel is *removable* when every sink of the region receives nothing from it but a constant it
can fold (``removable_channels``, from the constant-carry states). :class:`KeepRules` then keeps
what one ONNX graph needs: a ``Split``/``Slice`` part never becomes empty, a grouped ``Conv``
loses equal counts per group, and a region keeps at least one (placeholder) channel. It works on a
batch of removable masks at once (``[B, size]``), so the predictor evaluates many gate vectors
without touching a graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from nnfc.passes.channel_state import ChannelState

if TYPE_CHECKING:
    from nnfc.passes.regions import Region


def removable_channels(region: "Region", states: dict) -> tuple[np.ndarray, dict[int, str]]:
    """[size] bool: channels that carry only a foldable constant into every sink; and, per
    channel that does not, why."""
    size = region.size
    removable = np.ones(size, bool)
    why: dict[int, str] = {}
    for sink, rule in region.sinks.items():
        state = states.get(sink.inputs[0], ChannelState.unknown(size))
        # a constant through a padded conv or a transposed conv is not uniform: only 0 folds
        foldable = state.const if rule.folds_constants(sink) else state.zero
        name = f"{sink.op_type} {sink.name or '(unnamed)'}"
        for c in np.flatnonzero(removable & ~foldable):
            why[int(c)] = (f"a non-zero constant reaches padded {name}" if state.const[c]
                           else f"data from another operand reaches {name}")
        removable &= foldable
    return removable, why


@dataclass
class GroupRule:
    """One grouped Conv's side of a region: ``channels`` (present region channels) fall in
    ``group`` (their group, same order) of ``groups`` groups of ``per`` channels each."""

    groups: int
    per: int
    channels: np.ndarray
    group: np.ndarray
    name: str = ""


@dataclass
class KeepRules:
    """What a region must keep whatever its gates say (see module doc)."""

    size: int
    windows: list[np.ndarray] = field(default_factory=list)   # present channels of each part
    groups: list[GroupRule] = field(default_factory=list)

    @classmethod
    def of(cls, region: "Region") -> "KeepRules":
        rules = cls(region.size)
        for layout in region.tensors.values():
            present = np.flatnonzero(~layout.absent)
            if layout.absent.any() and present.size:
                rules.windows.append(present)
        for node, rule in [*region.sinks.items(), *region.sources.items()]:
            groups = rule.groups(node)
            if groups == 1:
                continue
            is_sink = node in region.sinks
            layout = region.layout(node.inputs[0] if is_sink else node.outputs[0])
            per = layout.full // groups
            present = np.flatnonzero(~layout.absent)
            rules.groups.append(GroupRule(groups, per, present,
                                          layout.first[present] // per,
                                          f"{node.op_type} {node.name or '(unnamed)'}"))
        return rules

    def decide(self, removable: np.ndarray, why: dict[int, str] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(kept [B, size] bool, placeholder [B] bool) for removable masks ``[B, size]``
        (or ``[size]``); ``why`` (one mask) collects the reason for each channel kept here."""
        removable = np.atleast_2d(np.asarray(removable, bool)).copy()
        for present in self.windows:
            full = removable[:, present].all(axis=1)
            removable[full, present[0]] = False  # a Split/Slice part keeps one channel
            if why is not None and full[0]:
                why[int(present[0])] = "a Split/Slice part keeps at least one channel"
        changed = bool(self.groups)
        while changed:
            changed = False
            for rule in self.groups:
                sub = removable[:, rule.channels]
                counts = np.stack([(sub & (rule.group == g)).sum(axis=1)
                                   for g in range(rule.groups)], axis=1)
                k = np.minimum(counts.min(axis=1), rule.per - 1)
                for g in range(rule.groups):
                    cols = rule.channels[rule.group == g]
                    part = removable[:, cols]
                    extra = part & (np.cumsum(part, axis=1) > k[:, None])
                    if extra.any():
                        changed = True
                        removable[:, cols] &= ~extra
                        if why is not None:
                            for c in cols[extra[0]]:
                                why[int(c)] = f"grouped {rule.name} removes equal counts per group"
        kept = ~removable
        placeholder = ~kept.any(axis=1)
        kept[placeholder, 0] = True  # zero-size tensors are not portable: keep one channel
        return kept, placeholder

    def to_json(self) -> dict:
        return {"windows": [w.tolist() for w in self.windows],
                "groups": [[r.groups, r.per, r.channels.tolist(), r.group.tolist()]
                           for r in self.groups]}

    @classmethod
    def from_json(cls, size: int, data: dict) -> "KeepRules":
        return cls(size, [np.asarray(w, np.int64) for w in data.get("windows", [])],
                   [GroupRule(int(g), int(p), np.asarray(c, np.int64), np.asarray(k, np.int64))
                    for g, p, c, k in data.get("groups", [])])
