"""Detection decoding as a small ONNX graph, joined to a (pruned) detector by every target.

The supernet keeps its raw outputs — ``heatmap`` [1,1,h,w] (logits of "an object matching the
task is centred here") and ``box`` [1,4,h,w] (log distances, in units of the stride, from the
cell centre to the left/top/right/bottom edges of the box). The decode graph turns them into a
fixed-size list: sigmoid, 3×3 max-pool peak picking (a cell is kept where it equals the max of
its neighbourhood), TopK of the peaks and the box decode → ``boxes`` [B,K,4] (x0, y0, x1, y1 in
input pixels, clipped to the image) and ``scores`` [B,K], for any batch B. No NonMaxSuppression: its dynamic
output shape ports badly to TFLite; every op here is static and runs the same on ORT, LiteRT and
TensorRT.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HEATMAP, BOX = "heatmap", "box"
BOXES, SCORES = "boxes", "scores"
#: Raw box outputs are clamped to this (exp(6) = 403 strides) before the exponential.
MAX_LOG_DISTANCE = 6.0
#: Cell i of h*w gets -TIE_BREAK * i / (h*w) added before TopK, so that no two cells tie (the
#: zero scores of non-peaks would, and runtimes order ties differently); scores are then clamped
#: at 0, so unused slots read 0 with the same boxes on every target.
TIE_BREAK = 1e-6
DECODE_PREFIX = "decode/"


def decode_spec(height: int, width: int, stride: int, top_k: int) -> dict:
    """What the manifest says about decoding (the graph is rebuilt from it)."""
    return {"inputs": [HEATMAP, BOX], "outputs": [BOXES, SCORES], "stride": stride,
            "top_k": top_k, "image_size": [height, width], "box_encoding": "log_ltrb_stride",
            "peak": "maxpool3x3", "score": "sigmoid"}


def build_decode_model(height: int, width: int, stride: int, top_k: int,
                       opset: int = 18, ir_version: int | None = None) -> onnx.ModelProto:
    """The decode graph for a detector with input ``height``×``width`` and output ``stride``."""
    h, w = height // stride, width // stride
    k = min(top_k, h * w)
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    cx = ((xs.reshape(-1) + 0.5) * stride).astype(np.float32)
    cy = ((ys.reshape(-1) + 0.5) * stride).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.stack([cx, cy, cx, cy], 1), "centres"),  # [h*w, 4]
        numpy_helper.from_array(np.array([-stride, -stride, stride, stride], np.float32),
                                "signed_stride"),
        # 0: the batch dimension copied from the input (any batch decodes)
        numpy_helper.from_array(np.array([0, h * w], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([0, 4, h * w], np.int64), "box_flat_shape"),
        numpy_helper.from_array(np.array([k], np.int64), "k"),
        numpy_helper.from_array(np.array([-1], np.int64), "last_axis"),
        numpy_helper.from_array(np.array([1, 1, 4], np.int64), "four_coords"),
        numpy_helper.from_array(np.array(MAX_LOG_DISTANCE, np.float32), "max_log"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array([width, height, width, height], np.float32), "limits"),
        numpy_helper.from_array(tie_break(h * w)[None, :], "tie_break"),
    ]
    nodes = [
        helper.make_node("Sigmoid", [HEATMAP], ["prob"]),
        helper.make_node("MaxPool", ["prob"], ["pooled"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         strides=[1, 1]),
        helper.make_node("Equal", ["prob", "pooled"], ["is_peak"]),
        helper.make_node("Cast", ["is_peak"], ["peak_mask"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["prob", "peak_mask"], ["peaks"]),
        helper.make_node("Reshape", ["peaks", "flat_shape"], ["peaks_flat"]),
        helper.make_node("Add", ["peaks_flat", "tie_break"], ["ranked"]),
        helper.make_node("TopK", ["ranked", "k"], ["top", "index"], axis=1, largest=1,
                         sorted=1),
        helper.make_node("Max", ["top", "zero"], [SCORES]),
        helper.make_node("Reshape", [BOX, "box_flat_shape"], ["box_flat"]),  # [B,4,hw]
        helper.make_node("Transpose", ["box_flat"], ["box_cells"], perm=[0, 2, 1]),  # [B,hw,4]
        helper.make_node("Unsqueeze", ["index", "last_axis"], ["index_1"]),  # [B,K,1]
        helper.make_node("Expand", ["index_1", "four_coords"], ["index_4"]),  # [B,K,4]
        helper.make_node("GatherElements", ["box_cells", "index_4"], ["box_kt"], axis=1),
        helper.make_node("Min", ["box_kt", "max_log"], ["box_clamped"]),
        helper.make_node("Exp", ["box_clamped"], ["dist"]),
        helper.make_node("Mul", ["dist", "signed_stride"], ["offsets"]),
        helper.make_node("Gather", ["centres", "index"], ["centre_k"], axis=0),  # [1,K,4]
        helper.make_node("Add", ["centre_k", "offsets"], ["raw_boxes"]),
        helper.make_node("Max", ["raw_boxes", "zero"], ["boxes_lo"]),
        helper.make_node("Min", ["boxes_lo", "limits"], [BOXES]),
    ]
    graph = helper.make_graph(
        nodes, "detection_decode",
        [helper.make_tensor_value_info(HEATMAP, TensorProto.FLOAT, ["batch", 1, h, w]),
         helper.make_tensor_value_info(BOX, TensorProto.FLOAT, ["batch", 4, h, w])],
        [helper.make_tensor_value_info(BOXES, TensorProto.FLOAT, ["batch", k, 4]),
         helper.make_tensor_value_info(SCORES, TensorProto.FLOAT, ["batch", k])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="nnfc")
    if ir_version is not None:
        model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model


def tie_break(cells: int) -> np.ndarray:
    """The per-cell offsets that make every cell's rank unique (see ``TIE_BREAK``)."""
    return (-TIE_BREAK * np.arange(cells, dtype=np.float32) / np.float32(cells)).astype(
        np.float32)


def decode_numpy(heatmap: np.ndarray, box: np.ndarray, stride: int,
                 top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """The decode graph's arithmetic in numpy for a batch: boxes [B,K,4], scores [B,K]
    (used by training-time evaluation; the tests check it against the ONNX graph)."""
    B, _, h, w = heatmap.shape
    prob = 1.0 / (1.0 + np.exp(-heatmap[:, 0].astype(np.float32)))
    pad = np.pad(prob, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    pooled = np.max(np.stack([pad[:, i:i + h, j:j + w] for i in range(3) for j in range(3)]), 0)
    peaks = (prob * (prob == pooled)).reshape(B, -1) + tie_break(h * w)[None, :]
    k = min(top_k, h * w)
    index = np.argsort(-peaks, axis=1, kind="stable")[:, :k]
    scores = np.maximum(np.take_along_axis(peaks, index, 1), 0)
    dist = np.exp(np.minimum(box.reshape(B, 4, -1), MAX_LOG_DISTANCE))
    dist = np.take_along_axis(dist, index[:, None, :], 2).transpose(0, 2, 1) * stride
    cx = (index % w + 0.5) * stride
    cy = (index // w + 0.5) * stride
    boxes = np.stack([cx - dist[..., 0], cy - dist[..., 1], cx + dist[..., 2],
                      cy + dist[..., 3]], -1)
    limits = np.array([w * stride, h * stride, w * stride, h * stride], np.float32)
    return np.clip(boxes, 0, limits).astype(np.float32), scores.astype(np.float32)


def join_decode(model: onnx.ModelProto, spec: dict, keep_raw: bool = False) -> onnx.ModelProto:
    """``model`` (raw ``heatmap``/``box`` outputs, gates bound or not) followed by the decode
    graph: outputs ``boxes`` and ``scores`` (and the raw ones with ``keep_raw``)."""
    from onnx import compose

    height, width = spec["image_size"]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
    decode = build_decode_model(height, width, int(spec["stride"]), int(spec["top_k"]),
                                opset=opset, ir_version=model.ir_version)
    decode = compose.add_prefix(decode, DECODE_PREFIX, rename_inputs=False,
                                rename_outputs=False)
    outputs = [o.name for o in model.graph.output]
    missing = {HEATMAP, BOX} - set(outputs)
    if missing:
        raise ValueError(f"the model has no output(s) {sorted(missing)} to decode")
    joined = compose.merge_models(
        model, decode, io_map=[(HEATMAP, HEATMAP), (BOX, BOX)],
        outputs=[BOXES, SCORES] + ([HEATMAP, BOX] if keep_raw else []),
        producer_name=model.producer_name or "nnfc")
    # merge_models lists the default domain once per model; ONNX Runtime's quantization tools
    # refuse a domain listed twice: keep each domain once, at its highest version
    versions: dict[str, int] = {}
    for o in joined.opset_import:
        versions[o.domain] = max(versions.get(o.domain, 0), o.version)
    del joined.opset_import[:]
    joined.opset_import.extend(helper.make_opsetid(d, v) for d, v in versions.items())
    return joined


def manifest_decode_spec(manifest: dict) -> dict | None:
    """The decode spec a bundle's manifest declares on one of its outputs, if any."""
    outputs = manifest.get("outputs") or manifest.get("output") or []
    for out in outputs if isinstance(outputs, list) else [outputs]:
        if isinstance(out, dict) and isinstance(out.get("decode"), dict):
            return out["decode"]
    return None


def deployable(model: onnx.ModelProto, manifest: dict) -> onnx.ModelProto:
    """What a target runs: the network joined to its decode graph when the bundle declares one
    (detection), else the network itself."""
    spec = manifest_decode_spec(manifest)
    return join_decode(model, spec) if spec else model
