"""The android target's reduced precisions (``nnfc compile --precision fp16|int8``).

int8: full-integer TFLite — int8 weights and activations, float32 or int8 inputs/outputs
(``int8_io``) — converted by onnx2tf + TensorFlow Lite's quantizer in the converter worker
(:mod:`nnfc.targets.tflite_int8_convert`) and calibrated on nnfc's samples of the task: the
worker gets them as an ``.npy`` file in the model's own (NHWC) layout and onnx2tf's sample file
is written beside it, so nothing is downloaded. The layers writing the network's raw outputs and
what follows them stay float (found by the raw outputs' shapes). fp16: onnx2tf's float16-weight
model (float32 I/O).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx

from nnfc.errors import NnfcError
from nnfc.targets.onnx_rewrites import tokens_after_nhwc
from nnfc.targets.static_shapes import with_static_batch

NHWC = (0, 2, 3, 1)


def tensor_shapes(model: onnx.ModelProto, tensors: Sequence[str]) -> list[list[int]]:
    """Static shapes of ``tensors`` (graph outputs or intermediates) by shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    shapes = []
    for t in tensors:
        if t in values:
            dims = [d.dim_value for d in values[t].type.tensor_type.shape.dim]
            if dims and all(d > 0 for d in dims):
                shapes.append(dims)
    return shapes


def lower_int8(target, model: onnx.ModelProto, out_dir: Path, images: np.ndarray,
               raw_outputs: Sequence[str], io: str = "float", keep_float: int = 0) -> Path:
    """``out_dir/model.tflite`` (full-integer) and its sidecar; ``images``: NCHW calibration;
    ``keep_float``: that many of the noisiest layers stay float (TensorFlow Lite's own
    ranking, see :func:`nnfc.targets.tflite_int8_convert.noisiest_layers`)."""
    from nnfc.targets.tflite import _check_converter, converter_process, converter_python, \
        sidecar_path
    python = converter_python()
    _check_converter(python)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    static = with_static_batch(model, 1)
    static, rewrites = tokens_after_nhwc(static)
    raw_shapes = tensor_shapes(static, raw_outputs)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".nnfc-tflite-int8-", dir=out_dir) as tmp:
        work = Path(tmp)
        onnx.save_model(static, str(work / "input.onnx"))
        calib = np.ascontiguousarray(images.transpose(NHWC) if images.ndim == 4 else images,
                                     np.float32)
        np.save(work / "calibration.npy", calib)
        info = converter_process(python).convert(
            work / "input.onnx", work / "out",
            int8={"calibration": str(work / "calibration.npy"),
                  "raw_shapes": raw_shapes, "io": io, "keep_float": keep_float})
        produced = work / "out" / "model_int8.tflite"
        if not produced.is_file():
            raise NnfcError("the onnx2tf worker wrote no int8 TFLite model")
        meta = target._describe(static, produced, "int8", info, time.perf_counter() - t0,
                                rewrites)
        final = out_dir / "model.tflite"
        (work / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        os.replace(produced, final)
        os.replace(work / "meta.json", sidecar_path(final))
    return final


def lower_fp16(target, model: onnx.ModelProto, out_dir: Path) -> Path:
    """``out_dir/model.tflite``: onnx2tf's float16-weight model (the target's own float16
    lowering, renamed so that the precision stage names it ``model.fp16.tflite``)."""
    from nnfc.targets.tflite import TFLiteTarget, sidecar_path
    half = TFLiteTarget(threads=target.threads, precision="float16")
    half.templates = target.templates
    art = Path(half.lower(model.SerializeToString(), out_dir))
    final = art.with_name("model.tflite")
    if art != final:
        os.replace(art, final)
        os.replace(sidecar_path(art), sidecar_path(final))
    return final


def quantize_input(array: np.ndarray, detail: dict) -> np.ndarray:
    """``array`` in the dtype of a TFLite input, quantized with its scale/zero point when that
    is an integer type."""
    dtype = detail["dtype"]
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(array / scale + zero), info.min, info.max).astype(dtype)
    return array.astype(dtype, copy=False)


def dequantize_output(array: np.ndarray, detail: dict) -> np.ndarray:
    """A TFLite output as float32 (int8 outputs through their scale/zero point)."""
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.issubdtype(array.dtype, np.integer) and scale:
        return (array.astype(np.float32) - zero) * scale
    return array
