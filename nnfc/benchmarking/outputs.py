"""Writing report files without clobbering anyone else's: a file that exists is replaced only
when nnfc wrote it (it carries nnfc's marker), and always atomically; ``-`` is standard output
(the rule lives in :func:`nnfc.outputs.check_output_file`); the CI step summary file
(``$GITHUB_STEP_SUMMARY``) is appended to."""

from __future__ import annotations

import os
from pathlib import Path

from nnfc.outputs import check_output_file, write_output_text


def is_step_summary(path: str | Path) -> bool:
    """Whether ``path`` is the CI step summary (``$GITHUB_STEP_SUMMARY``): appended to."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    return bool(summary) and str(path) != "-" and Path(summary) == Path(path)


def check_replaceable(path: Path, marker: bytes, what: str) -> None:
    """Raise unless ``path`` is ``-``, the step summary, absent or an earlier nnfc ``what``
    (holds ``marker``)."""
    if not is_step_summary(path):
        check_output_file(path, marker, what, option=f"the {what}")


def write_text(path: str | Path, text: str, marker: str, what: str) -> Path | None:
    if is_step_summary(path):
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")
        return Path(path)
    return write_output_text(path, text, marker.encode(), what, option=f"the {what}")
