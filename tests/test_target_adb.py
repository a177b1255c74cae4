"""Phones over adb: the android target's device path, driven through a stand-in ``adb``."""

from __future__ import annotations

import pytest

from nnfc.errors import NnfcError
from nnfc.targets.adb import AdbBenchmark, parse_benchmark_model_output
from nnfc.targets.tflite import TFLiteTarget

OUTPUT = """\
INFO: STARTING!
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/nnfc/model.tflite]
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: Running benchmark for at least 10 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=10 first=2100 curr=1500 min=1400 max=2100 avg=1550 std=180 p5=1400 median=1520 p95=1900
INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=1480 curr=1410 min=1380 max=2500 avg=1450.5 std=90 p5=1390 median=1430 p95=1700
INFO: Inference timings in us: Init: 5685, First inference: 2100, Warmup (avg): 1550, Inference (avg): 1450.5
INFO: Memory footprint delta from the start of the tool (MB): init=2.82 overall=9.70
INFO: Overall peak memory footprint (MB) via periodic monitoring: 12.25
"""


def test_parse_benchmark_model_output():
    figures = parse_benchmark_model_output(OUTPUT)
    assert figures["runs"] == 50
    assert figures["median_ms"] == pytest.approx(1.43)
    assert figures["p90_ms"] == pytest.approx(1.7)
    assert figures["memory_mb"] == pytest.approx(12.25)
    old = "count=20 first=1 curr=1 min=900 max=1300 avg=1000 std=5\n" \
          "Memory footprint delta from the start of the tool (MB): init=1.5 overall=7.5\n"
    figures = parse_benchmark_model_output(old)
    assert (figures["median_ms"], figures["p90_ms"], figures["memory_mb"]) == (1.0, 1.3, 7.5)
    assert "average" in figures["latency_note"]
    with pytest.raises(NnfcError, match="no timing statistics"):
        parse_benchmark_model_output("ERROR: Could not open model\n")


@pytest.fixture
def fake_adb(tmp_path):
    log = tmp_path / "adb.log"
    out = tmp_path / "bm.txt"
    out.write_text(OUTPUT)
    script = tmp_path / "adb"
    script.write_text(f"""#!/usr/bin/env bash
echo "$*" >> {log}
case "$*" in *benchmark_model\\ --graph=*) cat {out};; esac
""")
    script.chmod(0o755)
    return script, log


def test_android_target_benchmarks_on_the_phone(fake_adb, tmp_path, monkeypatch):
    script, log = fake_adb
    monkeypatch.setenv("NNFC_ADB", str(script))
    artifact = tmp_path / "model.tflite"
    artifact.write_bytes(b"tflite")
    result = TFLiteTarget(threads=4, device="R58M12345").benchmark(artifact, runs=50, warmup=5)
    assert result.median_ms == pytest.approx(1.43) and result.peak_memory_mb == 12.25
    assert "R58M12345" in result.details["runtime"]
    calls = log.read_text().splitlines()
    assert calls[0] == "-s R58M12345 shell mkdir -p /data/local/tmp/nnfc"
    assert calls[1] == f"-s R58M12345 push {artifact} /data/local/tmp/nnfc/model.tflite"
    assert calls[2].startswith("-s R58M12345 shell /data/local/tmp/benchmark_model "
                               "--graph=/data/local/tmp/nnfc/model.tflite --num_threads=4 "
                               "--num_runs=50 --warmup_runs=5 --use_xnnpack=true")


def test_local_tool_is_pushed_and_adb_errors_are_clear(fake_adb, tmp_path, monkeypatch):
    script, log = fake_adb
    tool = tmp_path / "benchmark_model"
    tool.write_bytes(b"elf")
    artifact = tmp_path / "m.tflite"
    artifact.write_bytes(b"x")
    AdbBenchmark("emu", adb=str(script), tool=str(tool)).benchmark(artifact, 10, 1, 2)
    calls = log.read_text().splitlines()
    assert f"-s emu push {tool} /data/local/tmp/nnfc/benchmark_model" in calls
    assert calls[-1].startswith("-s emu shell /data/local/tmp/nnfc/benchmark_model --graph=")
    failing = tmp_path / "adb-fail"
    failing.write_text("#!/usr/bin/env bash\necho \"error: device 'x' not found\" >&2\nexit 1\n")
    failing.chmod(0o755)
    with pytest.raises(NnfcError, match="device 'x' not found"):
        AdbBenchmark("x", adb=str(failing)).benchmark(artifact)
    monkeypatch.delenv("NNFC_ADB", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(NnfcError, match="adb not found"):
        AdbBenchmark("x")


def test_bench_cli_device_option(fake_adb, tmp_path, monkeypatch, capsys):
    from nnfc.cli import main
    script, _ = fake_adb
    monkeypatch.setenv("NNFC_ADB", str(script))
    artifact = tmp_path / "model.tflite"
    artifact.write_bytes(b"tflite")
    main(["bench", str(artifact), "--device", "R58", "--lat-budget", "5ms"])
    assert "budget   OK" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["bench", str(artifact), "--device", "R58", "--lat-budget", "1ms"])
    assert exc.value.code == 1
