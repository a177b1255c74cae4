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

    def same(self, other: "Layout") -> bool:
        return self.axis == other.axis and self.full == other.full and np.array_equal(
            self.positions, other.positions)

    def with_axis(self, axis: int) -> "Layout":
        return Layout(axis, self.positions, self.full)

    def shifted(self, offset: int, full: int) -> "Layout":
        """The layout inside a tensor where this one starts at ``offset`` (Concat output)."""
        return Layout(self.axis, np.where(self.positions < 0, -1, self.positions + offset), full)

    def window(self, start: int, stop: int) -> "Layout | None":
        """The layout of positions ``start:stop`` of this axis (Split/Slice output); None when a
        channel straddles the window's edge."""
        inside = (self.positions >= start) & (self.positions < stop)
        if np.any(inside.any(axis=1) != (inside | (self.positions < 0)).all(axis=1)):
            return None
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
