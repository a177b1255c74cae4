"""int8 QDQ models with onnxruntime's quantization tools (static, per-channel weights).

:func:`quantize_qdq` runs ``onnxruntime.quantization.quantize_static`` (QDQ format, int8
per-channel weights, MinMax calibration on :mod:`nnfc.precision.calibration`'s samples) over the
network's nodes only: what follows the network's raw outputs (a detector's decode graph:
peak picking, TopK, box arithmetic) stays float. :func:`sensitivity` ranks the quantized
nodes by how much quantization noise each adds (the fall of the signal-to-quantization-noise
ratio from a node's inputs to its output, float model against int8 model on calibration
inputs), for the accuracy control that returns the worst ones to float.

ORT's quantizer refuses a model whose ``opset_import`` names a domain twice and addresses
nodes by name: :func:`prepared` makes both hold on a copy.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import onnx

from nnfc.errors import NnfcError
from nnfc.precision.calibration import Calibration

#: activations: uint8 (asymmetric) runs the fastest x86 kernels (u8s8, VNNI); TensorRT needs
#: int8 with zero point 0 (``symmetric=True``)
_LOGGER = "root"


def prepared(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with one ``opset_import`` per domain (the highest version listed) and a name on
    every node (``<op>_<index>`` where it had none)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    versions: dict[str, int] = {}
    for entry in out.opset_import:
        domain = "" if entry.domain == "ai.onnx" else entry.domain
        versions[domain] = max(versions.get(domain, 0), entry.version)
    del out.opset_import[:]
    out.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in versions.items())
    used = {n.name for n in out.graph.node if n.name}
    for i, node in enumerate(out.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)
    return out


def network_nodes(model: onnx.ModelProto, raw_outputs: Iterable[str]) -> list[str]:
    """Names of the nodes the tensors ``raw_outputs`` depend on (the network; not what a
    deployed graph adds after it). Every node when none of ``raw_outputs`` is in the graph."""
    producer = {o: n for n in model.graph.node for o in n.output}
    todo = [t for t in raw_outputs if t in producer]
    if not todo:
        return [n.name for n in model.graph.node]
    seen: set[str] = set()
    names: list[str] = []
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        names.append(node.name)
        todo.extend(node.input)
    order = {n.name: i for i, n in enumerate(model.graph.node)}
    return sorted(names, key=order.__getitem__)


def output_producers(model: onnx.ModelProto, outputs: Iterable[str]) -> set[str]:
    """Names of the nodes that write the tensors ``outputs``."""
    wanted = set(outputs)
    return {n.name for n in model.graph.node if wanted & set(n.output)}


def _reader(calibration: Calibration):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(calibration.feeds())

        def get_next(self):
            return next(self._it, None)

    return Reader()


def quantize_qdq(model: onnx.ModelProto, calibration: Calibration, nodes: Sequence[str],
                 exclude: Iterable[str] = (), symmetric: bool = False) -> onnx.ModelProto:
    """``model`` (from :func:`prepared`) with ``nodes`` minus ``exclude`` quantized: QDQ,
    int8 per-channel weights, uint8 activations (int8 with zero point 0 when ``symmetric``),
    MinMax ranges from ``calibration``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    keep_float = set(exclude)
    chosen = [n for n in nodes if n not in keep_float]
    if not chosen:
        return model
    with tempfile.TemporaryDirectory(prefix="nnfc-int8-") as tmp:
        src, out = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))  # ORT rewrites a given proto to external data in place
        level = logging.getLogger(_LOGGER).level
        logging.getLogger(_LOGGER).setLevel(logging.ERROR)  # "consider pre-processing" noise
        try:
            quantize_static(str(src), str(out), _reader(calibration),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_quantize=chosen,
                            extra_options={"ActivationSymmetric": symmetric,
                                           "WeightSymmetric": True})
        except Exception as exc:  # ORT's quantizer raises plain exceptions of many kinds
            raise NnfcError(f"onnxruntime could not quantize the model to int8: "
                            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                            ) from exc
        finally:
            logging.getLogger(_LOGGER).setLevel(level)
        return onnx.load(str(out))


def sensitivity(float_model: onnx.ModelProto, qdq_model: onnx.ModelProto,
                calibration: Calibration, nodes: Sequence[str], samples: int = 8
                ) -> list[tuple[tuple[str, ...], float]]:
    """``(nodes, dB)`` for each of ``nodes`` (with the nodes int8 fused into it): how far the
    signal-to-quantization-noise ratio of its output (float model against ``qdq_model``, on
    ``samples`` calibration inputs) falls below its inputs' ratio, i.e. the noise the node's
    own quantization adds; the noisiest first (the SQNR onnxruntime's ``qdq_loss_debug`` reports per tensor, taken per node)."""
    from nnfc.targets.onnxruntime import open_reference_session
    by_name = {n.name: n for n in float_model.graph.node}
    tensors = sorted({o for n in nodes if n in by_name for o in by_name[n].output if o})
    feeds = [f for f, _ in zip(calibration.feeds(), range(samples))]
    # the int8 model's value of a tensor is what its DequantizeLinear gives back (a Relu
    # folded into the quantization range leaves the tensor itself unclipped)
    made = {o for n in qdq_model.graph.node for o in n.output}
    in_qdq = {t: t + _DQ if t + _DQ in made else t for t in tensors}
    acts = []
    for m, names in ((float_model, {t: t for t in tensors}), (qdq_model, in_qdq)):
        session = open_reference_session(
            _exposing(m, list(names.values())).SerializeToString(), threads=1)
        have = {o.name for o in session.get_outputs()}
        wanted = {t: n for t, n in names.items() if n in have}
        runs = [session.run(list(wanted.values()), f) for f in feeds]
        acts.append({t: np.concatenate([r[i].ravel() for r in runs])
                     for i, t in enumerate(wanted)})
    fl, qd = acts
    sqnr = {t: _sqnr(fl[t], qd[t]) for t in tensors if t in fl and t in qd}
    producer = {o: n for n in float_model.graph.node for o in n.output}
    ranked = []
    for name in nodes:
        node = by_name.get(name)
        outs = [sqnr[o] for o in node.output if o in sqnr] if node is not None else []
        if not outs:
            continue
        group, in_db = _fused_inputs(node, sqnr, producer)
        ranked.append((tuple(g for g in group if g in by_name), in_db - min(outs)))
    return sorted(ranked, key=lambda kv: -kv[1])


def _fused_inputs(node, sqnr: dict[str, float], producer: dict) -> tuple[list[str], float]:
    """The nodes the int8 model fused into ``node`` (inputs it no longer has, e.g. a Conv
    whose Relu became its output's range), ``node`` last, and the lowest SQNR of what they
    read."""
    group, lowest, todo = [node.name], _CLEAN_DB, list(node.input)
    while todo:
        tensor = todo.pop()
        if tensor in sqnr:
            lowest = min(lowest, sqnr[tensor])
        elif tensor in producer and producer[tensor].name not in group:
            group.insert(0, producer[tensor].name)
            todo.extend(producer[tensor].input)
    return group, lowest


_DQ = "_DequantizeLinear_Output"  # onnxruntime's name of a quantized tensor's float copy
#: SQNR of a tensor without quantization noise (a graph input), and the cap of a ratio
_CLEAN_DB = 120.0


def _sqnr(signal: np.ndarray, other: np.ndarray) -> float:
    noise = float(np.mean((signal.astype(np.float64) - other) ** 2))
    power = float(np.mean(signal.astype(np.float64) ** 2))
    if noise <= power * 10 ** (-_CLEAN_DB / 10):
        return _CLEAN_DB
    return 10.0 * float(np.log10(max(power, 1e-30) / noise))


def _exposing(model: onnx.ModelProto, tensors: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` with ``tensors`` (those it computes) added to its outputs."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    made = {o for n in out.graph.node for o in n.output}
    have = {o.name for o in out.graph.output}
    out.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                            for t in tensors if t in made and t not in have)
    return out
