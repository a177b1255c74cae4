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
                warmup_epochs, lambda_gate, gate_loss, limit_margin, gate_warmup_epochs, limit_min,
                limit_max, limit_sampling, limit_shrink_epochs, limit_shrink_from, hard_fraction,
                cap_in_training,
                eval_per_task, eval_limits, history_eval_every, history_eval_per_task,
                checkpoint_every, device, threads
    [export]    opset

Unknown sections or keys are an error (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import math
import os
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
    factorized: bool = False   # each gate entry reads one attribute group (AttrOD: colours or
                               # categories), never both: unseen pairs are new combinations


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
    # progressive shrinking (Once-for-All): the smallest limit drawn starts at limit_shrink_from
    # and falls log-linearly to limit_min over the first limit_shrink_epochs epochs (0: off)
    limit_shrink_epochs: float = 0.0
    limit_shrink_from: float = 0.25
    hard_fraction: float = 0.5  # SemHash: share of samples using discrete (straight-through) gates
    cap_in_training: bool = False  # the network sees the gates inference's cap leaves (top
                                   # floor(limit x total) scores), so small limits train what runs
    eval_per_task: int = 100  # test samples per task for the metrics in the manifest
    eval_limits: list[float] = field(default_factory=lambda: [0.03, 0.05, 0.1, 0.25, 1.0])
    # every this many epochs (and after the last) record the metric at eval_limits in the
    # training history, history_eval_per_task test samples per task (0: never)
    history_eval_every: int = 0
    history_eval_per_task: int = 4
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


def config_from_dict(data: dict[str, Any], where: str = "config",
                     overrides: dict[str, Any] | None = None) -> FactoryConfig:
    """Build and validate a FactoryConfig from parsed TOML/JSON. ``overrides`` (``"seed"`` or
    ``"section.key"`` -> value, e.g. from the command line) are applied first, so the final
    config is validated once; every problem is one line of one NnfcError."""
    if not isinstance(data, dict):
        raise NnfcError(f"{where}: the config must be a table")
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, name = key.rpartition(".")
        (data.setdefault(section, {}) if section else data)[name] = value
    unknown = set(data) - set(_SECTIONS) - {"backbone", "seed", "task", "head"}
    if unknown:
        raise NnfcError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                        f"known: seed, task, backbone, head, {', '.join(_SECTIONS)}")
    backbone = data.get("backbone")
    if not isinstance(backbone, dict) or "family" not in backbone:
        raise NnfcError(f"{where}: [backbone] with a 'family' (resnet, vit, mobilenet or a "
                        "preset) is required")
    kwargs: dict[str, Any] = {"backbone": dict(backbone)}
    problems = _backbone_problems(backbone)
    if "seed" in data:
        if not _is_int(data["seed"]):
            problems.append("seed must be an integer")
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
        problems += [f"{name}.{key} {msg}" for key, value in section.items()
                     if (msg := _type_problem(value, known[key].type))]
        kwargs[name] = cls(**section)
    cfg = FactoryConfig(**kwargs)
    if not problems:  # value checks assume the types are right
        problems = _value_problems(cfg)
    if problems:
        raise NnfcError("\n".join(f"{where}: {p}" for p in problems))
    return cfg


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return (_is_int(x) or isinstance(x, float)) and math.isfinite(x)


def _type_problem(value: Any, annotation: str) -> str:
    """Why ``value`` does not fit a config field's type annotation ("" when it does)."""
    if annotation.endswith("| None") and value is None:
        return ""
    checks = {
        "int": (_is_int, "must be an integer"),
        "float": (_is_number, "must be a finite number"),
        "str": (lambda v: isinstance(v, str), "must be a string"),
        "bool": (lambda v: isinstance(v, bool), "must be true or false"),
        "list[float]": (lambda v: isinstance(v, list) and all(map(_is_number, v)),
                        "must be a list of numbers"),
    }
    base = annotation.removesuffix(" | None")
    if base == "list[list[str]]":
        ok = isinstance(value, list) and all(
            isinstance(t, list) and all(isinstance(a, str) for a in t) for t in value)
        return "" if ok else "must be a list of attribute lists"
    check, msg = checks.get(base, (lambda v: True, ""))
    return "" if check(value) else f"{msg} (got {value!r})"


#: [backbone] sizes where 0 means "none" (MobileNetV2's last 1x1 conv: a detector reads the stages)
ZERO_MEANS_NONE = frozenset({"last_width"})


def _backbone_problems(backbone: dict[str, Any]) -> list[str]:
    """Every integer (or list of integers) of [backbone] is a size or count: it must be >= 1
    (>= 0 for the sizes in ``ZERO_MEANS_NONE``)."""
    problems = []
    for key, value in backbone.items():
        low = 0 if key in ZERO_MEANS_NONE else 1
        if key == "family" and not isinstance(value, str):
            problems.append("backbone.family must be a string")
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            problems.append(f"backbone.{key} must not be empty")
        elif any(isinstance(v, float) and not math.isfinite(v) for v in items):
            problems.append(f"backbone.{key} must be finite (got {value!r})")
        elif all(_is_int(v) or isinstance(v, float) for v in items) and any(
                v < low for v in items if _is_int(v)):
            kind = "non-negative" if low == 0 else "positive"
            problems.append(f"backbone.{key} must hold {kind} integers (got {value!r})")
        elif isinstance(value, list) and any(_is_int(v) for v in items) and not all(
                _is_int(v) for v in items):
            problems.append(f"backbone.{key} must hold integers only (got {value!r})")
    return problems


def _value_problems(cfg: FactoryConfig) -> list[str]:
    t = cfg.train
    checks = [
        (t.epochs >= 1, "train.epochs must be >= 1"),
        (t.batch_size >= 2, "train.batch_size must be >= 2 (BatchNorm)"),
        (t.samples_per_epoch >= t.batch_size, "train.samples_per_epoch must be >= batch_size"),
        (t.optimizer in ("sgd", "adamw"), "train.optimizer must be 'sgd' or 'adamw'"),
        (t.lr > 0, "train.lr must be > 0"),
        (t.momentum >= 0 and t.weight_decay >= 0,
         "train.momentum and train.weight_decay must be >= 0"),
        (t.warmup_epochs >= 0 and t.gate_warmup_epochs >= 0,
         "train.warmup_epochs and train.gate_warmup_epochs must be >= 0"),
        (t.lambda_gate >= 0, "train.lambda_gate must be >= 0"),
        (0 < t.limit_min <= t.limit_max <= 1, "need 0 < train.limit_min <= limit_max <= 1"),
        (t.limit_shrink_epochs >= 0 and 0 < t.limit_shrink_from <= t.limit_max,
         "train.limit_shrink_epochs must be >= 0 and 0 < limit_shrink_from <= limit_max"),
        (t.limit_sampling in ("uniform", "loguniform"),
         "train.limit_sampling must be 'uniform' or 'loguniform'"),
        (0 <= t.limit_margin < 1, "train.limit_margin must be in [0, 1)"),
        (t.gate_loss in ("absolute", "relative"),
         "train.gate_loss must be 'absolute' or 'relative'"),
        (0 <= t.hard_fraction <= 1, "train.hard_fraction must be in [0, 1]"),
        (t.eval_per_task >= 1, "train.eval_per_task must be >= 1"),
        (t.threads >= 0, "train.threads must be >= 0 (0: torch's default)"),
        (t.device in ("auto", "cpu", "cuda"), "train.device must be auto, cpu or cuda"),
        (t.checkpoint_every >= 0, "train.checkpoint_every must be >= 0"),
        (t.history_eval_every >= 0 and t.history_eval_per_task >= 1,
         "train.history_eval_every must be >= 0 and train.history_eval_per_task >= 1"),
        (bool(t.eval_limits) and all(0 < x <= 1 for x in t.eval_limits),
         "train.eval_limits must be a non-empty list in (0, 1]"),
        (cfg.assembler.experts >= 1, "assembler.experts must be >= 1"),
        (cfg.assembler.hidden >= 1, "assembler.hidden must be >= 1"),
        (cfg.assembler.depth >= 0 and cfg.assembler.gater_hidden >= 0,
         "assembler.depth and assembler.gater_hidden must be >= 0"),
        (cfg.assembler.limit_dim >= 2 and cfg.assembler.limit_dim % 2 == 0,
         "assembler.limit_dim must be even and >= 2"),
        (cfg.export.opset >= 1, "export.opset must be >= 1"),
    ]
    return [msg for ok, msg in checks if not ok]


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None
                ) -> FactoryConfig:
    """Read a TOML config file, apply ``overrides`` (see :func:`config_from_dict`) and validate
    the result; every problem is one line of one NnfcError."""
    from nnfc.jsonfile import read_toml
    path = Path(path)
    data = read_toml(path, what="config file")  # regular file, at most 1 MiB
    try:
        return config_from_dict(data, str(path), overrides)
    except TypeError as exc:
        raise NnfcError(f"{path}: {exc}") from exc
