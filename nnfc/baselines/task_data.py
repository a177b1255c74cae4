"""What the baselines need from a factory's task family: the training recipe, one task's data, the
network, its loss and the test metric — all rebuilt from the bundle's manifest, so a baseline
trains on exactly the data, split, augmentation and seed handling the factory was trained with.

The one place that knows the family's data layout; the baselines only call these functions.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from nnfc.bundle import Bundle
from nnfc.errors import NnfcError

#: Seed of the test samples; the same protocol as ``nnfc eval`` (per task: crc32(task), 2024).
EVAL_SEED = 2024
EVAL_SAMPLES = 200


def recipe_of(bundle: Bundle):
    """The bundle's training config (``FactoryConfig``); a clear error for a bundle without one
    (e.g. not made by ``nnfc train``)."""
    from nnfc.training.config import config_from_dict

    config = bundle.manifest.get("training", {}).get("config")
    if not isinstance(config, dict):
        raise NnfcError(f"{bundle.root}: the manifest holds no training config "
                        "(training.config); baselines need the factory's recipe — use a bundle "
                        "made by `nnfc train`")
    return config_from_dict(config, f"{bundle.root}/manifest.json")


def family_of(cfg):
    """The task family the recipe names (same source and train/test split)."""
    from nnfc.training.trainer import build_task_family
    return build_task_family(cfg)


def parse_task(bundle: Bundle, family, attrs: Sequence[str]) -> tuple[str, ...]:
    """A canonical task; unknown attributes are one clear error naming the vocabulary."""
    bundle.encode_task(list(attrs))
    return tuple(family.parse_task(list(attrs)))


def build_network(cfg, family):
    """The factory's gated backbone + head at full width (no assembler)."""
    from nnfc.training.trainer import build_models
    supernet, _ = build_models(cfg, family)
    return supernet


@dataclass
class TaskEpoch:
    """One epoch of training samples of one task (numpy)."""

    images: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)


def task_epoch(cfg, family, task: Sequence[str], epoch: int) -> TaskEpoch:
    """The epoch's samples: ``samples_per_epoch`` of ``task`` from the train split with the
    factory's augmentation, drawn from ``default_rng([seed, epoch])`` like the factory's epochs."""
    from nnfc.training.tasks.augment import TileJitter

    t = cfg.train
    rng = np.random.default_rng([cfg.seed, epoch])
    jitter = TileJitter(t.augment_shift, t.augment_rotate, t.augment_scale)
    x, _, y = family.sample([tuple(task)], t.samples_per_epoch, "train", rng, jitter=jitter)
    return TaskEpoch(x, y)


def batch_loss(net, images, targets):
    """(loss, number correct) of a batch: cross-entropy of the yes/no logits."""
    import torch.nn.functional as F
    logits = net(images)
    return F.cross_entropy(logits, targets), int((logits.argmax(1) == targets).sum())


def test_samples(family, task: Sequence[str], samples: int = EVAL_SAMPLES
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The test images and labels ``nnfc eval`` scores ``task`` on."""
    rng = np.random.default_rng([zlib.crc32(",".join(task).encode()), EVAL_SEED])
    x, _, y = family.sample([tuple(task)], samples, "test", rng)
    return x, y


def task_metric(family, task: Sequence[str],
                run: Callable[[np.ndarray], Mapping[str, np.ndarray]],
                samples: int = EVAL_SAMPLES) -> dict[str, Any]:
    """The family's metric of a model (``run``: images -> named outputs) on ``task``."""
    x, y = test_samples(family, task, samples)
    logits = np.asarray(next(iter(run(x).values())))
    return {"metric": "accuracy", "value": float((logits.argmax(1) == y).mean()),
            "samples": int(len(y)), "split": "test", "seed": EVAL_SEED}
