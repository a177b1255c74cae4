"""Training configuration: one TOML file holds every knob of a factory training run.

Sections (all optional except ``[backbone] family``)::

    seed = 0
    [task]      family (default numvqa) + that task family's keys (its ``config_defaults``, e.g.
                numvqa: mnist_dir, test_fraction, split_seed, unseen, seen, augment_*)
    [backbone]  family or preset + its keyword arguments (in_channels is filled in)
    [head]      the task family's head keyword arguments (see ``nnfc.training.heads``)
    [assembler] hidden, depth, gater_hidden, experts, limit_dim, limit_scale, init_bias,
                cap_at_limit
    [train]     epochs, samples_per_epoch, batch_size, optimizer, lr, momentum, weight_decay,
                warmup_epochs, lambda_gate, gate_loss, limit_margin, gate_warmup_epochs, limit_min, limit_max, limit_sampling, hard_fraction,
                eval_per_task, eval_limits, device, threads
    [export]    opset

Unknown sections or keys are an error (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from nnfc.errors import NnfcError
from nnfc.families import task_config


@dataclass
class AssemblerConfig:
    hidden: int = 128
    depth: int = 1
    gater_hidden: int = 64
    experts: int = 1
    limit_dim: int = 20
    limit_scale: float = 100.0
    init_bias: float = 1.0
    cap_at_limit: bool = True  # inference: never more than floor(limit * total) active gates


@dataclass
class TrainConfig:
    epochs: int = 10
    samples_per_epoch: int = 20000
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    lambda_gate: float = 100.0
    gate_loss: str = "absolute"  # absolute: paper's MSE(ratio, limit); relative: /limit
    limit_margin: float = 0.0  # the gate loss aims at limit - margin (discrete gates round up)
    gate_warmup_epochs: float = 1.0  # lambda ramps linearly from 0 over this many epochs
    limit_min: float = 0.01
    limit_max: float = 1.0
    limit_sampling: str = "uniform"  # uniform | loguniform
    hard_fraction: float = 0.5  # SemHash: share of samples using discrete (straight-through) gates
    eval_per_task: int = 100  # test samples per task for the metrics in the manifest
    eval_limits: list[float] = field(default_factory=lambda: [0.03, 0.05, 0.1, 0.25, 1.0])
    # also checkpoint every this many steps inside an epoch (0: after each epoch only); a run
    # resumed mid-epoch sees the same data but other SemHash draws than an uninterrupted one
    checkpoint_every: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch intra-op threads per process; 0 = torch's default


@dataclass
class ExportConfig:
    opset: int = 18


@dataclass
class FactoryConfig:
    backbone: dict[str, Any]
    seed: int = 0
    #: the task family's [task] table, completed with its defaults (see families.task_config)
    task: dict[str, Any] = field(default_factory=lambda: task_config({}))
    #: the task family's [head] keyword arguments
    head: dict[str, Any] = field(default_factory=dict)
    assembler: AssemblerConfig = field(default_factory=AssemblerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SECTIONS = {"assembler": AssemblerConfig, "train": TrainConfig, "export": ExportConfig}
#: before task families had their own [task] keys, the digit jitter lived in [train]
_LEGACY_TRAIN_TO_TASK = ("augment_shift", "augment_rotate", "augment_scale")


def config_from_dict(data: dict[str, Any], where: str = "config") -> FactoryConfig:
    """Build and validate a FactoryConfig from parsed TOML/JSON."""
    data = dict(data)
    unknown = set(data) - set(_SECTIONS) - {"backbone", "seed", "task", "head"}
    if unknown:
        raise NnfcError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                        f"known: seed, task, backbone, head, {', '.join(_SECTIONS)}")
    backbone = data.get("backbone")
    if not isinstance(backbone, dict) or "family" not in backbone:
        raise NnfcError(f"{where}: [backbone] with a 'family' (resnet, vit, mobilenet or a "
                        "preset) is required")
    kwargs: dict[str, Any] = {"backbone": dict(backbone)}
    if "seed" in data:
        if not isinstance(data["seed"], int):
            raise NnfcError(f"{where}: seed must be an integer")
        kwargs["seed"] = data["seed"]
    for name in ("task", "head", "train"):
        if not isinstance(data.get(name, {}), dict):
            raise NnfcError(f"{where}: [{name}] must be a table")
    task, train = dict(data.get("task") or {}), dict(data.get("train") or {})
    for key in _LEGACY_TRAIN_TO_TASK:
        if key in train:
            task.setdefault(key, train.pop(key))
    data["train"] = train
    kwargs["task"] = task_config(task, where)
    kwargs["head"] = dict(data.get("head") or {})
    for name, cls in _SECTIONS.items():
        section = data.get(name, {})
        if not isinstance(section, dict):
            raise NnfcError(f"{where}: [{name}] must be a table")
        known = {f.name: f for f in fields(cls)}
        bad = set(section) - set(known)
        if bad:
            raise NnfcError(f"{where}: unknown key(s) in [{name}]: {', '.join(sorted(bad))}; "
                            f"known: {', '.join(known)}")
        kwargs[name] = cls(**section)
    cfg = FactoryConfig(**kwargs)
    _validate(cfg, where)
    return cfg


def _validate(cfg: FactoryConfig, where: str) -> None:
    t = cfg.train
    checks = [
        (t.epochs >= 1, "train.epochs must be >= 1"),
        (t.batch_size >= 2, "train.batch_size must be >= 2 (BatchNorm)"),
        (t.samples_per_epoch >= t.batch_size, "train.samples_per_epoch must be >= batch_size"),
        (t.optimizer in ("sgd", "adamw"), "train.optimizer must be 'sgd' or 'adamw'"),
        (t.lr > 0, "train.lr must be > 0"),
        (0 < t.limit_min <= t.limit_max <= 1, "need 0 < train.limit_min <= limit_max <= 1"),
        (t.limit_sampling in ("uniform", "loguniform"),
         "train.limit_sampling must be 'uniform' or 'loguniform'"),
        (0 <= t.limit_margin < 1, "train.limit_margin must be in [0, 1)"),
        (t.gate_loss in ("absolute", "relative"),
         "train.gate_loss must be 'absolute' or 'relative'"),
        (0 <= t.hard_fraction <= 1, "train.hard_fraction must be in [0, 1]"),
        (t.device in ("auto", "cpu", "cuda"), "train.device must be auto, cpu or cuda"),
        (t.checkpoint_every >= 0, "train.checkpoint_every must be >= 0"),
        (all(0 < x <= 1 for x in t.eval_limits), "train.eval_limits must lie in (0, 1]"),
        (cfg.assembler.experts >= 1, "assembler.experts must be >= 1"),
        (cfg.assembler.limit_dim >= 2 and cfg.assembler.limit_dim % 2 == 0,
         "assembler.limit_dim must be even and >= 2"),
    ]
    for ok, msg in checks:
        if not ok:
            raise NnfcError(f"{where}: {msg}")


def load_config(path: str | os.PathLike) -> FactoryConfig:
    """Read a TOML config file; every problem is one NnfcError."""
    path = Path(path)
    if not path.is_file():
        raise NnfcError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise NnfcError(f"{path} is not valid TOML: {exc}") from exc
    try:
        return config_from_dict(data, str(path))
    except TypeError as exc:
        raise NnfcError(f"{path}: {exc}") from exc
