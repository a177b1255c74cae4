"""Training checkpoints without pickles: tensors in safetensors, everything else in JSON.

A checkpoint directory holds ``model.safetensors`` (supernet + assembler), ``optimizer.safetensors``
(per-parameter state tensors) and ``state.json`` (epoch, config, optimizer hyper-parameters and
scalar state). Written to a temp directory and renamed into place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from nnfc.errors import NnfcError
from nnfc.outputs import output_dir

STATE = "state.json"
MODEL = "model.safetensors"
OPTIM = "optimizer.safetensors"


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, state: dict[str, Any], *,
                    force: bool = False) -> None:
    """Write a checkpoint directory atomically (it replaces an earlier checkpoint there)."""
    with output_dir(path, "checkpoint", force=force, option="--checkpoint-dir") as tmp:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / MODEL))
        opt = optimizer.state_dict()
        tensors, scalars = {}, {}
        for pid, pstate in opt["state"].items():
            for key, val in pstate.items():
                if torch.is_tensor(val) and val.dim() > 0:
                    tensors[f"{pid}.{key}"] = val.detach().cpu().contiguous()
                else:
                    scalars[f"{pid}.{key}"] = float(val)
        save_file(tensors, str(tmp / OPTIM))
        meta = {**state, "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars}}
        (tmp / STATE).write_text(json.dumps(meta, indent=1), encoding="utf-8")


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's ``state.json``, checked: an object with an integer ``epoch`` and a
    ``config`` table; one NnfcError otherwise."""
    path = Path(path)
    if not (path / STATE).is_file() or not (path / MODEL).is_file():
        raise NnfcError(f"{path} is not a training checkpoint (state.json / model.safetensors "
                        "missing)")
    try:
        meta = json.loads((path / STATE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise NnfcError(f"checkpoint {path}: {STATE} is unreadable: {exc}") from exc
    if (not isinstance(meta, dict) or not isinstance(meta.get("epoch"), int)
            or isinstance(meta.get("epoch"), bool) or meta["epoch"] < 0
            or not isinstance(meta.get("config"), dict)
            or not isinstance(meta.get("history", []), list)):
        raise NnfcError(f"checkpoint {path}: {STATE} must hold an object with 'epoch' (integer "
                        ">= 0), 'config' and 'history'; start afresh without --resume")
    return meta


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise NnfcError(f"checkpoint {path.parent}: {path.name} is missing; start afresh "
                        "without --resume")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for truncated files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NnfcError(f"checkpoint {path.parent}: {path.name} is unreadable ({first}); "
                        "start afresh without --resume") from exc


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Restore model (and optimizer) state in place; returns the JSON state. Every problem
    (missing, truncated or mismatched files, a bad state.json) is one NnfcError."""
    path = Path(path)
    meta = read_state(path)
    weights = _load_tensors(path / MODEL)
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # tensor shapes differ
        raise NnfcError(f"checkpoint {path} does not fit this model (tensor shapes differ; did "
                        "the config change?)") from exc
    if missing or unexpected:
        raise NnfcError(f"checkpoint {path} does not fit this model (missing "
                        f"{len(missing)}, unexpected {len(unexpected)} tensors; did the config "
                        "change?)")
    if optimizer is not None:
        tensors = _load_tensors(path / OPTIM)
        try:
            opt = meta["optimizer"]
            state: dict[int, dict[str, Any]] = {}
            for key, val in tensors.items():
                pid, name = key.split(".", 1)
                state.setdefault(int(pid), {})[name] = val
            for key, val in opt["scalars"].items():
                pid, name = key.split(".", 1)
                state.setdefault(int(pid), {})[name] = torch.tensor(val)
            optimizer.load_state_dict({"state": state, "param_groups": opt["param_groups"]})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise NnfcError(f"checkpoint {path}: the optimizer state does not fit this "
                            f"optimizer ({type(exc).__name__}: {exc}); start afresh without "
                            "--resume") from exc
    return meta
