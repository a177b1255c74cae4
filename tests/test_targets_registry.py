"""The target registry: a target describes itself (suffixes, options, device-profiling hooks), so
a new one is one module plus one registry line and the CLI needs no per-target code."""

from __future__ import annotations

import sys
import types

import pytest

from nnfc.errors import NnfcError
from nnfc.targets import (TARGETS, DeviceProfiling, get_target, register_target,
                          supported_options, target_class, target_for_suffix)


def test_suffixes_and_options_come_from_the_classes():
    assert [target_for_suffix(s) for s in (".onnx", ".TFLITE", ".engine", ".plan", ".bin")] == \
        ["desktop", "android", "jetson", "jetson", None]
    assert supported_options("desktop", {"threads": 2, "device": "x", "fp16": None}) == \
        {"threads": 2}
    assert supported_options("android", {"threads": 2, "device": "x"}) == \
        {"threads": 2, "device": "x"}
    assert target_class("desktop").repeatable_options == {"threads": 1}
    with pytest.raises(NnfcError, match="does not take option.*threads"):
        get_target("jetson", threads=2)
    with pytest.raises(NnfcError, match="unknown target 'mars'"):
        get_target("mars")


def test_device_profiling_hooks():
    assert isinstance(get_target("jetson"), DeviceProfiling)
    assert not isinstance(get_target("desktop"), DeviceProfiling)


def test_a_new_target_is_one_module_plus_one_line(monkeypatch, tmp_path):
    module = types.ModuleType("my_npu_target")

    class NpuTarget:
        name = "npu"
        artifact_suffix = ".npu"
        artifact_suffixes = (".npu",)
        option_help = {"cores": "NPU cores"}
        repeatable_options = {"cores": 1}

        def __init__(self, cores: int = 4):
            self.cores = cores

    module.NpuTarget = NpuTarget
    monkeypatch.setitem(sys.modules, "my_npu_target", module)
    register_target("npu", "my_npu_target:NpuTarget")
    try:
        assert get_target("npu", cores=2).cores == 2
        assert target_for_suffix(".npu") == "npu"
        from nnfc.commands.bench import resolve_artifact
        artifact = tmp_path / "model.npu"
        artifact.write_bytes(b"x")
        assert resolve_artifact(artifact, None) == (artifact, "npu")
    finally:
        TARGETS.pop("npu", None)
