"""Writing report files without clobbering anyone else's: a file that exists is replaced only
when nnfc wrote it (it carries nnfc's marker), and always atomically."""

from __future__ import annotations

from pathlib import Path

from nnfc.atomic import atomic_file
from nnfc.errors import NnfcError


def check_replaceable(path: Path, marker: bytes, what: str) -> None:
    """Raise unless ``path`` is absent or an earlier nnfc ``what`` (holds ``marker``)."""
    if path.is_dir():
        raise NnfcError(f"{path} is a directory; give a file name for the {what}")
    if path.exists():
        try:
            head = path.read_bytes()[:65536]
        except OSError as exc:
            raise NnfcError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if marker not in head:
            raise NnfcError(f"{path} exists and was not written by nnfc bench; not overwriting "
                            f"it (remove it or choose another {what} file)")


def write_text(path: str | Path, text: str, marker: str, what: str) -> Path:
    path = Path(path)
    check_replaceable(path, marker.encode(), what)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
