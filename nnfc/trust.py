"""The trust boundary of a directory nnfc reads from someone else (a factory bundle, its
``profiles/``, a baseline directory): every file it names is a plain name of a regular file
inside it (no symlink, no ``..``, no device or FIFO), of bounded size, checked before it is
hashed, hashed before it is used.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from nnfc.errors import NnfcError

#: the largest file a bundle or profile may hold (checked before hashing a byte of it)
MAX_MEMBER_BYTES = 16 << 30


def plain_name(name: object, where: str) -> str:
    """``name`` when it is a plain file name (no directory part, no ``..``, not hidden)."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name
            or "\\" in name or "\0" in name or name.startswith(".")):
        raise NnfcError(f"{where}: {name!r} must be a plain file name inside the directory")
    return name


def member(root: str | os.PathLike, name: object, where: str,
           max_bytes: int = MAX_MEMBER_BYTES) -> tuple[Path, int]:
    """``(path, size)`` of the regular file ``name`` directly in ``root``; one NnfcError when
    it is missing, a symlink (which could lead anywhere), not a regular file or too large."""
    name = plain_name(name, where)
    path = Path(root) / name
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise NnfcError(f"{where}: {name} is missing from {root}") from None
    except OSError as exc:
        raise NnfcError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode):
        raise NnfcError(f"{where}: {path} is a symbolic link; nnfc reads only regular files "
                        f"inside {root}")
    if not stat.S_ISREG(info.st_mode):
        raise NnfcError(f"{where}: {path} is not a regular file")
    if info.st_size > max_bytes:
        raise NnfcError(f"{where}: {path} is {info.st_size:,} bytes, more than the "
                        f"{max_bytes:,} nnfc accepts")
    return path, info.st_size


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (symlinks not followed)."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified_member(root: str | os.PathLike, name: object, sha256: object, where: str,
                    max_bytes: int = MAX_MEMBER_BYTES) -> Path:
    """:func:`member`, then its sha256 must equal ``sha256``."""
    path, _ = member(root, name, where, max_bytes)
    if not isinstance(sha256, str) or sha256_file(path) != sha256:
        raise NnfcError(f"{where}: {path} does not match its recorded sha256 (the file was "
                        "changed or truncated)")
    return path


def own_subdir(root: str | os.PathLike, name: str, where: str) -> Path:
    """``root/name`` as a directory nnfc may read and write: missing (to be created) or a real
    directory, never a symlink (writing through it would leave ``root``)."""
    path = Path(root) / name
    if os.path.islink(path):
        raise NnfcError(f"{where}: {path} is a symbolic link; nnfc neither reads nor writes "
                        f"through it (make it a directory inside {root})")
    if os.path.lexists(path) and not path.is_dir():
        raise NnfcError(f"{where}: {path} is not a directory")
    return path
