"""Task families (numpy only): see :mod:`nnfc.families.base` for the contract.

The registry maps a family name to ``module:Class``; classes are imported on first use so that a
command touches only the family it needs.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from nnfc.errors import NnfcError
from nnfc.families.base import Batch, RunFn, Task, TaskFamily, TrainingFamily

FAMILIES: dict[str, str] = {
    "numvqa": "nnfc.families.numvqa:NumVQA",
    "attrod": "nnfc.families.attrod:AttrOD",
}


def family_class(name: str) -> type:
    """The class registered as ``name``; one clear error for an unknown name."""
    if name not in FAMILIES:
        raise NnfcError(f"unknown task family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    module, _, cls = FAMILIES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def register_family(name: str, target: str) -> None:
    """Register a family of one's own as ``"package.module:Class"``."""
    FAMILIES[name] = target


def family_from_manifest(manifest: Mapping[str, Any]) -> TaskFamily:
    """Rebuild a bundle's family (same data source and split) from its ``task_family`` section;
    bundles written before the section had ``config`` are rebuilt from the training config's
    ``[task]`` table."""
    info = manifest.get("task_family") or {}
    config = info.get("config")
    if config is None:
        training_task = (manifest.get("training") or {}).get("config", {}).get("task") or {}
        config = dict(training_task)
        config.setdefault("family", info.get("family"))
        info = {"family": info.get("family") or config.get("family")}
    name = str(info.get("family"))
    cls = family_class(name)
    try:  # a bundle from someone else: a malformed config is one error, not a traceback
        return cls.from_config(config)
    except (TypeError, ValueError, ZeroDivisionError, KeyError, AttributeError, IndexError,
            OverflowError) as exc:
        raise NnfcError(f"the bundle's task_family.config is not a valid {name} configuration "
                        f"({type(exc).__name__}: {exc})") from None


def task_config(section: Mapping[str, Any], where: str = "config") -> dict[str, Any]:
    """A training config's ``[task]`` table completed with the family's defaults (``family``
    first, default ``numvqa``); unknown keys are one clear error."""
    section = dict(section)
    name = str(section.pop("family", "numvqa"))
    defaults = dict(getattr(family_class(name), "config_defaults", {}))
    bad = set(section) - set(defaults)
    if bad:
        raise NnfcError(f"{where}: unknown key(s) in [task] for family {name}: "
                        f"{', '.join(sorted(bad))}; known: family, {', '.join(defaults)}")
    return {"family": name, **defaults, **section}


__all__ = ["FAMILIES", "Batch", "RunFn", "Task", "TaskFamily", "TrainingFamily", "family_class",
           "family_from_manifest", "register_family", "task_config"]
