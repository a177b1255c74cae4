"""Profiling on a Jetson this machine cannot drive (``nnfc profile --target jetson --device-dir``).

Write the subnets' TensorRT-ready ONNX files into a directory with :func:`prepare_device_profile`
(or :func:`write_device_profile_script` for files already there), copy the directory to the
Jetson and run ``bash profile_on_jetson.sh`` there; it writes ``trt_measurements.log``. Copy that
back and read it with :func:`parse_device_measurements`: one row per ONNX file (``latency_ms``,
``latency_p90_ms``, ``runtime_memory_mb``...).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Iterable

import onnx

from nnfc.errors import NnfcError
from nnfc.targets.tensorrt.lowering import DEFAULT_WORKSPACE_MB, tensorrt_ready_onnx, write_bytes

PROFILE_SCRIPT, MEASUREMENTS_LOG = "profile_on_jetson.sh", "trt_measurements.log"


def write_device_profile_script(onnx_files: Iterable[str | Path], out_dir: str | Path,
                                fp16: bool = False, iterations: int = 200, warmup_ms: int = 500,
                                workspace_mb: int = DEFAULT_WORKSPACE_MB) -> Path:
    """Write ``out_dir/profile_on_jetson.sh`` that, run on the Jetson from ``out_dir``, builds
    and times an engine for each ONNX file with trtexec and appends the results to
    ``trt_measurements.log`` (read it back with :func:`parse_device_measurements`).

    The ONNX files must be in ``out_dir`` (they are referenced by name) and should be
    TensorRT-ready (see :func:`tensorrt_ready_onnx`). For ``nnfc profile --target jetson``:
    prune each random subnet, write ``tensorrt_ready_onnx(pruned)`` as ``subnet<i>.onnx`` into
    the directory, then call this with those paths."""
    out_dir = Path(out_dir)
    names = []
    for f in onnx_files:
        f = Path(f)
        if f.parent.resolve() != out_dir.resolve():
            raise NnfcError(f"{f} must be inside {out_dir} (the script refers to it by name)")
        names.append(f.name)
    if not names:
        raise NnfcError("no ONNX files to profile")
    precision = "--fp16" if fp16 else ""
    lines = [
        "#!/usr/bin/env bash",
        "# Profile TensorRT engines on the Jetson (written by nnfc). Run from anywhere:",
        f"#   bash {PROFILE_SCRIPT}",
        f"# then copy {MEASUREMENTS_LOG} back and fit with `nnfc profile fit`.",
        "set -uo pipefail",
        'cd "$(dirname "$0")"',
        'PATH="$PATH:/usr/src/tensorrt/bin"',
        "command -v trtexec >/dev/null || { echo 'trtexec not found (JetPack installs it in "
        "/usr/src/tensorrt/bin)' >&2; exit 1; }",
        f"LOG={MEASUREMENTS_LOG}",
        ': > "$LOG"',
        f"MODELS=({' '.join(shlex.quote(n) for n in names)})",
        'i=0',
        'for m in "${MODELS[@]}"; do',
        '  i=$((i+1)); echo "[$i/${#MODELS[@]}] $m" >&2',
        '  engine="${m%.onnx}.engine"',
        '  echo "### nnfc-model: $m" >> "$LOG"',
        f'  trtexec --onnx="$m" --saveEngine="$engine" --memPoolSize=workspace:{workspace_mb} '
        f'{precision} --iterations={iterations} --warmUp={warmup_ms} --duration=0 '
        '>> "$LOG" 2>&1',
        '  echo "### nnfc-exit: $?" >> "$LOG"',
        '  if [ -f "$engine" ]; then echo "### nnfc-engine-bytes: $(stat -c %s "$engine")" '
        '>> "$LOG"; rm -f "$engine"; fi',
        'done',
        'echo "wrote $(pwd)/$LOG" >&2',
        "",
    ]
    return write_bytes(out_dir / PROFILE_SCRIPT, "\n".join(lines).encode(), executable=True)


def prepare_device_profile(models: Iterable[tuple[str, onnx.ModelProto]], out_dir: str | Path,
                           fp16: bool = False, iterations: int = 200) -> Path:
    """Write each ``(name, pruned model)`` as a TensorRT-ready ``out_dir/<name>.onnx`` plus the
    device script (:func:`write_device_profile_script`); returns the script's path.

    The one call ``nnfc profile --target jetson`` needs: e.g. names ``subnet0``, ``subnet1``...
    for the random subnets; the rows :func:`parse_device_measurements` returns carry
    ``model = "<name>.onnx"`` to match them back."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, model in models:
        path = out_dir / f"{name}.onnx"
        write_bytes(path, tensorrt_ready_onnx(model).SerializeToString())
        files.append(path)
    return write_device_profile_script(files, out_dir, fp16=fp16, iterations=iterations)


_MODEL = re.compile(r"^### nnfc-model: (.+?)\s*$")
_EXIT = re.compile(r"^### nnfc-exit: (\d+)")
_ENGINE = re.compile(r"^### nnfc-engine-bytes: (\d+)")
_LATENCY = re.compile(r"\]\s*Latency: (.*)$|^Latency: (.*)$")
_STAT = re.compile(r"(median|percentile\(90%\)|mean|min|max) = ([0-9.eE+-]+) ms")
_GPU_NOW = re.compile(r"now: CPU (\d+), GPU (\d+) \(MiB\)")


def parse_device_measurements(path: str | Path, strict: bool = True) -> list[dict]:
    """Read ``trt_measurements.log`` written by :func:`write_device_profile_script`.

    Returns one dict per model in order: ``model`` (file name), ``latency_ms`` (trtexec's
    end-to-end median), ``latency_p90_ms``, ``runtime_memory_mb`` (the GPU memory TensorRT
    reports holding, MiB converted to MB; the engine size if no such line), ``engine_mb``.
    A model whose build or timing failed raises NnfcError naming it (``strict``), or is left
    out of the rows (``strict=False``; compare the rows' ``model`` names with what was sent)."""
    from nnfc.jsonfile import read_bytes_capped
    path = Path(path)  # a log from another machine: a regular file of bounded size
    text = read_bytes_capped(path, 256 << 20, "TensorRT measurements").decode(
        "utf-8", errors="replace")
    blocks: list[dict] = []
    for line in text.splitlines():
        if (m := _MODEL.match(line)):
            blocks.append({"model": m.group(1), "lines": []})
        elif blocks:
            blocks[-1]["lines"].append(line)
    if not blocks:
        raise NnfcError(f"{path} holds no '### nnfc-model:' blocks: not written by "
                        f"{PROFILE_SCRIPT}?")
    rows, failed = [], []
    for block in blocks:
        stats, gpu_mib, engine_bytes, code = {}, None, None, None
        for line in block["lines"]:
            if (m := _EXIT.match(line)):
                code = int(m.group(1))
            elif (m := _ENGINE.match(line)):
                engine_bytes = int(m.group(1))
            elif (m := _LATENCY.search(line)):
                stats = dict(_STAT.findall(m.group(1) or m.group(2)))
            elif (m := _GPU_NOW.search(line)):
                gpu_mib = max(gpu_mib or 0, int(m.group(2)))
        if code not in (0, None) or "median" not in stats:
            failed.append(block["model"])
            continue
        engine_mb = engine_bytes / 1e6 if engine_bytes is not None else None
        memory = gpu_mib * (1 << 20) / 1e6 if gpu_mib else engine_mb
        rows.append({"model": block["model"], "latency_ms": float(stats["median"]),
                     "latency_p90_ms": float(stats.get("percentile(90%)", stats["median"])),
                     "latency_mean_ms": float(stats.get("mean", stats["median"])),
                     "runtime_memory_mb": memory, "engine_mb": engine_mb})
    if failed and strict:
        raise NnfcError(f"TensorRT build or timing failed for {len(failed)} model(s) in "
                        f"{path}: {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}")
    return rows
