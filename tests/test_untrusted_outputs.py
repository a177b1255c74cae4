"""The no-clobber rule for single-file outputs (issue #21): ``prune -o``, ``profile -o`` and the
files derived from it, ``bench --junit/--markdown``: never an input, never a file nnfc did not
write, never through a link; ``-`` is standard output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import onnx
import pytest

from cli_runner import run_cli
from nnfc.onnx_io import save_onnx
from supernets import supernet

GATES = {"gate.layer1.0.conv1": [1, 0, 0, 1, 0, 0, 0, 1], "gate.layer2.0.conv1": [1] * 16}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    _, model = supernet("resnet-tiny")
    return save_onnx(model, tmp_path_factory.mktemp("untrusted") / "supernet.onnx")


@pytest.fixture
def gates_path(tmp_path):
    path = tmp_path / "gates.json"
    path.write_text(json.dumps(GATES))
    return path


def _err_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nnfc: error: "), err
    return lines[0]


def test_prune_over_its_model_is_refused(model_path, gates_path, capsys):
    before = model_path.read_bytes()
    code, _, err = run_cli(["prune", str(model_path), "--gates", str(gates_path), "-o",
                            str(model_path)], capsys)
    assert code == 2 and "is the input" in _err_line(err)
    assert model_path.read_bytes() == before


def test_prune_over_its_gates_is_refused(model_path, gates_path, capsys):
    code, _, err = run_cli(["prune", str(model_path), "--gates", str(gates_path), "-o",
                            str(gates_path)], capsys)
    assert code == 2 and "is the input" in _err_line(err)
    assert json.loads(gates_path.read_text()) == GATES


def test_prune_over_a_users_file_is_refused(model_path, gates_path, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    code, _, err = run_cli(["prune", str(model_path), "--gates", str(gates_path), "-o",
                            str(notes)], capsys)
    assert code == 2 and "not written by nnfc" in _err_line(err)
    assert notes.read_text() == "my notes"


def test_prune_through_a_symlink_is_refused(model_path, gates_path, tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.write_text("mine")
    os.symlink(victim, tmp_path / "link.onnx")
    code, _, err = run_cli(["prune", str(model_path), "--gates", str(gates_path), "-o",
                            str(tmp_path / "link.onnx")], capsys)
    assert code == 2 and "symbolic link" in _err_line(err)
    assert victim.read_text() == "mine"


def test_prune_replaces_its_own_earlier_output(model_path, gates_path, tmp_path, capsys):
    out = tmp_path / "pruned.onnx"
    for _ in range(2):
        code, _, err = run_cli(["prune", str(model_path), "--gates", str(gates_path), "-o",
                                str(out)], capsys)
        assert code == 0, err
    assert onnx.load(str(out)).doc_string == "pruned by nnfc prune"


def test_prune_to_stdout(model_path, gates_path):
    proc = subprocess.run([sys.executable, "-m", "nnfc.cli", "prune", str(model_path),
                           "--gates", str(gates_path), "-o", "-"], capture_output=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    model = onnx.load_from_string(proc.stdout)
    assert [i.name for i in model.graph.input] == ["input"]
    assert b"pruned" in proc.stderr  # the summary goes to stderr


@pytest.mark.parametrize("clash", ["notes.txt", "notes.png", "notes.measurements.json"])
def test_profile_never_overwrites_a_users_file(tmp_path, capsys, clash):
    from compile_fixtures import profiled_bundle
    (tmp_path / clash).write_text("mine")
    code, _, err = run_cli(["profile", "--bundle", str(profiled_bundle()), "-o",
                            str(tmp_path / "notes.txt"), "--subnets", "10", "--fresh"], capsys)
    assert code == 2 and "not overwriting" in _err_line(err)
    assert sorted(os.listdir(tmp_path)) == [clash]
    assert (tmp_path / clash).read_text() == "mine"


def test_bench_report_into_a_pipe_does_not_hang(tmp_path):
    """``--markdown /dev/stdout`` into a pipe: refused at once (use ``-``), never read."""
    from compile_fixtures import profiled_bundle
    model = profiled_bundle() / "supernet.onnx"
    proc = subprocess.run(f"{sys.executable} -m nnfc.cli bench {model} --markdown /dev/stdout "
                          "| cat", shell=True, capture_output=True, timeout=120)
    assert b"symbolic link" in proc.stderr and b"- for standard output" in proc.stderr


@pytest.mark.parametrize("option", ["--junit", "--markdown"])
def test_bench_report_over_a_fifo_is_refused(tmp_path, capsys, option):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    from compile_fixtures import profiled_bundle
    code, _, err = run_cli(["bench", str(profiled_bundle() / "supernet.onnx"), option,
                            str(fifo)], capsys)
    assert code == 2 and "not a regular file" in _err_line(err)


def test_markdown_to_stdout(tmp_path, capsys):
    from nnfc.benchmarking.outputs import write_text
    assert write_text("-", "# hi <!-- nnfc bench -->\n", "<!-- nnfc bench", "report") is None
    assert "# hi" in capsys.readouterr().out


def test_disk_full_is_named(tmp_path, monkeypatch, capsys):
    """An ENOSPC while writing a single-file output is one line naming the cause."""
    import errno

    import nnfc.outputs as outputs
    from nnfc.errors import NnfcError

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "r.md"))
    monkeypatch.setattr(outputs, "atomic_file", full)
    with pytest.raises(NnfcError, match="No space left on device"):
        outputs.write_output_text(tmp_path / "r.md", "x", b"x", "report")
    assert not (tmp_path / "r.md").exists()


def test_export_never_overwrites_a_users_file(tmp_path, capsys):
    notes = tmp_path / "notes.onnx"
    notes.write_text("mine")
    code, _, err = run_cli(["export", "--preset", "resnet-tiny", "--out", str(notes)], capsys)
    assert code == 2 and "not written by nnfc" in _err_line(err)
    assert notes.read_text() == "mine"
    out = tmp_path / "s.onnx"
    for _ in range(2):  # its own file is replaced
        code, _, err = run_cli(["export", "--preset", "resnet-tiny", "--out", str(out)], capsys)
        assert code == 0, err


def test_run_never_overwrites_a_users_summary(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.md").write_text("mine")
    pipe = tmp_path / "p.toml"
    pipe.write_text(f'output = "{out}"\n[[scenario]]\ntask = "odd"\nlatency = "5ms"\n')
    code, _, err = run_cli(["run", str(pipe)], capsys)
    assert code == 2 and "not written by nnfc" in _err_line(err)
    assert sorted(os.listdir(out)) == ["summary.md"]


def test_a_dangling_symlink_output_is_one_error_not_a_traceback(tmp_path):
    from nnfc.errors import NnfcError
    from nnfc.outputs import check_output_file
    given = tmp_path / "in.onnx"
    given.write_bytes(b"x")
    (tmp_path / "out.json").symlink_to(tmp_path / "missing.json")
    with pytest.raises(NnfcError, match="symbolic link"):
        check_output_file(tmp_path / "out.json", b"nnfc", "a JSON file", inputs=[given])
    assert not (tmp_path / "missing.json").exists()
