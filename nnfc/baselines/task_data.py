"""What the baselines need from a factory's task family, through the task-family contract
(``nnfc.families``): the training recipe, one task's batches, the network (gated backbone + the
family's head), its loss, the output names and the test metric — all rebuilt from the bundle's
manifest, so a baseline trains on exactly the data, split, augmentation and seed handling the
factory was trained with, and is scored by the family's own metric (accuracy, mAP@0.5, ...).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from nnfc.bundle import Bundle
from nnfc.errors import NnfcError

#: The test protocol of ``nnfc eval``: ``family.evaluate(task, run, EVAL_SAMPLES, EVAL_SEED)``.
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
    """The factory's gated backbone + the family's head at full width (no assembler)."""
    from nnfc.training.trainer import build_models
    supernet, _ = build_models(cfg, family)
    return supernet


def load_weights(net, path) -> None:
    """Load a bundle's ``supernet.safetensors`` (older bundles' names mapped) into ``net``."""
    from nnfc.bundle_weights import torch_state
    from nnfc.training.trainer import legacy_state_dict
    state = legacy_state_dict(torch_state(path), net.family)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise NnfcError(f"{path} does not fit the network the manifest's config builds "
                        f"(missing {len(missing)}, unexpected {len(unexpected)} tensors)")


def output_names(family) -> list[str]:
    """The network's outputs in order (the family's ``output_spec``)."""
    return [o["name"] for o in family.output_spec()]


def task_epoch(cfg, family, task: Sequence[str], epoch: int) -> dict[str, Any]:
    """The epoch's batch: ``samples_per_epoch`` samples of ``task`` from the train split with
    the family's augmentation, drawn from ``default_rng([seed, epoch])`` like the factory's."""
    rng = np.random.default_rng([cfg.seed, epoch])
    return family.batch([tuple(task)], cfg.train.samples_per_epoch, "train", rng, augment=True)


def sample_batch(family, task: Sequence[str], n: int, rng: np.random.Generator
                 ) -> dict[str, Any]:
    """``n`` training samples of ``task`` (no augmentation), e.g. for Taylor importance."""
    return family.batch([tuple(task)], n, "train", rng, augment=False)


def rows(data: Mapping[str, Any], idx: np.ndarray) -> dict[str, Any]:
    """Rows ``idx`` of a family batch as torch tensors (lists stay per row)."""
    import torch

    from nnfc.training.trainer import _slice_batch
    return _slice_batch(dict(data), idx, torch.device("cpu"))


def batch_size_of(data: Mapping[str, Any]) -> int:
    return len(data["image"])


def batch_loss(net, family, batch: Mapping[str, Any]):
    """The family's training loss of ``net`` on a torch batch."""
    from nnfc.training.heads import training_family
    return training_family(family.name).loss(net(batch["image"]), batch)


def task_metric(family, task: Sequence[str],
                run: Callable[[np.ndarray], Mapping[str, np.ndarray]],
                samples: int = EVAL_SAMPLES) -> dict[str, Any]:
    """The family's metric of a model (``run``: images -> named outputs) on ``task``'s test
    samples — the numbers ``nnfc eval`` gives for the factory's own models."""
    value = family.evaluate(tuple(task), run, samples, EVAL_SEED)
    return {"metric": family.metric, "value": float(value), "samples": int(samples),
            "split": "test", "seed": EVAL_SEED}
