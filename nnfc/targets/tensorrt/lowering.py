"""Lowering for TensorRT: the TensorRT-ready ONNX, the engine build (TensorRT 10 Python API) and
the ``trtexec`` recipe written where TensorRT is absent."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

import numpy as np
import onnx

from nnfc.atomic import atomic_file
from nnfc.errors import NnfcError
from nnfc.targets.static_shapes import with_static_batch

#: opsets TensorRT 10's ONNX parser reads; models outside are converted to DEFAULT_TRT_OPSET
TRT_MIN_OPSET, TRT_MAX_OPSET, DEFAULT_TRT_OPSET = 9, 20, 17
DEFAULT_WORKSPACE_MB = 1024
ONNX_NAME, ENGINE_NAME, RECIPE_NAME = "model.trt.onnx", "model.engine", "build_engine.sh"


def write_bytes(path: Path, data: bytes, executable: bool = False) -> Path:
    """Atomic write (0644, or 0755 for scripts)."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    if executable:
        path.chmod(0o755)
    return path


def trtexec_command(onnx_name: str = ONNX_NAME, engine_name: str = ENGINE_NAME,
                    fp16: bool = False, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                    int8: bool = False) -> str:
    """The trtexec command that builds the engine from the TensorRT-ready ONNX (``int8``: the
    ONNX carries Q/DQ nodes, explicit quantization, built with ``--int8``)."""
    parts = ["trtexec", f"--onnx={onnx_name}", f"--saveEngine={engine_name}",
             f"--memPoolSize=workspace:{workspace_mb}"]
    if fp16:
        parts.append("--fp16")
    if int8:
        parts.append("--int8")
    return " ".join(shlex.quote(p) for p in parts)


def tensorrt_ready_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` TensorRT parses as is: gates folded (all-on if any are still graph
    inputs), batch 1 and static input shapes, opset within TensorRT 10's range, shapes
    inferred; checked with ``onnx.checker``."""
    gate_names = [i.name for i in model.graph.input if i.name.startswith("gate.")]
    if gate_names:
        from nnfc.passes import apply_gates, gate_inputs
        sizes = gate_inputs(model)
        model = apply_gates(model, {k: np.ones(n, np.float32) for k, n in sizes.items()})
    model = with_static_batch(model, 1)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not TRT_MIN_OPSET <= opset <= TRT_MAX_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, DEFAULT_TRT_OPSET)
        except Exception as exc:
            raise NnfcError(f"the model's opset {opset} is outside TensorRT's "
                            f"{TRT_MIN_OPSET}-{TRT_MAX_OPSET} and converting it to "
                            f"{DEFAULT_TRT_OPSET} failed: {exc}") from exc
    foreign = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        raise NnfcError(f"the model uses operator domains TensorRT does not parse: "
                        f"{', '.join(foreign)}")
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise NnfcError(f"the TensorRT-ready ONNX is not valid: {str(exc).splitlines()[0]}") \
            from exc
    return model


def is_qdq(model: onnx.ModelProto) -> bool:
    """Whether ``model`` is explicitly quantized (QuantizeLinear/DequantizeLinear nodes)."""
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def check_explicit_int8(model: onnx.ModelProto) -> None:
    """TensorRT's explicit quantization takes int8 Q/DQ with zero point 0 only."""
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in inits:
            zp = onnx.numpy_helper.to_array(inits[node.input[2]])
            if zp.dtype != np.int8 or np.any(zp != 0):
                raise NnfcError(f"TensorRT builds int8 Q/DQ with zero point 0 only; "
                                f"{node.name or node.output[0]} quantizes to {zp.dtype} with "
                                f"zero point {zp.ravel()[:1].tolist()}")


def build_engine(trt, onnx_path: Path, fp16: bool = False,
                 workspace_mb: int = DEFAULT_WORKSPACE_MB, int8: bool = False) -> bytes:
    """Build a serialized engine with the TensorRT 10 Python API (explicit batch is the
    default there, so the network is created with flags 0); ``int8``: a Q/DQ network, built
    with the INT8 flag (explicit quantization: the scales are the ONNX's)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise NnfcError(f"TensorRT cannot parse {onnx_path.name}: {errors or 'unknown error'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb * (1 << 20))
    if fp16:
        if not builder.platform_has_fast_fp16:
            logging.getLogger("nnfc").warning(
                "this GPU has no fast FP16; building the FP16 engine anyway")
        config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise NnfcError(f"TensorRT could not build an engine from {onnx_path.name} "
                        f"(see the TensorRT messages above)")
    return bytes(serialized)


def write_recipe(out_dir: Path, reason: str, fp16: bool = False,
                 workspace_mb: int = DEFAULT_WORKSPACE_MB, int8: bool = False) -> Path:
    """``out_dir/build_engine.sh``: the trtexec command to run on the Jetson."""
    command = trtexec_command(fp16=fp16, workspace_mb=workspace_mb, int8=int8)
    text = ("#!/usr/bin/env bash\n"
            f"# Build the TensorRT engine on the Jetson (written by nnfc: {reason} here).\n"
            "# trtexec ships with JetPack: /usr/src/tensorrt/bin/trtexec\n"
            "set -euo pipefail\n"
            'cd "$(dirname "$0")"\n'
            'PATH="$PATH:/usr/src/tensorrt/bin"\n'
            f"{command}\n")
    return write_bytes(out_dir / RECIPE_NAME, text.encode(), executable=True)
