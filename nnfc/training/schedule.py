"""Training schedules: the learning rate over epochs and the limits drawn each epoch."""

from __future__ import annotations

import math

import numpy as np

from nnfc.training.config import FactoryConfig


def limit_floor(cfg: FactoryConfig, progress: float) -> float:
    """The smallest limit drawn at ``progress`` (epochs): ``train.limit_min``, or with
    progressive shrinking (Once-for-All) ``limit_shrink_from`` lowered log-linearly to
    ``limit_min`` over the first ``limit_shrink_epochs`` epochs."""
    t = cfg.train
    if t.limit_shrink_epochs <= 0 or t.limit_shrink_from <= t.limit_min:
        return t.limit_min
    frac = min(1.0, progress / t.limit_shrink_epochs)
    return math.exp((1 - frac) * math.log(t.limit_shrink_from) + frac * math.log(t.limit_min))


def sample_limits(cfg: FactoryConfig, n: int, rng: np.random.Generator,
                  epoch: int = 0) -> np.ndarray:
    """``n`` training limits for ``epoch``, from :func:`limit_floor` to ``train.limit_max``."""
    t = cfg.train
    low = limit_floor(cfg, epoch)
    if t.limit_sampling == "loguniform":
        return np.exp(rng.uniform(math.log(low), math.log(t.limit_max), n)).astype(np.float32)
    return rng.uniform(low, t.limit_max, n).astype(np.float32)


def lr_at(cfg: FactoryConfig, progress: float) -> float:
    """Linear warm-up then cosine decay; ``progress`` in epochs."""
    t = cfg.train
    if progress < t.warmup_epochs:
        return t.lr * (progress + 1e-3) / t.warmup_epochs
    frac = (progress - t.warmup_epochs) / max(1e-9, t.epochs - t.warmup_epochs)
    return 0.5 * t.lr * (1 + math.cos(math.pi * min(1.0, frac)))
