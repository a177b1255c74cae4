"""The JSON of one ``nnfc bench`` run (``--save``, ``--json``, read back by ``--baseline`` and
``--trend``).

``{"format": "nnfc-bench", "version": 1, "created", "host": {..., "load_before", "load_after"},
"settings": {...}, "artifacts": [{"name", "artifact", "sha256", "target", "latency_ms":
{"median", "best", "p90", "rounds": [...]}, "memory_mb", "memory_source", "runtime_memory_mb",
"eval", "violations", "comparison"}], "regression", "exit_code"}``

``artifact`` paths are stored relative to the saved file's directory when they lie under it, so a
baseline directory copied elsewhere (a CI cache) still finds its artifacts.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

from nnfc.errors import NnfcError
from nnfc.jsonfile import read_json
from nnfc.file_schemas import BENCH_RUN, COMPILE_REPORT
from nnfc.schema import Obj, SchemaError

FORMAT, VERSION = "nnfc-bench", 1
#: what a baseline's artifact path may name before nnfc hashes it
MAX_ARTIFACT_BYTES = 4 << 30
ARTIFACT_SUFFIXES = (".onnx", ".tflite", ".engine", ".plan")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def host_info() -> dict[str, Any]:
    """Where the run was made: host name, CPU count, load average (1/5/15 min)."""
    import platform
    return {"hostname": platform.node(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "load": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def relative_to_save(artifact: Path, save_path: Path | None) -> str:
    """``artifact`` relative to the saved file's directory when under it, else absolute."""
    artifact = artifact.resolve()
    if save_path is not None:
        try:
            return str(artifact.relative_to(save_path.resolve().parent))
        except ValueError:
            pass
    return str(artifact)


MAX_RUN_BYTES = 64 << 20


def load_run(path: str | os.PathLike) -> dict[str, Any]:
    """Read a saved run through :func:`nnfc.jsonfile.read_json` (:data:`nnfc.file_schemas.BENCH_RUN`); one clear
    error naming the file and field for a missing, foreign or malformed file."""
    path = Path(path)
    data = read_json(path, Obj(), what="saved run", max_bytes=MAX_RUN_BYTES)
    if data.get("format") != FORMAT:
        raise NnfcError(f"{path} is not a run saved by `nnfc bench --save`")
    if data.get("version") != VERSION:
        raise NnfcError(f"{path} has nnfc-bench format version {data.get('version')}, this nnfc "
                        f"reads version {VERSION}")
    try:
        BENCH_RUN.check(data)
    except SchemaError as exc:
        raise NnfcError(f"saved run {path}: field {exc.field}: {exc.message}") from None
    data["_path"] = str(path)
    return data


def read_report(path: str | os.PathLike) -> dict[str, Any]:
    """A compile output's ``report.json`` through :func:`nnfc.jsonfile.read_json`."""
    return read_json(path, COMPILE_REPORT, what="compile report", max_bytes=16 << 20)


def baseline_entry(run: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The saved entry for artifact ``name``: the same name, else the one entry whose name has
    the same last component."""
    entries = run.get("artifacts", [])
    for e in entries:
        if e.get("name") == name:
            return e
    tail = Path(name).name
    same = [e for e in entries if Path(str(e.get("name", ""))).name == tail]
    return same[0] if len(same) == 1 else None


def baseline_artifact(run: dict[str, Any], entry: dict[str, Any]) -> Path | None:
    """The baseline's artifact file when it is still there unchanged (same sha256), else None."""
    stored = entry.get("artifact")
    if not stored:
        return None
    path = Path(stored)
    if not path.is_absolute():
        path = Path(run["_path"]).resolve().parent / path
    # type, size and location before a byte is hashed: a regular file (no device, FIFO or
    # symlink), at most MAX_ARTIFACT_BYTES, with the suffix of a model artifact
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if (not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ARTIFACT_BYTES
            or path.suffix.lower() not in ARTIFACT_SUFFIXES
            or not isinstance(entry.get("sha256"), str)):
        return None
    try:
        return path if sha256_of(path) == entry["sha256"] else None
    except OSError:
        return None
