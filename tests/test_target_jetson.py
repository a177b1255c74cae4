"""The jetson target on a machine without TensorRT: TensorRT-ready ONNX, recipe, clear errors;
the engine-building call sequence against a stand-in ``tensorrt`` module; the device-side
profiling script run with a stand-in ``trtexec`` and its measurements parsed back."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import types

import numpy as np
import onnx
import pytest

from nnfc.cli import main
from nnfc.errors import NnfcError
from nnfc.onnx_io import save_onnx
from nnfc.passes import apply_gates, gate_inputs
from nnfc.targets import get_target
from nnfc.targets.tensorrt import cuda_runner, device_profiling, lowering
from supernets import IMAGE, run, supernet


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    _, model = supernet("mobilenet-tiny")
    rng = np.random.default_rng(0)
    gates = {k: np.maximum(rng.random(n) < 0.5, np.arange(n) == 0).astype(np.float32)
             for k, n in gate_inputs(model).items()}
    model = apply_gates(model, gates)
    return save_onnx(model, tmp_path_factory.mktemp("jetson") / "model.onnx"), model


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def test_lower_writes_tensorrt_ready_onnx_and_recipe(pruned, tmp_path, caplog, no_tensorrt):
    caplog.set_level("INFO", logger="nnfc")
    path, model = pruned
    artifact = get_target("jetson").lower(path, tmp_path)
    assert artifact == tmp_path / "model.trt.onnx"
    ready = onnx.load(artifact)
    onnx.checker.check_model(ready, full_check=True)
    inputs = [i for i in ready.graph.input]
    assert [i.name for i in inputs] == ["input"]
    assert [d.dim_value for d in inputs[0].type.tensor_type.shape.dim] == [1, 3, IMAGE, IMAGE]
    opset = next(o.version for o in ready.opset_import if o.domain in ("", "ai.onnx"))
    assert lowering.TRT_MIN_OPSET <= opset <= lowering.TRT_MAX_OPSET
    assert not list(tmp_path.glob("*.engine")), "never a fake engine"
    recipe = (tmp_path / "build_engine.sh").read_text()
    assert "trtexec --onnx=model.trt.onnx --saveEngine=model.engine" in recipe
    assert "--fp16" not in recipe
    assert os.stat(tmp_path / "build_engine.sh").st_mode & stat.S_IXUSR
    notes = [r.getMessage() for r in caplog.records if r.name == "nnfc"]
    assert len(notes) == 1 and "no TensorRT engine built" in notes[0] and "trtexec" in notes[0]
    # without TensorRT, run() executes the very ONNX the engine is built from
    x = np.random.default_rng(1).standard_normal((1, 3, IMAGE, IMAGE)).astype(np.float32)
    (got,) = get_target("jetson").run(artifact, {"input": x})
    np.testing.assert_allclose(got, run(model, {"input": x}), atol=1e-5)


def test_gate_inputs_are_folded_all_on(tmp_path, no_tensorrt):
    _, model = supernet("resnet-tiny")
    path = save_onnx(model, tmp_path / "supernet.onnx")
    artifact = get_target("jetson", fp16=True).lower(path, tmp_path / "out")
    ready = onnx.load(artifact)
    assert not [i.name for i in ready.graph.input if i.name.startswith("gate.")]
    assert "--fp16" in (tmp_path / "out" / "build_engine.sh").read_text()
    x = np.random.default_rng(2).standard_normal((1, 3, IMAGE, IMAGE)).astype(np.float32)
    ones = {k: np.ones(n, np.float32) for k, n in gate_inputs(model).items()}
    np.testing.assert_allclose(run(ready, {"input": x}), run(model, {"input": x, **ones}),
                               atol=1e-5)


def test_missing_tensorrt_message(pruned, tmp_path, no_tensorrt):
    artifact = get_target("jetson").lower(pruned[0], tmp_path)
    with pytest.raises(cuda_runner.TensorRTUnavailable,
                       match="tensorrt Python package is not installed.*trtexec --onnx="):
        get_target("jetson").benchmark(artifact, runs=1, warmup=0)
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0" * 16)
    with pytest.raises(NnfcError, match="JetPack"):
        get_target("jetson").run(engine, {})


def test_bench_cli_without_tensorrt_exits_2(pruned, tmp_path, capsys, no_tensorrt):
    artifact = get_target("jetson").lower(pruned[0], tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["bench", str(artifact), "--target", "jetson", "--lat-budget", "20ms"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("nnfc: error: cannot benchmark on the jetson target here")
    assert len(err.strip().splitlines()) == 1


class _FakeTRT(types.ModuleType):
    """Records the TensorRT 10 builder calls nnfc makes."""

    def __init__(self):
        super().__init__("tensorrt")
        self.calls = []
        fake = self

        class Logger:
            WARNING = "warning"

            def __init__(self, level):
                fake.calls.append(("Logger", level))

        class Network:
            pass

        class Parser:
            num_errors = 0

            def __init__(self, network, logger):
                fake.calls.append(("OnnxParser",))

            def parse_from_file(self, path):
                fake.calls.append(("parse_from_file", os.path.basename(path)))
                return True

        class Config:
            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("set_memory_pool_limit", pool, size))

            def set_flag(self, flag):
                fake.calls.append(("set_flag", flag))

        class Builder:
            platform_has_fast_fp16 = True

            def __init__(self, logger):
                fake.calls.append(("Builder",))

            def create_network(self, flags):
                fake.calls.append(("create_network", flags))
                return Network()

            def create_builder_config(self):
                return Config()

            def build_serialized_network(self, network, config):
                fake.calls.append(("build_serialized_network",))
                return b"ENGINE-BYTES"

        self.Logger, self.Builder, self.OnnxParser = Logger, Builder, Parser
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
        self.BuilderFlag = types.SimpleNamespace(FP16="fp16")
        self.__version__ = "10.fake"


def test_engine_build_call_sequence(pruned, tmp_path, monkeypatch):
    fake = _FakeTRT()
    monkeypatch.setattr(cuda_runner, "tensorrt_status", lambda: (fake, ""))
    artifact = get_target("jetson", fp16=True, workspace_mb=256).lower(pruned[0], tmp_path)
    assert artifact == tmp_path / "model.engine"
    assert artifact.read_bytes() == b"ENGINE-BYTES"
    assert (tmp_path / "model.trt.onnx").is_file()
    assert not (tmp_path / "build_engine.sh").exists()
    names = [c[0] for c in fake.calls]
    assert names == ["Logger", "Builder", "create_network", "OnnxParser", "parse_from_file",
                     "set_memory_pool_limit", "set_flag", "build_serialized_network"]
    assert ("create_network", 0) in fake.calls
    assert ("parse_from_file", "model.trt.onnx") in fake.calls
    assert ("set_memory_pool_limit", "workspace", 256 << 20) in fake.calls
    assert ("set_flag", "fp16") in fake.calls


FAKE_TRTEXEC = r"""#!/usr/bin/env bash
# stand-in for trtexec: prints the lines nnfc parses, writes the engine file
for a in "$@"; do case "$a" in --saveEngine=*) engine="${a#--saveEngine=}";; --onnx=*) onnx="${a#--onnx=}";; esac; done
if [ "$onnx" = "broken.onnx" ]; then echo "[E] Error[4]: parse failed"; exit 1; fi
n=${#onnx}
echo "[11/24/2026-20:00:00] [I] [TRT] [MemUsageChange] TensorRT-managed allocation in IExecutionContext creation: CPU +0, GPU +3, now: CPU 0, GPU $((n + 4)) (MiB)"
echo "[11/24/2026-20:00:00] [I] === Performance summary ==="
echo "[11/24/2026-20:00:00] [I] Latency: min = 0.5 ms, max = 0.9 ms, mean = 0.6$n ms, median = 0.$n ms, percentile(90%) = 0.8 ms, percentile(95%) = 0.85 ms, percentile(99%) = 0.9 ms"
head -c 2048 /dev/zero > "$engine"
"""


def test_device_profile_script_and_parser(tmp_path, no_tensorrt):
    work = tmp_path / "jetson-profile"
    work.mkdir()
    files = []
    for name in ("subnet0.onnx", "subnet10.onnx"):
        (work / name).write_bytes(b"onnx")
        files.append(work / name)
    script = device_profiling.write_device_profile_script(files, work, fp16=True, iterations=50)
    assert script.name == "profile_on_jetson.sh"
    text = script.read_text()
    assert "--fp16" in text and "--iterations=50" in text and "subnet10.onnx" in text
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "trtexec").write_text(FAKE_TRTEXEC)
    (bindir / "trtexec").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", str(script)], check=True, env=env, cwd=tmp_path,
                   capture_output=True)
    rows = device_profiling.parse_device_measurements(work / "trt_measurements.log")
    assert [r["model"] for r in rows] == ["subnet0.onnx", "subnet10.onnx"]
    assert rows[0]["latency_ms"] == pytest.approx(0.12)   # len("subnet0.onnx") == 12
    assert rows[1]["latency_ms"] == pytest.approx(0.13)
    assert rows[0]["latency_p90_ms"] == pytest.approx(0.8)
    assert rows[0]["runtime_memory_mb"] == pytest.approx(16 * 2 ** 20 / 1e6)
    assert rows[0]["engine_mb"] == pytest.approx(2048 / 1e6)
    assert not list(work.glob("*.engine")), "engines are deleted after timing"

    (work / "broken.onnx").write_bytes(b"x")
    script = device_profiling.write_device_profile_script([work / "broken.onnx"], work)
    subprocess.run(["bash", str(script)], env=env, capture_output=True)
    with pytest.raises(NnfcError, match="failed for 1 model.*broken.onnx"):
        device_profiling.parse_device_measurements(work / "trt_measurements.log")
    assert device_profiling.parse_device_measurements(work / "trt_measurements.log",
                                                      strict=False) == []


def test_prepare_device_profile_writes_ready_models(pruned, tmp_path):
    _, model = pruned
    _, supernet_model = supernet("resnet-tiny")
    script = device_profiling.prepare_device_profile(
        [("subnet0", model), ("subnet1", supernet_model)], tmp_path / "dev", fp16=True)
    assert script == tmp_path / "dev" / "profile_on_jetson.sh"
    for name in ("subnet0", "subnet1"):
        ready = onnx.load(tmp_path / "dev" / f"{name}.onnx")
        onnx.checker.check_model(ready, full_check=True)
        assert [i.name for i in ready.graph.input] == ["input"]
    assert "MODELS=(subnet0.onnx subnet1.onnx)" in script.read_text()


def test_profile_script_rejects_files_elsewhere(tmp_path):
    with pytest.raises(NnfcError, match="must be inside"):
        device_profiling.write_device_profile_script([tmp_path / "a.onnx"], tmp_path / "other")
    with pytest.raises(NnfcError, match="no '### nnfc-model:'"):
        (tmp_path / "log").write_text("hello\n")
        device_profiling.parse_device_measurements(tmp_path / "log")


class _FakeCudart(types.SimpleNamespace):
    """cuda-python's runtime API as EngineRunner uses it: (err, value) tuples, raw addresses;
    "device" memory is host memory here."""

    def __init__(self):
        super().__init__(cudaMemcpyKind=types.SimpleNamespace(
            cudaMemcpyHostToDevice="h2d", cudaMemcpyDeviceToHost="d2h"))
        self.blocks, self.free, self.calls = {}, 1 << 30, []

    def cudaGetDeviceCount(self):
        return 0, 1

    def cudaMemGetInfo(self):
        return 0, self.free, 1 << 30

    def cudaMalloc(self, size):
        buf = np.zeros(size, np.uint8)
        self.blocks[buf.ctypes.data] = buf
        self.free -= size
        return 0, buf.ctypes.data

    def cudaMemcpy(self, dst, src, size, kind):
        import ctypes
        self.calls.append(kind)
        ctypes.memmove(dst, src, size)
        return (0,)

    def cudaStreamCreate(self):
        return 0, 7

    def cudaStreamSynchronize(self, stream):
        return (0,)

    def cudaFree(self, ptr):
        self.free += self.blocks.pop(ptr).size
        return (0,)

    def cudaStreamDestroy(self, stream):
        return (0,)


def _fake_runtime_trt(cudart):
    """TensorRT 10's runtime side (Runtime -> ICudaEngine tensor API -> execution context) for
    an engine computing ``out = 2 * input`` on a [1, 3, 4, 4] float32 tensor."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.fake"
    trt.calls = []
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.nptype = lambda dtype: {"float32": np.float32}[dtype]
    trt.Logger = type("Logger", (), {"WARNING": "w", "__init__": lambda self, level: None})
    shape, tensors = (1, 3, 4, 4), [("input", "in"), ("output", "out")]

    class Context:
        def __init__(self):
            self.addresses = {}

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr

        def execute_async_v3(self, stream):
            trt.calls.append("execute_async_v3")
            src = cudart.blocks[self.addresses["input"]].view(np.float32)
            cudart.blocks[self.addresses["output"]].view(np.float32)[:] = 2 * src
            return True

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i):
            return tensors[i][0]

        def get_tensor_shape(self, name):
            return shape

        def get_tensor_dtype(self, name):
            return "float32"

        def get_tensor_mode(self, name):
            return dict(tensors)[name]

        def create_execution_context(self):
            trt.calls.append("create_execution_context")
            return Context()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            trt.calls.append("deserialize_cuda_engine")
            return Engine() if data == b"ENGINE" else None

    trt.Runtime = Runtime
    return trt


def test_engine_run_and_benchmark_against_the_runtime_api(tmp_path, monkeypatch):
    cudart = _FakeCudart()
    trt = _fake_runtime_trt(cudart)
    monkeypatch.setattr(cuda_runner, "tensorrt_status", lambda: (trt, ""))
    monkeypatch.setattr(cuda_runner, "_cudart", lambda: cudart)
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"ENGINE")
    x = np.random.default_rng(3).standard_normal((1, 3, 4, 4)).astype(np.float32)
    (out,) = get_target("jetson").run(engine, {"input": x})
    np.testing.assert_array_equal(out, 2 * x)
    assert trt.calls == ["deserialize_cuda_engine", "create_execution_context",
                         "execute_async_v3"]
    assert not cudart.blocks, "device buffers are freed"
    result = get_target("jetson").benchmark(engine, runs=4, warmup=1)
    assert result.runs == 4 and result.median_ms >= 0
    assert result.peak_memory_mb == pytest.approx(2 * x.nbytes / 1e6)
    assert trt.calls.count("execute_async_v3") == 1 + 5
    with pytest.raises(NnfcError, match="missing input"):
        get_target("jetson").run(engine, {})
    engine.write_bytes(b"OTHER")
    with pytest.raises(NnfcError, match="could not deserialize"):
        get_target("jetson").run(engine, {"input": x})
