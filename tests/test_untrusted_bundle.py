"""Hostile factory bundles (issue #21): each case has one expected outcome — one ``nnfc: error:``
line (no traceback), nothing written outside the intended output, no silent pass."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from cli_runner import run_cli
from compile_fixtures import profiled_bundle
from nnfc.bundle import read_bundle
from nnfc.errors import NnfcError
from untrusted_fixtures import (copy_bundle, edit_manifest, external_supernet, poison_supernet,
                                rehash)


@pytest.fixture(scope="module")
def source():
    return profiled_bundle()


@pytest.fixture
def bundle(source, tmp_path):
    return copy_bundle(source, tmp_path / "factory")


def one_error(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nnfc: error: "), err
    for needle in needles:
        assert needle in lines[0], err


def compile_args(bundle, out):
    return ["compile", "--bundle", str(bundle), "--task", "only-two,odd", "--lat", "50ms",
            "-o", str(out), "--runs", "2", "--rounds", "1"]


# ---- 1. the trust boundary ---------------------------------------------------------------
def test_supernet_symlinked_outside_is_refused(bundle, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    os.replace(bundle / "supernet.onnx", outside)
    os.symlink(outside, bundle / "supernet.onnx")
    with pytest.raises(NnfcError, match="symbolic link"):
        read_bundle(bundle)


def test_profiles_symlinked_outside_is_refused_and_nothing_written_there(bundle, tmp_path,
                                                                          capsys):
    outside = tmp_path / "victim"
    outside.mkdir()
    import shutil
    shutil.rmtree(bundle / "profiles")
    os.symlink(outside, bundle / "profiles")
    code, _, err = run_cli(["profile", "--bundle", str(bundle), "--subnets", "10", "--runs", "1",
                            "--rounds", "1", "--warmup", "0"], capsys)
    assert code == 2
    one_error(err, "profiles", "symbolic link")
    assert list(outside.iterdir()) == []


def test_planted_symlink_at_a_temp_or_output_name_is_never_written_through(bundle, tmp_path,
                                                                           capsys):
    victim = tmp_path / "bashrc"
    victim.write_text("# mine\n")
    prof = bundle / "profiles"
    for name in (".desktop.reference.onnx.tmp", "fresh.reference.onnx",
                 ".fresh.reference.onnx.tmp"):
        os.symlink(victim, prof / name)
    code, _, err = run_cli(["profile", "--bundle", str(bundle), "-o", str(prof / "fresh.json"),
                            "--subnets", "10", "--runs", "1", "--rounds", "1", "--warmup", "0",
                            "--json"], capsys)
    assert code == 0, err
    assert victim.read_text() == "# mine\n"
    assert not (prof / "fresh.reference.onnx").is_symlink()  # replaced, not followed


@pytest.mark.parametrize("name, needle", [
    ("../outside.onnx", "plain file name"),
    ("sub/x.onnx", "plain file name"),
    (".hidden", "plain file name"),
])
def test_manifest_names_outside_the_bundle(bundle, name, needle):
    _list_in_manifest(bundle, name)
    with pytest.raises(NnfcError, match=needle):
        read_bundle(bundle)


def _list_in_manifest(bundle, name):
    m = json.loads((bundle / "manifest.json").read_text())
    m["files"][name] = "0" * 64
    (bundle / "manifest.json").write_text(json.dumps(m))


def test_manifest_naming_a_fifo_is_refused_without_blocking(bundle):
    os.mkfifo(bundle / "pipe.bin")
    _list_in_manifest(bundle, "pipe.bin")
    with pytest.raises(NnfcError, match="not a regular file"):
        read_bundle(bundle)


def test_huge_sparse_file_is_refused_before_hashing(bundle):
    with open(bundle / "big.bin", "wb") as fh:
        fh.truncate(200 << 30)  # 200 GB, sparse: hashing it would take an hour
    _list_in_manifest(bundle, "big.bin")
    with pytest.raises(NnfcError, match="more than the"):
        read_bundle(bundle)


def test_huge_manifest_is_refused_before_parsing(bundle):
    with open(bundle / "manifest.json", "r+b") as fh:
        fh.truncate(1 << 30)
    with pytest.raises(NnfcError, match="bytes, more than"):
        read_bundle(bundle)


@pytest.mark.parametrize("patch, needle", [
    ('"format_version": true', "format version True"),
    ('"format_version": 1.0', "format version 1.0"),
    ('"format_version": 1, "format_version": 1', "appears twice"),
    ('"format_version": NaN', "not a JSON number"),
    ('"format_version": ' + "[" * 5000 + "]" * 5000, "nested more than"),
    ('"format_version": ' + "9" * 5000, "a number of 5000 characters"),
])
def test_malformed_manifest_values(bundle, patch, needle):
    text = (bundle / "manifest.json").read_text()
    text = text.replace('"format_version": 1', patch, 1)
    (bundle / "manifest.json").write_text(text)
    with pytest.raises(NnfcError, match=needle):
        read_bundle(bundle)


@pytest.mark.parametrize("key, value, needle", [
    ("output", 7, "'output' must be an object"),
    ("gate_layers", [{"name": "x", "size": -1, "kind": "c"}], "gate_layers[0]"),
    ("task_family", "attrod", "'task_family' must be an object"),
    ("input", {"name": "input", "shape": [1, 3, 1e9]}, "'input'"),
])
def test_manifest_fields_of_the_wrong_type(bundle, key, value, needle):
    edit_manifest(bundle, **{key: value})
    with pytest.raises(NnfcError, match=re.escape(needle)):
        read_bundle(bundle)


# ---- 2. external data --------------------------------------------------------------------
def test_external_data_not_in_the_manifest_is_refused(bundle):
    external_supernet(bundle, listed=False)
    with pytest.raises(NnfcError, match="weights.bin.*does not list"):
        read_bundle(bundle)


def test_external_data_listed_in_the_manifest_is_hashed(bundle):
    external_supernet(bundle, listed=True)
    read_bundle(bundle)  # accepted: the manifest's hash covers it
    with open(bundle / "weights.bin", "r+b") as fh:  # swapped weights, same size
        fh.seek(100)
        fh.write(b"\x7f\x7f\x7f\x7f")
    with pytest.raises(NnfcError, match="weights.bin does not match its sha256"):
        read_bundle(bundle)


def test_external_data_pointing_past_its_file_is_refused(bundle):
    external_supernet(bundle, listed=True)
    with open(bundle / "weights.bin", "r+b") as fh:
        fh.truncate(1000)
    rehash(bundle)
    with pytest.raises(NnfcError, match="claims bytes"):
        read_bundle(bundle)


def test_external_data_escaping_the_bundle_is_refused(bundle):
    model = onnx.load(str(bundle / "supernet.onnx"))
    init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    init.ClearField("raw_data")
    init.data_location = onnx.TensorProto.EXTERNAL
    init.external_data.add(key="location", value="../../../../etc/passwd")
    onnx.save_model(model, str(bundle / "supernet.onnx"))
    rehash(bundle)
    with pytest.raises(NnfcError, match="does not list"):
        read_bundle(bundle)


def test_initializer_declaring_more_than_it_holds_is_refused(bundle):
    model = onnx.load(str(bundle / "supernet.onnx"))
    init = next(t for t in model.graph.initializer if len(t.dims) == 4)
    del init.dims[:]
    init.dims.extend([1 << 25, 1 << 25])  # 2^50 elements
    onnx.save_model(model, str(bundle / "supernet.onnx"))
    rehash(bundle)
    with pytest.raises(NnfcError, match="declares"):
        read_bundle(bundle)


# ---- 3. numbers that cannot lie ----------------------------------------------------------
def test_compile_of_a_nan_supernet_fails_naming_the_output(bundle, tmp_path, capsys):
    poison_supernet(bundle, float("nan"))
    out = tmp_path / "out"
    code, _, err = run_cli(compile_args(bundle, out), capsys)
    assert code == 2
    one_error(err, "output 'output'", "non-finite", "NaN")
    assert not out.exists()


def test_compile_of_an_infinite_supernet_fails(bundle, tmp_path, capsys):
    poison_supernet(bundle, 3e38)  # overflows to inf inside the network
    code, _, err = run_cli(compile_args(bundle, tmp_path / "out"), capsys)
    assert code == 2
    one_error(err, "output 'output'", "non-finite")


def test_assembler_emitting_nan_is_refused(bundle, tmp_path, capsys):
    model = onnx.load(str(bundle / "assembler.onnx"))
    out = model.graph.output[0].name
    node = next(n for n in model.graph.node if out in n.output)
    node.output[0] = out + ".raw"
    model.graph.node.append(onnx.helper.make_node("Div", [out + ".raw", "zero"], [out]))
    model.graph.initializer.append(
        onnx.numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    onnx.save_model(model, str(bundle / "assembler.onnx"))
    rehash(bundle)
    code, _, err = run_cli(compile_args(bundle, tmp_path / "out"), capsys)
    assert code == 2
    one_error(err, out, "only 0 and 1")


def test_tampered_reference_subnet_is_refused(bundle, tmp_path, capsys):
    ref = bundle / "profiles" / "desktop.reference.onnx"
    assert ref.is_file()
    with open(ref, "ab") as fh:
        fh.write(b"\0")
    code, _, err = run_cli(compile_args(bundle, tmp_path / "out"), capsys)
    assert code == 2
    one_error(err, "reference", "sha256")


def test_reference_named_outside_the_profile_is_refused(bundle, tmp_path, capsys):
    path = bundle / "profiles" / "desktop.json"
    data = json.loads(path.read_text())
    data["reference"]["artifact"] = "../../../../etc/passwd"
    path.write_text(json.dumps(data))
    code, _, err = run_cli(compile_args(bundle, tmp_path / "out"), capsys)
    assert code == 2
    one_error(err, "plain file name")


@pytest.mark.parametrize("key, value", [("image_size", "x"), ("stride", 0), ("categories", 7)])
def test_malformed_task_family_config_is_one_error(key, value):
    from nnfc.bundle import default_bundle_path
    from nnfc.families import family_from_manifest
    manifest = json.loads((default_bundle_path() / "manifest.json").read_text())
    manifest["task_family"]["config"][key] = value
    with pytest.raises(NnfcError, match="task_family.config is not a valid attrod configuration"):
        family_from_manifest(manifest)
