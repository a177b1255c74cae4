"""The android target: onnx2tf conversion of pruned supernets, LiteRT run/benchmark, layouts.

Each backbone is converted exactly once (10-20 s each on 2 cores); mobilenet/efficientnet are
marked slow (resnet and vit cover convolutions, residuals and attention in `-m "not slow"`).
"""

from __future__ import annotations

import contextlib

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="android extra not installed (make install-android)")
if importlib.util.find_spec("onnx2tf") is None:
    pytest.skip("onnx2tf not installed (make install-android)", allow_module_level=True)

from nnfc.cli import main  # noqa: E402
from nnfc.errors import NnfcError  # noqa: E402
from nnfc.onnx_io import save_onnx  # noqa: E402
from nnfc.passes import apply_gates, gate_inputs  # noqa: E402
from nnfc.targets import get_target  # noqa: E402
from nnfc.targets.tflite import read_sidecar  # noqa: E402
from supernets import IMAGE, run, supernet  # noqa: E402

BACKBONES = ["resnet-tiny", "vit-tiny",
             pytest.param("mobilenet-tiny", marks=pytest.mark.slow),
             pytest.param("efficientnet-tiny", marks=pytest.mark.slow)]


def random_gates(model, seed: int) -> dict[str, np.ndarray]:
    """Random 0/1 gates, about half on, at least one channel on per layer."""
    rng = np.random.default_rng(seed)
    gates = {}
    for name, size in gate_inputs(model).items():
        g = (rng.random(size) < 0.5).astype(np.float32)
        g[rng.integers(size)] = 1.0
        gates[name] = g
    return gates


def lowered(preset: str, tmp_path_factory, precision: str = "float32"):
    _, model = supernet(preset)
    pruned = apply_gates(model, random_gates(model, seed=len(preset)))
    work = tmp_path_factory.mktemp(f"tflite-{preset}")
    path = save_onnx(pruned, work / "model.onnx")
    target = get_target("android", precision=precision, threads=2)
    with contextlib.chdir(work):  # relative paths, as `nnfc compile -o out/x` passes them
        artifact = target.lower(Path(path.name), Path("out"))
    assert artifact.is_absolute() and artifact.parent == work / "out"
    return target, artifact, pruned, path


@pytest.mark.parametrize("preset", BACKBONES)
def test_android_target_end_to_end(preset, tmp_path_factory, capsys):
    """One conversion per backbone (so parallel workers never convert the same model twice):
    outputs equal the pruned ONNX's on random gates, the sidecar records the NHWC layout, the
    benchmark and `nnfc bench` work on the artifact. resnet-tiny also checks float16."""
    precision = "float16" if preset == "resnet-tiny" else "float32"
    target, artifact, pruned, _ = lowered(preset, tmp_path_factory, precision)
    f32 = artifact.parent / "model.tflite"
    check_outputs(target, f32, pruned, preset)
    check_sidecar(f32)
    check_benchmark(target, f32)
    check_run_without_sidecar(target, f32, pruned, tmp_path_factory)
    check_bench_cli(f32, capsys)
    if precision == "float16":
        check_float16(target, artifact, pruned)


def check_outputs(target, artifact, pruned, preset):
    assert artifact.is_file()
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.standard_normal((1, 3, IMAGE, IMAGE)).astype(np.float32)
        (got,) = target.run(artifact, {"input": x})
        want = run(pruned, {"input": x})
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0, err_msg=preset)


def check_sidecar(artifact):
    meta = read_sidecar(artifact)
    (inp,) = meta["inputs"]
    assert inp["name"] == "input"
    assert inp["onnx_shape"] == [1, 3, IMAGE, IMAGE]
    assert inp["tflite_shape"] == [1, IMAGE, IMAGE, 3]
    assert "NHWC" in meta["layout"]
    assert meta["precision"] == "float32"
    assert meta["max_abs_diff_vs_onnx"] < 1e-4
    assert meta["converter"]["onnx2tf"]


def check_benchmark(target, artifact):
    result = target.benchmark(artifact, runs=5, warmup=1)
    assert result.runs == 5
    assert 0 < result.median_ms <= result.p90_ms
    assert result.peak_memory_mb >= 0
    assert "NHWC" in result.details["layout"]
    assert "XNNPACK" in result.details["runtime"]


def check_float16(target, artifact, pruned):
    assert artifact.name == "model.fp16.tflite"
    assert read_sidecar(artifact)["precision"] == "float16"
    x = np.random.default_rng(2).standard_normal((1, 3, IMAGE, IMAGE)).astype(np.float32)
    (got,) = target.run(artifact, {"input": x})
    want = run(pruned, {"input": x})
    np.testing.assert_allclose(got, want, atol=5e-3 * max(1.0, np.abs(want).max()))


def check_run_without_sidecar(target, artifact, pruned, tmp_path_factory):
    bare = tmp_path_factory.mktemp("bare") / "copy.tflite"
    bare.write_bytes(artifact.read_bytes())
    x = np.random.default_rng(3).standard_normal((1, 3, IMAGE, IMAGE)).astype(np.float32)
    (got,) = target.run(bare, {"input": x})
    np.testing.assert_allclose(got, run(pruned, {"input": x}), atol=1e-4)


def check_bench_cli(artifact, capsys):
    capsys.readouterr()
    fast = ["--rounds", "3", "--runs", "3", "--warmup", "1", "--min-round-time", "0"]
    main(["bench", str(artifact), *fast, "--lat-budget", "10s", "--mem-budget", "4GB",
          "--json"])
    (entry,) = json.loads(capsys.readouterr().out)["artifacts"]
    assert entry["target"] == "android" and entry["violations"] == []
    assert entry["memory_source"] == "runtime" and entry["target_options"] == {"threads": 1}
    with pytest.raises(SystemExit) as exc:
        main(["bench", str(artifact), *fast, "--lat-budget", "1us"])
    assert exc.value.code == 1
    assert "EXCEEDED" in capsys.readouterr().out


def test_gated_model_is_rejected(tmp_path):
    _, model = supernet("resnet-tiny")
    path = save_onnx(model, tmp_path / "supernet.onnx")
    with pytest.raises(NnfcError, match="gate inputs"):
        get_target("android").lower(path, tmp_path / "out")


def test_missing_litert_gives_install_hint(monkeypatch, tmp_path):
    artifact = tmp_path / "model.tflite"
    artifact.write_bytes(b"not used")
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(NnfcError, match="make install-android"):
        get_target("android").benchmark(artifact, runs=1, warmup=0)


def test_missing_converter_gives_install_hint(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnx2tf" else real(name, *a))
    with pytest.raises(NnfcError, match="onnx2tf is not installed.*make install-android"):
        get_target("android").lower(tmp_path / "model.onnx", tmp_path)


def test_converter_crash_is_one_clear_error(monkeypatch, tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/usr/bin/env bash\necho 'ImportError: no module named onnx2tf' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("NNFC_ONNX2TF_PYTHON", str(fake))
    _, model = supernet("resnet-tiny")
    pruned = apply_gates(model, random_gates(model, seed=0))
    path = save_onnx(pruned, tmp_path / "model.onnx")
    with pytest.raises(NnfcError, match="converter process died: ImportError: no module named"):
        get_target("android").lower(path, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.tflite"))
