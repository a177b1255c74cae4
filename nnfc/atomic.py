"""Atomic file-system primitives: nothing half-written is ever left where a reader could find it.

- temp names come from :mod:`tempfile` in the target's own directory (unpredictable, created
  exclusively, never following a planted symlink) and carry the writer's pid:
  ``.<name>.nnfc-tmp-<pid>-<random>``, so a later run can tell a dead writer's litter
  (:func:`clean_stale`) from a live writer's work;
- :func:`exchange` swaps two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``, macOS
  ``renamex_np(RENAME_SWAP)``), so a directory is replaced without an instant where it is missing;
- :func:`locked` serialises writers of one path with ``flock`` on a lock file beside it.

The policy for output *directories* (what may be replaced, markers, ``--force``) lives in
:mod:`nnfc.outputs`.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from nnfc.errors import NnfcError

TMP_TAG = ".nnfc-tmp-"     # .<name>.nnfc-tmp-<pid>-<random>: a writer's temp file or directory
OLD_TAG = ".nnfc-old-"     # .<name>.nnfc-old-<pid>-<random>: a replaced dir (no-exchange systems)
LOCK_SUFFIX = ".nnfc-lock"  # .<name>.nnfc-lock: held (flock) while a writer swaps <name>


def temp_prefix(path: Path, tag: str = TMP_TAG) -> str:
    """The temp-name prefix of this process for ``path``: ``.<name>.nnfc-tmp-<pid>-``."""
    return f".{path.name}{tag}{os.getpid()}-"


def umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool) -> int:
    """The mode a plain ``mkdir``/``open`` would give: 0777/0666 less the umask."""
    return (0o777 if directory else 0o666) & ~umask()


@contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is renamed onto ``path`` (keeping the mode
    of the file it replaces, else the umask's), on error removed. ``suffix`` keeps an extension
    tools look at (e.g. ``.png``)."""
    path = Path(path)
    if not str(path).strip() or path.is_dir():
        raise NnfcError(f"{str(path) or repr('')} is a directory, not a file path")
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    clean_stale(parent, path.name)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=temp_prefix(path), suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            mode = default_mode(directory=False)
        os.chmod(tmp, mode)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """``json.dump`` to a temp file beside ``path``, then rename."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``path``, then rename."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def copy_file_atomic(src: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy ``src`` to a fresh temp file beside ``path`` (random name, created exclusively: a
    symlink planted anywhere is never written through), then rename it onto ``path``."""
    with atomic_file(path, suffix=Path(path).suffix) as tmp:
        with open(src, "rb") as fin, open(tmp, "r+b") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    return Path(path)


def write_failure_cause(directory: str | os.PathLike) -> str | None:
    """Why a tool's write into ``directory`` may have failed where the tool does not say (ONNX
    Runtime reports a full disk as "Protobuf serialization failed"): no space left, or no
    permission; None when neither."""
    try:
        fs = os.statvfs(directory)
    except (OSError, AttributeError):
        return None
    if fs.f_bavail * fs.f_frsize < (1 << 20):
        return os.strerror(errno.ENOSPC)
    if not os.access(directory, os.W_OK | os.X_OK):
        return os.strerror(errno.EACCES)
    return None


# ---- stale temp files of dead writers ------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _writer_pid(entry: str, prefix: str) -> int | None:
    head = entry[len(prefix):].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def stale_entries(parent: Path, name: str, tag: str = TMP_TAG) -> list[Path]:
    """``.<name><tag><pid>-*`` entries in ``parent`` whose writer is no longer alive."""
    prefix = f".{name}{tag}"
    try:
        entries = os.listdir(parent)
    except OSError:
        return []
    out = []
    for entry in entries:
        if entry.startswith(prefix):
            pid = _writer_pid(entry, prefix)
            if pid is not None and not pid_alive(pid):
                out.append(parent / entry)
    return sorted(out)


def remove_path(path: Path) -> None:
    """Remove a file, symlink or directory tree; missing is fine."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def clean_stale(parent: Path, name: str) -> list[Path]:
    """Remove temp files/dirs that dead writers left for ``parent/name``; returns them."""
    stale = stale_entries(parent, name)
    for path in stale:
        remove_path(path)
    return stale


# ---- swapping two paths in one step --------------------------------------------------------
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2      # linux/fs.h
_RENAME_SWAP = 2          # macOS sys/stdio.h (renamex_np)
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV}
_libc = None


def _c_library():
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _libc = False
    return _libc


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Atomically swap the paths ``a`` and ``b`` (both must exist). Returns False where the OS or
    file system cannot (then nothing changed); raises OSError on a real failure."""
    libc = _c_library()
    fa, fb = os.fsencode(a), os.fsencode(b)
    if not libc:
        return False
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        rc = libc.renameat2(_AT_FDCWD, fa, _AT_FDCWD, fb, _RENAME_EXCHANGE)
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        rc = libc.renamex_np(fa, fb, _RENAME_SWAP)
    else:
        return False
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in _NO_EXCHANGE:
        return False
    raise OSError(err, os.strerror(err), os.fsdecode(a), None, os.fsdecode(b))


# ---- one writer at a time ------------------------------------------------------------------
def lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}{LOCK_SUFFIX}"


@contextmanager
def locked(path: str | os.PathLike, timeout: float = 600.0) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``.<name>.nnfc-lock`` beside ``path``; wait up to
    ``timeout`` seconds for another writer, then fail with one clear error. The lock file is
    removed on release (a waiter re-checks that it locked the file still in place)."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): writers are not serialised
        yield
        return
    path = Path(path)
    lock = lock_path(path)
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                     default_mode(directory=False))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() > deadline:
                raise NnfcError(f"another nnfc process is writing {path} (it holds {lock}); "
                                f"gave up after {timeout:.0f} s") from None
            time.sleep(0.05)
            continue
        try:
            same = os.stat(lock, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file as we opened it: lock the new one
    try:
        yield
    finally:
        try:
            os.unlink(lock)
        except OSError:
            pass
        os.close(fd)
