"""Full-integer TFLite from onnx2tf's saved model (runs inside the converter worker, with
tensorflow): int8 weights and activations, calibrated on nnfc's samples (nothing downloaded),
the layers that write the network's raw outputs and everything after them (a detector's
decode graph: peak picking, TopK, box arithmetic) kept float by TensorFlow Lite's selective
quantization (``tf.lite.experimental.QuantizationDebugger`` with ``denylisted_nodes``).

Why those stay float: with them int8 the default factory's red,car subnet loses 2.4 points of
mAP@0.5 on LiteRT (0.903 against 0.926: int8 scores tie in TopK); with them float 0.2 points.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


#: XNNPACK refuses an int8 convolution whose requantization scale (input scale x weight scale
#: / output scale) falls below 2**-32: a pruned subnet's output channel whose weights are all
#: but zero does that (white,person: weight scale 4e-9). Such convolutions stay float.
TINY_CHANNEL = 1e-5


def near_zero_channel_convs(interp, ops, names: dict[int, str]) -> list[str]:
    """Output names of the float model's convolutions with an output channel whose largest
    |weight| is below ``TINY_CHANNEL`` times the layer's largest."""
    out = []
    for op in ops:
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        try:
            w = np.asarray(interp.get_tensor(op["inputs"][1]), np.float32)
        except ValueError:  # not a constant
            continue
        axis = 3 if op["op_name"] == "DEPTHWISE_CONV_2D" else 0
        per = np.max(np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)), axis=1)
        if per.size and per.min() < TINY_CHANNEL * max(float(per.max()), 1e-30):
            out += [names[t] for t in op["outputs"] if t in names]
    return out


def _float_graph(tf, saved_model: Path):
    """The saved model as float TFLite, read back: op list, tensor names and shapes, signature
    output names (the names TensorFlow Lite's quantizer uses for the same model)."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_content=tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model)).convert())
    details = interp.get_tensor_details()
    names = {t["index"]: t["name"] for t in details}
    shapes = {t["index"]: [int(d) for d in t["shape"]] for t in details}
    outputs = list(interp.get_signature_runner().get_output_details())
    interp.allocate_tensors()
    ops = interp._get_ops_details()
    return ops, names, shapes, outputs, near_zero_channel_convs(interp, ops, names)


def denylist(ops, names: dict[int, str], shapes: dict[int, list[int]],
             raw_shapes: list[list[int]]) -> list[str]:
    """Tensor names of the ops that write the network's raw outputs and of every op downstream
    of them. A raw output is found as the first op (in execution order) writing a tensor of
    its shape, in the ONNX (NCHW) or the TFLite (NHWC) layout: the network's earlier tensors
    have more channels, what follows it (a decode graph) comes later."""
    wanted = []
    for shape in raw_shapes:
        forms = [list(shape)] + ([[shape[0], *shape[2:], shape[1]]] if len(shape) == 4 else [])
        wanted.append(forms)
    keep: set[int] = set()
    tainted: set[int] = set()
    for forms in wanted:
        for i, op in enumerate(ops):
            if any(shapes.get(t) in forms for t in op["outputs"]):
                keep.add(i)
                tainted.update(op["outputs"])
                break
    for i, op in enumerate(ops):  # ops are in execution order
        if i in keep or tainted & set(op["inputs"]):
            keep.add(i)
            tainted.update(op["outputs"])
    return [names[t] for i in sorted(keep) for t in ops[i]["outputs"] if t in names]


def signature_names(onnx_outputs: list[str], signature: list[str]) -> dict[str, str]:
    """ONNX output name -> the saved model's signature output name (onnx2tf's saved model
    names them ``output_<i>`` in the ONNX order where it does not keep the names)."""
    return {name: name if name in signature else f"output_{i}"
            for i, name in enumerate(onnx_outputs)}


def noisiest_layers(debugger, count: int) -> list[str]:
    """The ``count`` quantized tensors with the largest RMSE over their quantization scale
    (TensorFlow Lite's QuantizationDebugger statistics on the debug samples: the ranking its
    selective-quantization guide uses), noisiest first."""
    import csv
    import io as _io
    if count <= 0:
        return []
    debugger.run()
    buf = _io.StringIO()
    debugger.layer_statistics_dump(buf)
    ranked = []
    for row in csv.DictReader(_io.StringIO(buf.getvalue())):
        try:
            scale, mse = float(row["scale"]), float(row["mean_squared_error"])
        except (KeyError, ValueError):
            continue
        if scale > 0 and np.isfinite(mse):
            ranked.append((np.sqrt(mse) / scale, row["tensor_name"]))
    return [name for _, name in sorted(ranked, reverse=True)[:count]]


def int8_model(saved_model: Path, calibration: np.ndarray, onnx_outputs: list[str],
               raw_shapes: list[list[int]], io: str = "float", keep_float: int = 0
               ) -> tuple[bytes, int, dict[str, str]]:
    """Full-integer TFLite bytes (``io``: "float" keeps float32 inputs/outputs, "int8" makes
    them int8), how many tensors were kept float and the signature name of each ONNX output.
    ``calibration``: NHWC float32 samples; ``keep_float``: also keep that many of the noisiest
    layers float (:func:`noisiest_layers`; the accuracy control's fallback)."""
    import tensorflow as tf
    ops, names, shapes, outputs, tiny = _float_graph(tf, saved_model)
    aliases = signature_names(onnx_outputs, outputs)
    deny = denylist(ops, names, shapes, raw_shapes)
    deny += [n for n in tiny if n not in deny]

    def samples():
        for i in range(len(calibration)):
            yield [calibration[i:i + 1]]

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                           tf.lite.OpsSet.TFLITE_BUILTINS]
    if io == "int8":
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    def debugger(denied):
        return tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=lambda: (s for _, s in zip(range(4), samples())),
            debug_options=tf.lite.experimental.QuantizationDebugOptions(
                denylisted_nodes=denied))

    if keep_float:
        deny = deny + [n for n in noisiest_layers(debugger(deny), keep_float) if n not in deny]
    return debugger(deny).get_nondebug_quantized_model(), len(deny), aliases


def onnx2tf_options(model, calibration_npy: str) -> dict:
    """What onnx2tf needs to build a saved model fit for integer quantization: its int8 mode
    (e.g. a MaxPool pads with 0, not the float minimum, which int8 kernels refuse) with nnfc's
    calibration samples for every image input (``-cind``; nothing downloaded)."""
    first = model.graph.input[0]
    channels = first.type.tensor_type.shape.dim[1].dim_value or 1
    return {"output_integer_quantized_tflite": True, "quant_type": "per-channel",
            "custom_input_op_name_np_data_path": [[first.name, calibration_npy,
                                                   [0.0] * channels, [1.0] * channels]]}
