"""Writing report files without clobbering anyone else's: a file that exists is replaced only
when nnfc wrote it (it carries nnfc's marker), and always atomically; ``-`` is standard output
(the rule lives in :func:`nnfc.outputs.check_output_file`)."""

from __future__ import annotations

from pathlib import Path

from nnfc.outputs import check_output_file, write_output_text


def check_replaceable(path: Path, marker: bytes, what: str) -> None:
    """Raise unless ``path`` is ``-``, absent or an earlier nnfc ``what`` (holds ``marker``)."""
    check_output_file(path, marker, what, option=f"the {what}")


def write_text(path: str | Path, text: str, marker: str, what: str) -> Path | None:
    return write_output_text(path, text, marker.encode(), what, option=f"the {what}")
