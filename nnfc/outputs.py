"""Output directories (``nnfc compile -o``, bundles, checkpoints, device profiles): the one place
that decides what nnfc may write where.

Every directory nnfc writes carries a marker, ``.nnfc-output.json``: its kind (``compile``,
``bundle``, ``checkpoint``, ``device-profile``, ``baseline``) and the files nnfc wrote.
For ``-o DIR``:

- DIR missing or empty: written;
- DIR an earlier nnfc output of the same kind, holding nothing but the files its marker lists:
  replaced as a whole, atomically;
- anything else (a foreign or another kind's directory, or an nnfc output a user added files
  to): refused with one error naming ``--force``. With ``--force`` nnfc writes its files into
  DIR one by one (each atomically), removes only files an earlier nnfc output there listed, and
  still refuses to overwrite a file it did not write;
- DIR equal to, inside or around an input (the bundle being compiled, the checkpoint being
  exported): always refused.

The whole output is built in a temp directory beside DIR (``tempfile.mkdtemp``), then swapped in
with one ``exchange`` (see :mod:`nnfc.atomic`), under a lock that serialises writers of DIR: at
every instant DIR holds the old or the new complete output; the last writer wins. Temp
directories of writers that died are removed by the next writer.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from nnfc import __version__
from nnfc.atomic import (OLD_TAG, TMP_TAG, atomic_file, clean_stale, default_mode, exchange,
                         locked, remove_path, stale_entries, temp_prefix)
from nnfc.errors import NnfcError
from nnfc.jsonfile import read_json
from nnfc.file_schemas import OUTPUT_MARKER
from nnfc.file_schemas import OUTPUT_MARKER_FORMAT as MARKER_FORMAT

MARKER = ".nnfc-output.json"
KINDS = ("compile", "bundle", "checkpoint", "device-profile", "baseline", "analysis")


def lock_timeout_s() -> float:
    """``$NNFC_LOCK_TIMEOUT`` (seconds a writer waits for another; default 600), read when a
    writer needs it: a bad value is one clear error then, not a traceback at import."""
    raw = os.environ.get("NNFC_LOCK_TIMEOUT", "600")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= 7 * 86400):
        raise NnfcError(f"NNFC_LOCK_TIMEOUT={raw!r}: expected seconds between 0 and 604800")
    return value


@dataclass(frozen=True)
class DirState:
    """What is at an output path now: ``missing``, ``empty``, ``same`` (an nnfc output of this
    kind holding only its files) or ``foreign`` (with the reason and nnfc's files there)."""

    state: str
    reason: str = ""
    ours: tuple[str, ...] = ()  # files a same-kind nnfc marker there lists (relative paths)


def read_marker(directory: Path) -> dict | None:
    """The marker of an nnfc output directory, or None."""
    try:  # a foreign, malformed, special or huge marker is no marker
        return read_json(directory / MARKER, OUTPUT_MARKER, max_bytes=16 << 20)
    except NnfcError:
        return None


def _files(directory: Path) -> list[str]:
    """Relative paths of every non-directory entry under ``directory`` (symlinks not followed)."""
    out = []
    for root, dirs, files in os.walk(directory):
        rel = os.path.relpath(root, directory)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            out.append(os.path.normpath(os.path.join(rel, name)))
    return sorted(out)


def inspect(dest: Path, kind: str) -> DirState:
    """Classify what is at ``dest`` for writing an output of ``kind``."""
    if not os.path.lexists(dest):
        return DirState("missing")
    if not dest.is_dir():
        return DirState("foreign", "it exists and is not a directory")
    present = [f for f in _files(dest) if f != MARKER]
    marker = read_marker(dest)
    if marker is None and kind == "bundle":
        marker = _legacy_bundle_marker(dest)
    if marker is None:
        if not present and not (dest / MARKER).exists():
            return DirState("empty")
        return DirState("foreign", "it is not empty and is not an nnfc output")
    if marker.get("kind") != kind:
        return DirState("foreign", f"it is an nnfc {marker.get('kind')} output, not a {kind} "
                                   "output")
    ours = tuple(f for f in marker["files"] if f in present)
    extra = [f for f in present if f not in marker["files"]]
    if extra:
        return DirState("foreign", "it holds file(s) nnfc did not write "
                                   f"({', '.join(extra[:3])}{', …' if len(extra) > 3 else ''})",
                        ours)
    return DirState("same", "", ours)


def _legacy_bundle_marker(dest: Path) -> dict | None:
    """A bundle written before markers existed: its manifest lists (with sha256) every file
    nnfc wrote, so it serves as the marker."""
    try:
        manifest = read_json(dest / "manifest.json", max_bytes=16 << 20)
    except NnfcError:
        return None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or "format_version" not in manifest:
        return None
    return {"kind": "bundle", "files": sorted([*map(str, files), "manifest.json"])}


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def check_output_dir(dest: str | os.PathLike, kind: str, *, force: bool = False,
                     inputs: Iterable[str | os.PathLike | None] = (), option: str = "-o"
                     ) -> Path:
    """Raise one clear NnfcError if an output of ``kind`` may not go to ``dest``; returns the
    resolved path. Cheap: run it before long work so a bad ``-o`` fails first."""
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    lock_timeout_s()  # a bad $NNFC_LOCK_TIMEOUT fails before the work, not after it
    if not str(dest).strip():
        raise NnfcError(f"{option} needs a directory path (got an empty string)")
    try:
        real = Path(dest).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # symlink loop
        raise NnfcError(f"cannot use {option} {dest}: {exc}") from exc
    for item in inputs:
        if item is None:
            continue
        src = Path(item).expanduser().resolve()
        if _inside(real, src) or _inside(src, real):
            what = "is" if real == src else ("is inside" if _inside(real, src) else "contains")
            raise NnfcError(f"{option} {dest} {what} the input {item}: choose another output "
                            "directory (nnfc never writes into or over its inputs)")
    _check_parent(real, dest, option)
    state = inspect(real, kind)
    if state.state == "foreign":
        if not real.is_dir():
            raise NnfcError(f"{option} {dest}: {state.reason}")
        if not force:
            raise NnfcError(refusal(dest, state))
    return real


def refusal(dest, state: DirState) -> str:
    """The one-line error for a directory nnfc may not replace."""
    return (f"refusing to write into {dest}: {state.reason}; choose a new or empty directory, "
            "or pass --force to add nnfc's files to it (nnfc never deletes files it did not "
            "write)")


def _check_parent(real: Path, dest, option: str) -> None:
    """A clear error when ``real``'s parent cannot hold a directory."""
    for anc in [real.parent, *real.parent.parents]:
        if os.path.lexists(anc):
            if not anc.is_dir():
                raise NnfcError(f"{option} {dest}: {anc} is not a directory")
            if not os.access(anc, os.W_OK | os.X_OK) and anc == real.parent:
                raise NnfcError(f"{option} {dest}: cannot write in {anc} (permission denied)")
            if not os.access(anc, os.W_OK | os.X_OK) and anc != real.parent:
                raise NnfcError(f"{option} {dest}: cannot create directories in {anc} "
                                "(permission denied)")
            return


def _write_marker(directory: Path, kind: str, files: list[str]) -> None:
    data = {"format": MARKER_FORMAT, "version": 1, "kind": kind, "nnfc": __version__,
            "files": sorted(files)}
    with atomic_file(directory / MARKER) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _recover(dest: Path) -> None:
    """Where a writer without ``exchange`` died between its two renames, put the old output
    back; remove every other leftover of dead writers."""
    for old in stale_entries(dest.parent, dest.name, OLD_TAG):
        if not os.path.lexists(dest):
            os.rename(old, dest)
        else:
            remove_path(old)
    clean_stale(dest.parent, dest.name)


def _swap(tmp: Path, dest: Path) -> None:
    """Put the finished ``tmp`` at ``dest`` (missing, empty or a same-kind output) and remove
    what was there."""
    if not os.path.lexists(dest):
        os.rename(tmp, dest)
        return
    os.chmod(tmp, os.stat(dest).st_mode & 0o7777)  # replacing a directory keeps its mode
    if exchange(tmp, dest):
        remove_path(tmp)  # now the old output
        return
    # no atomic exchange here: two renames; a crash between them is repaired by _recover
    old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=temp_prefix(dest, OLD_TAG)))
    os.rmdir(old)
    os.rename(dest, old)
    os.rename(tmp, dest)
    remove_path(old)


def _merge(tmp: Path, dest: Path, kind: str, ours: tuple[str, ...]) -> None:
    """``--force`` into a directory holding files nnfc did not write: move nnfc's files in one by
    one (each rename atomic), remove only files an earlier marker there listed."""
    new = [f for f in _files(tmp) if f != MARKER]
    clash = [f for f in new if os.path.lexists(dest / f) and f not in ours]
    if clash:
        raise NnfcError(f"refusing to overwrite {dest / clash[0]}: nnfc did not write it "
                        "(--force adds files, it never replaces yours)")
    _write_marker(dest, kind, sorted(set(new) | set(ours)))  # a crash midway stays ours
    for rel in new:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.parent.resolve() != (dest.resolve() / rel).parent:
            raise NnfcError(f"refusing to write {target}: {target.parent} is a symlink")
        os.replace(tmp / rel, target)
    for rel in ours:
        if rel not in new:
            remove_path(dest / rel)
    _write_marker(dest, kind, new)
    remove_path(tmp)


def commit(tmp: Path, dest: Path, kind: str, force: bool = False,
           lock_timeout: float | None = None) -> None:
    """Make the finished temp directory ``tmp`` the output at ``dest`` (see the module doc)."""
    _write_marker(tmp, kind, [f for f in _files(tmp) if f != MARKER])
    os.chmod(tmp, default_mode(directory=True))  # mkdtemp makes 0700
    with locked(dest, lock_timeout_s() if lock_timeout is None else lock_timeout):
        _recover(dest)
        state = inspect(dest, kind)
        cwd = Path.cwd().resolve() if os.path.exists(".") else None
        if state.state in ("missing", "empty", "same") and not (cwd and _inside(cwd, dest)):
            _swap(tmp, dest)
        elif state.state == "foreign" and not force:
            raise NnfcError(refusal(dest, state))
        elif not dest.is_dir():
            raise NnfcError(f"{dest}: {state.reason}")
        else:  # --force into a foreign directory, or the current directory is inside dest
            _merge(tmp, dest, kind, state.ours)


@contextmanager
def output_dir(dest: str | os.PathLike, kind: str, *, force: bool = False,
               inputs: Iterable[str | os.PathLike | None] = (), option: str = "-o",
               lock_timeout: float | None = None) -> Iterator[Path]:
    """Yield an empty temp directory beside ``dest``; when the block finishes, its content
    becomes the output at ``dest`` (atomically, see the module doc); on error it is removed and
    ``dest`` is untouched. OS errors (full disk, permissions) become one NnfcError."""
    inputs = list(inputs)
    real = check_output_dir(dest, kind, force=force, inputs=inputs, option=option)
    tmp = None
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(real.parent, real.name)
        tmp = Path(tempfile.mkdtemp(dir=real.parent, prefix=temp_prefix(real, TMP_TAG)))
        yield tmp
        commit(tmp, real, kind, force, lock_timeout)
    except OSError as exc:
        raise NnfcError(f"cannot write {dest}: {os_error_text(exc)}") from exc
    finally:
        if tmp is not None and os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


# ---- single-file outputs (prune -o, profile -o, bench --junit/--markdown/--save) ------------
#: how much of an existing file is read to find nnfc's marker in it
MARKER_HEAD_BYTES = 1 << 16
STDOUT = "-"


def check_output_file(path: str | os.PathLike, marker: bytes, what: str, *,
                      inputs: Iterable[str | os.PathLike | None] = (), option: str = "-o"
                      ) -> Path | None:
    """The no-clobber rule for a single-file output: ``path`` may be missing, or a regular file
    an earlier nnfc run wrote (``marker`` among its first 64 KiB); never an input, a symlink, a
    directory or a special file (``-`` means standard output: returns None). Cheap: run it
    before the work."""
    if str(path) == STDOUT:
        return None
    if not str(path).strip():
        raise NnfcError(f"{option} needs a file path (got an empty string)")
    path = Path(path)
    for item in inputs:
        if item is not None and os.path.exists(item) and os.path.exists(path) and \
                os.path.samefile(item, path):
            raise NnfcError(f"{option} {path} is the input {item}: nnfc never writes over its "
                            "inputs; choose another output file")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise NnfcError(f"{option} {path}: {os_error_text(exc)}") from None
    if stat.S_ISLNK(info.st_mode):
        raise NnfcError(f"{option} {path} is a symbolic link; nnfc never writes through or "
                        f"over links (give the real path, or {STDOUT} for standard output)")
    if stat.S_ISDIR(info.st_mode):
        raise NnfcError(f"{option} {path} is a directory; give a file name for the {what}")
    if not stat.S_ISREG(info.st_mode):
        raise NnfcError(f"{option} {path} is not a regular file (use {STDOUT} for standard "
                        "output)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(MARKER_HEAD_BYTES)
    except OSError as exc:
        raise NnfcError(f"cannot read {path}: {os_error_text(exc)}") from None
    if marker not in head:
        raise NnfcError(f"{path} exists and was not written by nnfc as a {what}; not "
                        f"overwriting it (remove it or choose another file)")
    return path


def write_output_text(path: str | os.PathLike, text: str, marker: bytes, what: str,
                      option: str = "-o") -> Path | None:
    """Write ``text`` to ``path`` under :func:`check_output_file`'s rule (atomically), or to
    standard output for ``-``."""
    checked = check_output_file(path, marker, what, option=option)
    if checked is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return None
    try:
        with atomic_file(checked) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise NnfcError(f"cannot write {checked}: {os_error_text(exc)}") from None
    return checked


def nonempty_path(ctx, param, value):
    """click callback: an output path option given as an empty string is one clear error
    (``Path("")`` would silently mean the current directory)."""
    if value is not None and not str(value).strip():
        raise NnfcError(f"{param.opts[-1]} needs a path (got an empty string)")
    return value


def os_error_text(exc: OSError) -> str:
    """``strerror`` plus the file it concerns, on one line."""
    text = exc.strerror or str(exc)
    return f"{text} ({exc.filename})" if exc.filename else text
