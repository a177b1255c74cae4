"""A per-factory cache of the analyses' expensive results (metric evaluations, latency
measurements), so a second ``nnfc analyze`` of the same factory reuses them.

One JSON file per factory and kind in nnfc's cache directory
(:func:`nnfc.profile_cache.cache_root`: ``$NNFC_CACHE_DIR``, else the platform's user cache),
``analysis/<factory fingerprint>/<kind>.json``: ``{"format": "nnfc-analysis-cache", "version": 1,
"entries": {key: number}}``. The file is read as untrusted input (:func:`nnfc.jsonfile.read_json`):
anything unreadable or malformed is ignored (and rewritten), never an error; entries are written
atomically after each new result, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from nnfc.atomic import atomic_file
from nnfc.schema import Const, Map, Num, Obj

FORMAT = "nnfc-analysis-cache"
VERSION = 1
#: entries are numbers: a metric, or a latency in ms
SCHEMA = Obj({"format": Const(FORMAT), "version": Const(VERSION), "entries": Map(Num())})


def gates_key(gates: Mapping[str, np.ndarray]) -> str:
    """A short digest of a gate vector (names and 0/1 entries)."""
    h = hashlib.sha1()
    for name in sorted(gates):
        h.update(name.encode())
        h.update(np.packbits(np.asarray(gates[name]).reshape(-1) > 0.5).tobytes())
    return h.hexdigest()[:20]


class ResultCache:
    """``get(key)`` / ``put(key, value)`` backed by one JSON file (``path`` None: memory only)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, Any] = {}
        if path is not None and path.is_file():
            from nnfc.errors import NnfcError
            from nnfc.jsonfile import read_json
            try:
                data = read_json(path, SCHEMA, what="analysis cache")
                self.entries = dict(data["entries"])
            except NnfcError:  # someone else's or a broken file: start afresh, never fail
                self.entries = {}
        self.hits = 0

    @classmethod
    def for_factory(cls, bundle_root: Path, kind: str, enabled: bool = True) -> "ResultCache":
        """The cache of ``kind`` for the factory at ``bundle_root`` (``enabled`` False: memory
        only). Keyed by the supernet graph's fingerprint; the metric cache is keyed by the
        weights too (see :class:`nnfc.analysis.metric.MetricEvaluator`)."""
        from nnfc.profile_cache import cache_root, fingerprint
        if not enabled:
            return cls(None)
        return cls(cache_root() / "analysis" / fingerprint(bundle_root) / f"{kind}.json")

    def get(self, key: str, valid=lambda v: isinstance(v, (int, float))) -> Any:
        value = self.entries.get(key)
        if value is not None and valid(value):
            self.hits += 1
            return value
        return None

    def put(self, key: str, value: Any) -> None:
        self.entries[key] = value
        if self.path is None:
            return
        try:
            with atomic_file(self.path) as tmp:
                tmp.write_text(json.dumps({"format": FORMAT, "version": VERSION,
                                           "entries": self.entries}), encoding="utf-8")
        except OSError:  # a read-only cache directory only costs the reuse
            self.path = None
