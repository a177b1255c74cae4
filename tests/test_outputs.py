"""``nnfc.outputs`` / ``nnfc.atomic``: output directories never lose a user's file, are replaced
atomically, serialise writers and clean up after dead ones. Every test asserts the file system."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from nnfc import atomic, outputs
from nnfc.errors import NnfcError
from nnfc.outputs import MARKER, check_output_dir, inspect, output_dir


def write_output(dest, kind="compile", files=None, **kw):
    """Write an nnfc output of ``kind`` holding ``files`` (name -> text) at ``dest``."""
    files = files or {"model.onnx": "m", "report.json": "{}"}
    with output_dir(dest, kind, **kw) as tmp:
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)
    return dest


def listing(path):
    return sorted(p.name for p in path.iterdir())


def test_new_and_empty_directories_are_written_with_a_marker(tmp_path):
    write_output(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    write_output(tmp_path / "empty")
    for d in ("new", "empty"):
        assert listing(tmp_path / d) == [MARKER, "model.onnx", "report.json"]
        marker = json.loads((tmp_path / d / MARKER).read_text())
        assert marker["kind"] == "compile"
        assert marker["files"] == ["model.onnx", "report.json"]
    assert listing(tmp_path) == ["empty", "new"]  # no temp dirs, no lock files left


def test_same_kind_output_is_replaced_and_stale_files_go(tmp_path):
    out = write_output(tmp_path / "o", files={"a.txt": "1", "old.bin": "x"})
    write_output(out, files={"a.txt": "2"})
    assert listing(out) == [MARKER, "a.txt"]
    assert (out / "a.txt").read_text() == "2"
    assert listing(tmp_path) == ["o"]


@pytest.mark.parametrize("setup,reason", [
    (lambda d: (d.mkdir(), (d / "keep").write_text("mine")), "not an nnfc output"),
    (lambda d: (write_output(d, "bundle"),), "nnfc bundle output, not a compile output"),
    (lambda d: (write_output(d), (d / "notes.txt").write_text("mine")),
     "did not write (notes.txt)"),
])
def test_foreign_directory_is_refused_and_untouched(tmp_path, setup, reason):
    d = tmp_path / "d"
    setup(d)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    with pytest.raises(NnfcError, match="--force") as exc:
        write_output(d)
    assert reason in str(exc.value) and "\n" not in str(exc.value)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert listing(tmp_path) == ["d"]


def test_force_adds_files_and_never_deletes_or_overwrites_foreign_ones(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "keep").write_text("mine")
    write_output(d, force=True, files={"model.onnx": "1", "stale.txt": "s"})
    assert listing(d) == [MARKER, "keep", "model.onnx", "stale.txt"]
    # a second forced write removes only what nnfc wrote before
    write_output(d, force=True, files={"model.onnx": "2"})
    assert listing(d) == [MARKER, "keep", "model.onnx"]
    assert (d / "keep").read_text() == "mine" and (d / "model.onnx").read_text() == "2"
    # a file nnfc did not write is never overwritten, even with --force
    (d / "report.json").write_text("user's")
    with pytest.raises(NnfcError, match="refusing to overwrite .*report.json"):
        write_output(d, force=True)
    assert (d / "report.json").read_text() == "user's"
    assert listing(tmp_path) == ["d"]


def test_inputs_are_never_written_into_or_over(tmp_path):
    bundle = tmp_path / "x" / "fac"
    bundle.mkdir(parents=True)
    (bundle / "manifest.json").write_text("{}")
    for dest, what in ((bundle, "is the input"), (bundle / "sub", "is inside the input"),
                       (tmp_path / "x", "contains the input"), (tmp_path, "contains the input")):
        with pytest.raises(NnfcError, match=what):
            write_output(dest, force=True, inputs=[bundle])
    link = tmp_path / "link"
    link.symlink_to(bundle)  # the same directory under another name
    with pytest.raises(NnfcError, match="is the input"):
        write_output(link, force=True, inputs=[bundle])
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["fac"]
    assert listing(bundle) == ["manifest.json"]


def test_bad_paths_are_one_clear_error_and_write_nothing(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NnfcError, match="is not a directory"):
        write_output(tmp_path / "file" / "sub")
    with pytest.raises(NnfcError, match="exists and is not a directory"):
        write_output(tmp_path / "file")
    with pytest.raises(NnfcError, match="empty string"):
        check_output_dir("", "compile")
    assert listing(tmp_path) == ["file"] and (tmp_path / "file").read_text() == "x"


def test_read_only_parent(tmp_path, monkeypatch):
    parent = tmp_path / "ro"
    parent.mkdir()
    if os.geteuid() != 0:  # a real read-only directory (root may write anywhere)
        parent.chmod(0o555)
        try:
            with pytest.raises(NnfcError, match="permission denied"):
                write_output(parent / "out")
        finally:
            parent.chmod(0o755)
    # and the OS refusing at the moment of writing (as on a read-only mount)
    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(parent))
    monkeypatch.setattr(outputs.tempfile, "mkdtemp", refuse)
    with pytest.raises(NnfcError, match="cannot write .*Permission denied"):
        write_output(parent / "out")
    assert listing(parent) == []


def test_full_disk_leaves_the_old_output_and_no_litter(tmp_path):
    out = write_output(tmp_path / "o", files={"a.txt": "old"})

    def disk_full(tmp):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(NnfcError, match="cannot write .*No space left on device"):
        with output_dir(out, "compile") as tmp:
            (tmp / "a.txt").write_text("new, half")
            disk_full(tmp)
    assert (out / "a.txt").read_text() == "old"
    assert listing(tmp_path) == ["o"]


def test_modes_follow_the_umask_and_replacing_keeps_the_mode(tmp_path):
    old = os.umask(0o027)
    try:
        out = write_output(tmp_path / "o")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o750  # not mkdtemp's 0700
    out.chmod(0o711)
    write_output(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o711


def test_stale_temp_dirs_of_dead_writers_are_cleaned_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".o{atomic.TMP_TAG}{pid}-abc123"
    stale.mkdir()
    (stale / "model.onnx").write_text("half")
    stale_file = tmp_path / f".o{atomic.TMP_TAG}{pid}-def456"
    stale_file.write_text("")
    live = tmp_path / f".o{atomic.TMP_TAG}{os.getpid()}-zzz"
    live.mkdir()
    write_output(tmp_path / "o")
    assert listing(tmp_path) == [live.name, "o"]


def test_crash_between_two_renames_is_repaired_on_systems_without_exchange(tmp_path,
                                                                           monkeypatch):
    """Without renameat2 the swap takes two renames; a writer killed between them leaves no
    -o, and the next writer (or reader through it) puts the old output back first."""
    out = write_output(tmp_path / "o", files={"a.txt": "old"})
    script = f"""
import os, sys
sys.path.insert(0, {os.getcwd()!r})
from nnfc import atomic, outputs
outputs.exchange = lambda a, b: False
real = os.rename
def rename(a, b):
    real(a, b)
    if str(a) == {str(out)!r}:
        os._exit(9)  # killed right after moving the old output aside
outputs.os.rename = rename
with outputs.output_dir({str(out)!r}, "compile") as tmp:
    (tmp / "a.txt").write_text("new")
"""
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ,
                          "PYTHONPATH": os.getcwd()})
    assert proc.returncode == 9
    assert not out.exists()  # the window this scheme has
    assert any(p.name.startswith(f".o{atomic.OLD_TAG}") for p in tmp_path.iterdir())
    outputs._recover(out)  # what the next writer does first, under the lock
    assert (out / "a.txt").read_text() == "old"
    monkeypatch.setattr(outputs, "exchange", lambda a, b: False)
    write_output(out, files={"a.txt": "newer"})
    assert (out / "a.txt").read_text() == "newer" and listing(tmp_path) == ["o"]


def test_writer_killed_after_the_exchange_leaves_the_new_output(tmp_path):
    """Killed between the exchange and removing the old output: -o is already the new output,
    the old one sits in the dead writer's temp dir and the next writer removes it."""
    out = write_output(tmp_path / "o", files={"a.txt": "old"})
    script = f"""
import os, sys
from nnfc import atomic, outputs
def exchange(a, b):
    if not atomic.exchange(a, b):
        os._exit(3)
    os._exit(9)
outputs.exchange = exchange
with outputs.output_dir({str(out)!r}, "compile") as tmp:
    (tmp / "a.txt").write_text("new")
"""
    proc = subprocess.run([sys.executable, "-c", script],
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    if proc.returncode == 3:
        pytest.skip("this file system has no atomic exchange")
    assert proc.returncode == 9
    assert (out / "a.txt").read_text() == "new"
    assert len([p for p in tmp_path.iterdir() if atomic.TMP_TAG in p.name]) == 1
    write_output(out, files={"a.txt": "newer"})
    assert (out / "a.txt").read_text() == "newer" and listing(tmp_path) == ["o"]


def test_exchange_swaps_two_directories_atomically(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    if not atomic.exchange(a, b):
        pytest.skip("this file system has no atomic exchange")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


def test_lock_serialises_writers_and_times_out_with_a_clear_error(tmp_path):
    out = tmp_path / "o"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time; sys.path.insert(0, {os.getcwd()!r})\n"
         f"from nnfc.atomic import locked\nwith locked({str(out)!r}):\n"
         "    print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        with pytest.raises(NnfcError, match="another nnfc process is writing"):
            write_output(out, lock_timeout=0.3)
        assert time.monotonic() - t0 < 10
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    write_output(out)  # the dead holder's lock is gone with it
    assert listing(tmp_path) == ["o"]


def test_atomic_file_temp_names_are_unpredictable_and_ignore_planted_symlinks(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    # the old predictable names, planted as symlinks to a victim
    for name in (".plot.png.tmp.png", ".m.json.tmp", ".plot.png.nnfc-tmp-1-x"):
        (tmp_path / name).symlink_to(victim)
    with atomic.atomic_file(tmp_path / "plot.png", suffix=".png") as tmp:
        assert tmp.name.startswith(f".plot.png{atomic.TMP_TAG}{os.getpid()}-")
        assert tmp.suffix == ".png" and not tmp.is_symlink()
        tmp.write_bytes(b"png")
    atomic.write_json_atomic(tmp_path / "m.json", {"a": 1})
    assert victim.read_text() == "precious"
    assert (tmp_path / "plot.png").read_bytes() == b"png"
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o666 & ~atomic.umask()


def test_inspect_reports_states(tmp_path):
    assert inspect(tmp_path / "none", "compile").state == "missing"
    assert inspect(tmp_path, "compile").state == "empty"
    write_output(tmp_path / "o")
    assert inspect(tmp_path / "o", "compile").state == "same"
    assert inspect(tmp_path / "o", "bundle").state == "foreign"


def test_a_bundle_written_before_markers_is_recognised_by_its_manifest(tmp_path):
    old = tmp_path / "fac"
    old.mkdir()
    (old / "supernet.onnx").write_text("s")
    (old / "manifest.json").write_text(json.dumps({"format_version": 1,
                                                   "files": {"supernet.onnx": "ab"}}))
    assert inspect(old, "bundle").state == "same"
    assert inspect(old, "compile").state == "foreign"
    (old / "notes.txt").write_text("mine")
    assert inspect(old, "bundle").state == "foreign"
