"""The one JSON reader for every file nnfc reads (manifests, gates, predictors, measurements,
baselines, reports, output markers): files may come from someone else.

- regular files only (a FIFO, ``/dev/zero`` or a directory is refused before any read);
- a size cap per kind, checked on the open file before reading (read at most cap + 1 bytes);
- strict JSON: duplicate keys, ``NaN``/``Infinity`` literals, numbers longer than 400 digits and
  nesting deeper than :data:`MAX_DEPTH` are refused;
- a schema per kind (:mod:`nnfc.schema`); every problem is one :class:`NnfcError` naming the
  file and the field.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from nnfc.errors import NnfcError
from nnfc.schema import Schema, SchemaError

MAX_DEPTH = 64
MAX_BYTES = 64 << 20     # default cap: the largest file nnfc writes is far below it
MAX_NUMBER_DIGITS = 400


class _Refused(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number (write a finite number)")


def _number(text: str) -> Any:
    if len(text) > MAX_NUMBER_DIGITS:
        raise _Refused(f"a number of {len(text)} characters (at most {MAX_NUMBER_DIGITS})")
    if not any(c in text for c in ".eE"):
        return int(text)
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text} is beyond the float range")
    return value


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return True


def parse_json(text: str | bytes, source: str, schema: Schema | None = None) -> Any:
    """Parse ``text`` strictly (see the module doc) and check it against ``schema``; one
    NnfcError naming ``source`` (and the field) for anything wrong."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_constant,
                          parse_int=_number, parse_float=_number)
    except UnicodeDecodeError as exc:
        raise NnfcError(f"{source} is not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise NnfcError(f"{source}: JSON nested more than {MAX_DEPTH} levels deep") from None
    except _Refused as exc:
        raise NnfcError(f"{source}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise NnfcError(f"{source} is not valid JSON: {exc.msg} (line {exc.lineno}, column "
                        f"{exc.colno})") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise NnfcError(f"{source} is not valid JSON: {exc}") from None
    if not _depth_ok(data, MAX_DEPTH):
        raise NnfcError(f"{source}: JSON nested more than {MAX_DEPTH} levels deep")
    if schema is not None:
        try:
            schema.check(data)
        except SchemaError as exc:
            where = f"field {exc.field}: " if exc.field else ""
            raise NnfcError(f"{source}: {where}{exc.message}") from None
    return data


def read_bytes_capped(path: str | os.PathLike, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; one NnfcError naming the file for
    a missing, unreadable, special (FIFO, device, directory) or too large one."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise NnfcError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise NnfcError(f"{what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise NnfcError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise NnfcError(f"{what} {path} is {kind} (nnfc reads only regular files)")
        if info.st_size > max_bytes:
            raise NnfcError(f"{what} {path} is {info.st_size:,} bytes, more than the "
                            f"{max_bytes:,} nnfc reads for it")
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise NnfcError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_bytes:
        raise NnfcError(f"{what} {path} grew beyond the {max_bytes:,} bytes nnfc reads for it")
    return data


def read_text(path: str | os.PathLike, max_bytes: int = 1 << 20, what: str = "file") -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes`` (TOML configs, pipeline files):
    the same checks as :func:`read_json` before parsing."""
    data = read_bytes_capped(path, max_bytes, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NnfcError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None


def read_toml(path: str | os.PathLike, what: str = "file") -> dict[str, Any]:
    """A TOML file (training config, pipeline) read by :func:`read_text`; a syntax error or
    nesting too deep for the parser is one NnfcError naming the file."""
    import tomllib
    text = read_text(path, what=what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NnfcError(f"{path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise NnfcError(f"{path} is not valid TOML: nested too deeply") from None


def read_json(path: str | os.PathLike, schema: Schema | None = None, *, what: str = "file",
              max_bytes: int = MAX_BYTES) -> Any:
    """Read a JSON file with every check of the module doc; ``what`` names the kind of file in
    messages (``"gates file"``)."""
    data = read_bytes_capped(path, max_bytes, what)
    return parse_json(data, f"{what} {path}" if what != "file" else str(path), schema)
