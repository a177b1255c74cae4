"""Where a region's channels sit in one tensor: its channel axis, the positions of each region
channel along that axis, and the axis' full size. Usually channel ``c`` is at position ``c``; after
a ``Concat`` it is shifted by the inputs before it, after ``Flatten`` of ``[N, C, H, W]`` each
channel owns the ``H·W`` consecutive features ``c·H·W …``, and after a ``Split``/``Slice`` of the
channel axis a tensor holds only some of the region's channels (the others are *absent*: their
positions are -1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Layout:
    axis: int                # negative axis index
    positions: np.ndarray    # [C, g] positions of region channel c along ``axis`` (-1: absent)
    full: int                # size of ``axis``

    @classmethod
    def plain(cls, axis: int, size: int) -> "Layout":
        return cls(axis, np.arange(size)[:, None], size)

    @property
    def absent(self) -> np.ndarray:
        """[C] bool: region channels this tensor does not hold."""
        return (self.positions < 0).all(axis=1)

    @property
    def first(self) -> np.ndarray:
        """[C] the first position of each region channel (-1: absent)."""
        if self.positions.shape[1] == 1:
            return self.positions[:, 0]
        idx = np.argmax(self.positions >= 0, axis=1)
        return np.where(self.absent, -1, self.positions[np.arange(len(idx)), idx])

    def canonical(self) -> np.ndarray:
        """Positions with each channel's valid ones sorted first and all-absent columns dropped
        (two layouts holding the same positions per channel compare equal)."""
        pos = -np.sort(-self.positions, axis=1)  # descending: valid positions first
        width = max(1, int((pos >= 0).sum(axis=1).max(initial=0)))
        return np.sort(np.where(pos[:, :width] < 0, np.iinfo(np.int64).max, pos[:, :width]),
                       axis=1)

    def same(self, other: "Layout") -> bool:
        if self.axis != other.axis or self.full != other.full:
            return False
        if self.positions is other.positions or np.array_equal(self.positions, other.positions):
            return True
        return np.array_equal(self.canonical(), other.canonical())

    def union(self, other: "Layout") -> "Layout":
        """Each channel at the positions either layout puts it."""
        pos = np.concatenate([self.positions, other.positions], axis=1)
        return Layout(self.axis, pos, self.full)

    def holders(self) -> np.ndarray | None:
        """[full] the region channel at each position (-1: none), or None when a position is
        held by two channels."""
        owner = np.full(self.full, -1, np.int64)
        rows, cols = np.nonzero(self.positions >= 0)
        pos = self.positions[rows, cols]
        if np.unique(pos).size != pos.size:
            return None
        owner[pos] = rows
        return owner

    def with_axis(self, axis: int) -> "Layout":
        return Layout(axis, self.positions, self.full)

    def shifted(self, offset: int, full: int) -> "Layout":
        """The layout inside a tensor where this one starts at ``offset`` (Concat output)."""
        return Layout(self.axis, np.where(self.positions < 0, -1, self.positions + offset), full)

    def window(self, start: int, stop: int) -> "Layout":
        """The layout of positions ``start:stop`` of this axis (Split/Slice/Concat part): a
        channel with positions on both sides of an edge holds only those inside."""
        inside = (self.positions >= start) & (self.positions < stop)
        return Layout(self.axis, np.where(inside, self.positions - start, -1), stop - start)

    def flattened(self, inner: int, axis: int) -> "Layout":
        """The layout after merging this axis with the ``inner`` elements that follow it."""
        pos = (self.positions[:, :, None] * inner + np.arange(inner)).reshape(
            len(self.positions), -1)
        pos[np.repeat(self.positions < 0, inner, axis=1)] = -1
        return Layout(axis, pos, self.full * inner)

    def keep_index(self, drop: np.ndarray) -> np.ndarray:
        """Positions along the axis that stay when region channels ``drop`` are removed."""
        gone = self.positions[drop].ravel()
        return np.setdiff1d(np.arange(self.full), gone[gone >= 0])
