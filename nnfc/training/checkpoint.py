"""Training checkpoints without pickles: tensors in safetensors, everything else in JSON.

A checkpoint directory holds ``model.safetensors`` (supernet + assembler), ``optimizer.safetensors``
(per-parameter state tensors) and ``state.json`` (epoch, config, optimizer hyper-parameters and
scalar state). Written to a temp directory and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from nnfc.atomic import replace_dir
from nnfc.errors import NnfcError

STATE = "state.json"
MODEL = "model.safetensors"
OPTIM = "optimizer.safetensors"


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Write a checkpoint directory atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
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
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Restore model (and optimizer) state in place; returns the JSON state."""
    path = Path(path)
    if not (path / STATE).is_file() or not (path / MODEL).is_file():
        raise NnfcError(f"{path} is not a training checkpoint (state.json / model.safetensors "
                        "missing)")
    try:
        meta = json.loads((path / STATE).read_text(encoding="utf-8"))
        weights = load_file(str(path / MODEL))
    except Exception as exc:  # corrupt JSON or safetensors
        raise NnfcError(f"checkpoint {path} is unreadable: {exc}") from exc
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise NnfcError(f"checkpoint {path} does not fit this model (missing "
                        f"{len(missing)}, unexpected {len(unexpected)} tensors; did the config "
                        "change?)")
    if optimizer is not None:
        tensors = load_file(str(path / OPTIM))
        opt = meta["optimizer"]
        state: dict[int, dict[str, Any]] = {}
        for key, val in tensors.items():
            pid, name = key.split(".", 1)
            state.setdefault(int(pid), {})[name] = val
        for key, val in opt["scalars"].items():
            pid, name = key.split(".", 1)
            state.setdefault(int(pid), {})[name] = torch.tensor(val)
        optimizer.load_state_dict({"state": state, "param_groups": opt["param_groups"]})
    return meta
