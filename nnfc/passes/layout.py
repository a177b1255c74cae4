"""Where a region's channels sit in one tensor: its channel axis, the positions of each region
channel along that axis, and the axis' full size. Usually channel ``c`` is at position ``c``; after
a ``Concat`` it is shifted by the inputs before it, and after ``Flatten`` of ``[N, C, H, W]`` each
channel owns the ``H·W`` consecutive features ``c·H·W …``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Layout:
    axis: int                # negative axis index
    positions: np.ndarray    # [C, g] positions of region channel c along ``axis``
    full: int                # size of ``axis``

    @classmethod
    def plain(cls, axis: int, size: int) -> "Layout":
        return cls(axis, np.arange(size)[:, None], size)

    @property
    def is_plain(self) -> bool:
        return self.full == len(self.positions) and self.positions.shape[1] == 1 and bool(
            np.all(self.positions[:, 0] == np.arange(self.full)))

    def with_axis(self, axis: int) -> "Layout":
        return Layout(axis, self.positions, self.full)

    def shifted(self, offset: int, full: int) -> "Layout":
        """The layout inside a Concat output where this tensor starts at ``offset``."""
        return Layout(self.axis, self.positions + offset, full)

    def flattened(self, inner: int, axis: int) -> "Layout":
        """The layout after merging this axis with the ``inner`` elements that follow it."""
        pos = (self.positions[:, :, None] * inner + np.arange(inner)).reshape(
            len(self.positions), -1)
        return Layout(axis, pos, self.full * inner)

    def keep_index(self, drop: np.ndarray) -> np.ndarray:
        """Positions along the axis that stay when region channels ``drop`` are removed."""
        return np.setdiff1d(np.arange(self.full), self.positions[drop].ravel())
