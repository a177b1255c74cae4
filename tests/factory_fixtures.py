"""A tiny NumVQA factory trained in seconds, shared by the training / bundle / eval tests."""

from __future__ import annotations

import copy

TINY_CONFIG = {
    "seed": 0,
    "task": {"seen": [["has", "0"], ["only-four", "odd"]], "unseen": [["has", "1"]]},
    "backbone": {"family": "resnet", "depths": [1, 1], "widths": [8, 16], "stem": "small"},
    "assembler": {"hidden": 32, "gater_hidden": 16, "init_bias": 0.0},
    "train": {"epochs": 3, "samples_per_epoch": 3000, "batch_size": 64, "optimizer": "adamw",
              "lr": 0.01, "eval_per_task": 100, "eval_limits": [0.5, 1.0], "threads": 1},
}


def tiny_config(**train_overrides) -> dict:
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["train"].update(train_overrides)
    return cfg


def toml_text(cfg: dict) -> str:
    """Minimal TOML writer for the test configs (tables of scalars and lists)."""
    import json

    lines = [f"seed = {cfg['seed']}"]
    for section in ("task", "backbone", "assembler", "train"):
        lines.append(f"[{section}]")
        for key, val in cfg.get(section, {}).items():
            lines.append(f"{key} = {json.dumps(val)}")
    return "\n".join(lines) + "\n"


def train_tiny(root) -> "object":
    """Train the tiny factory into ``root`` (a few seconds) and return the bundle path."""
    from nnfc.training.config import config_from_dict
    from nnfc.training.trainer import train_factory

    return train_factory(config_from_dict(tiny_config()), root, progress=False,
                         log=lambda m: None)
