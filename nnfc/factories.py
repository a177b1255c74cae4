"""Where factory bundles are found: ``$NNFC_FACTORY``, the factories of a repository checkout
(``factories/<name>``) and the default factory that ``pip install`` ships (the data package
``nnfc_factories``). Installed bundles are read-only: nothing nnfc writes goes there (profiles
live in the user's cache, :mod:`nnfc.profile_cache`).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

DEFAULT = "default"
ENV = "NNFC_FACTORY"


def _checkout_dir() -> Path | None:
    """``factories/`` of the repository this nnfc runs from (an editable install, the tests)."""
    root = Path(__file__).resolve().parent.parent / "factories"
    return root if (root / DEFAULT / "manifest.json").is_file() else None


def _installed_dir() -> Path | None:
    """The ``nnfc_factories`` package of a wheel install (found without importing it)."""
    spec = importlib.util.find_spec("nnfc_factories")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / DEFAULT / "manifest.json").is_file():
            return Path(location)
    return None


def known_factories() -> dict[str, Path]:
    """Factory name -> bundle directory: the checkout's factories, else the installed ones."""
    root = _checkout_dir() or _installed_dir()
    if root is None:
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "manifest.json").is_file()}


def default_factory() -> Path:
    """The factory used when a command gets no ``--bundle``: ``$NNFC_FACTORY`` if set, else the
    default factory (of the checkout, or the one ``pip install`` shipped)."""
    env = os.environ.get(ENV)
    if env:
        return Path(env)
    return known_factories().get(DEFAULT, Path("factories") / DEFAULT)


def resolve_factory(name_or_path: str | os.PathLike | None) -> Path:
    """A ``--bundle`` value: a bundle directory, or the name of a known factory
    (``nnfc factory list``); None is :func:`default_factory`."""
    if name_or_path is None:
        return default_factory()
    path = Path(name_or_path)
    if not path.exists() and path.name == str(name_or_path):
        return known_factories().get(str(name_or_path), path)
    return path


