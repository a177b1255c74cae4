"""Where latency/memory profiles live: the user's cache (platformdirs), one file per factory
fingerprint, target, precision and host, so an installed (read-only) factory is never written
and a profile measured on one machine is never taken for another's. A profile shipped inside a
bundle (``<bundle>/profiles/<target>.json``: a device measured elsewhere, or a checkout's own)
is still found, after this host's cached one.

``$NNFC_CACHE_DIR`` moves the cache (e.g. a CI cache directory); the default is the platform's
user cache (``~/.cache/nnfc`` on Linux, following ``$XDG_CACHE_HOME``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Any, Mapping

DEFAULT_PRECISION = "fp32"
ENV = "NNFC_CACHE_DIR"


def cache_root() -> Path:
    """nnfc's cache directory (``$NNFC_CACHE_DIR``, else the platform's user cache)."""
    env = os.environ.get(ENV)
    if env:
        return Path(env)
    import platformdirs
    return platformdirs.user_cache_path("nnfc", appauthor=False)


def host_key(host: Mapping[str, Any] | None = None) -> str:
    """A short stable name for this machine's measuring conditions: CPU model, core count and
    architecture (what ``Predictor`` checks before trusting a local profile)."""
    if host is None:
        return _this_host_key()
    text = f"{host.get('cpu')}|{host.get('cores')}|{host.get('machine')}"
    cpu = re.sub(r"[^a-z0-9]+", "-", str(host.get("cpu", "cpu")).lower()).strip("-")[:32]
    return f"{cpu}-{host.get('cores')}c-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


@functools.lru_cache(maxsize=1)
def _this_host_key() -> str:
    """:func:`host_key` of this machine, read once per process (/proc/cpuinfo, onnxruntime)."""
    from nnfc.compiler.predictor import host_info
    return host_key(host_info())


def fingerprint(bundle_root: str | os.PathLike) -> str:
    """The factory's fingerprint: the start of its supernet.onnx sha256 as the manifest records
    it (the graph; weights live in supernet.safetensors, so a retrained factory of the same
    architecture keeps its profiles)."""
    from nnfc.errors import NnfcError
    from nnfc.jsonfile import read_json
    manifest = Path(bundle_root) / "manifest.json"
    try:
        sha = read_json(manifest, max_bytes=16 << 20)["files"]["supernet.onnx"]
    except (NnfcError, KeyError, TypeError):
        from nnfc.bundle import sha256_file
        sha = sha256_file(Path(bundle_root) / "supernet.onnx")
    return str(sha)[:16]


def cache_profile_path(bundle_root: str | os.PathLike, target: str,
                       precision: str = DEFAULT_PRECISION) -> Path:
    """Where this host's profile of the factory on ``target`` is written and read."""
    return (cache_root() / "profiles" / fingerprint(bundle_root)
            / f"{target}-{precision}-{host_key()}.json")


def shipped_profile_path(bundle_root: str | os.PathLike, target: str) -> Path:
    """A profile that comes inside the bundle (measured elsewhere, or a checkout's own); never
    through a ``profiles`` symlink (that would read or write outside the bundle)."""
    from nnfc.trust import own_subdir
    return own_subdir(bundle_root, "profiles", str(bundle_root)) / f"{target}.json"


def find_profile(bundle_root: str | os.PathLike, target: str,
                 precision: str = DEFAULT_PRECISION) -> Path | None:
    """The profile to use when none is given: this host's cached one, else the bundle's own;
    None when there is neither."""
    for path in (cache_profile_path(bundle_root, target, precision),
                 shipped_profile_path(bundle_root, target)):
        if path.is_file():
            return path
    return None
