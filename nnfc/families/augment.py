"""Training augmentation for image task families: small random affine jitter of image tiles.
Numpy only (the task families must not need torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TileJitter:
    """Random affine jitter of image tiles (training augmentation), bilinear, zero outside:
    shift up to ``shift`` pixels per axis, rotation up to ``rotate`` degrees, scale in
    ``[1 − scale, 1 + scale]``, independently per tile."""

    shift: float = 0.0
    rotate: float = 0.0
    scale: float = 0.0

    @property
    def active(self) -> bool:
        return bool(self.shift or self.rotate or self.scale)

    def apply(self, tiles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``tiles`` [..., h, w] float32 -> jittered copy of the same shape."""
        *lead, h, w = tiles.shape
        flat = tiles.reshape(-1, h, w)
        n = len(flat)
        theta = np.deg2rad(rng.uniform(-self.rotate, self.rotate, n))[:, None, None]
        zoom = rng.uniform(1 - self.scale, 1 + self.scale, n)[:, None, None]
        ty = rng.uniform(-self.shift, self.shift, n)[:, None, None]
        tx = rng.uniform(-self.shift, self.shift, n)[:, None, None]
        cy, cx = (h - 1) / 2, (w - 1) / 2
        yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        dy, dx = yy[None] - cy - ty, xx[None] - cx - tx
        # output pixel p samples the input at R(-theta) (p - c - t) / zoom + c
        sy = (np.cos(theta) * dy + np.sin(theta) * dx) / zoom + cy
        sx = (-np.sin(theta) * dy + np.cos(theta) * dx) / zoom + cx
        padded = np.pad(flat, ((0, 0), (1, 1), (1, 1)))  # one zero ring: reads outside are 0
        y0, x0 = np.floor(sy), np.floor(sx)
        fy, fx = (sy - y0).astype(np.float32), (sx - x0).astype(np.float32)
        idx = np.arange(n)[:, None, None]

        def at(y: np.ndarray, x: np.ndarray) -> np.ndarray:
            return padded[idx, np.clip(y, -1, h).astype(np.int64) + 1,
                          np.clip(x, -1, w).astype(np.int64) + 1]

        out = ((1 - fy) * (1 - fx) * at(y0, x0) + (1 - fy) * fx * at(y0, x0 + 1)
               + fy * (1 - fx) * at(y0 + 1, x0) + fy * fx * at(y0 + 1, x0 + 1))
        return out.astype(np.float32).reshape(*lead, h, w)
