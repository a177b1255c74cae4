"""A fixed reference model measured in every round, so that a run can be compared with rounds
saved at another time or on another machine: the candidate's latency is taken relative to the
reference's in the same round, which cancels how fast (or how loaded) the machine was then.

The reference is a small convolutional network built here (fixed shapes, weights from a fixed
seed), run with ONNX Runtime on the CPU with one thread. Its version is saved with the rounds;
runs measured with another reference version are not normalized against each other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VERSION = "nnfc-reference-1"


def reference_model() -> onnx.ModelProto:
    """conv3x3 8->32 + ReLU, conv3x3 32->32 + ReLU, global average pool, linear 32->10 on a
    1x8x32x32 input (float32, opset 17)."""
    rng = np.random.default_rng(20261125)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)

    inits = [weight("w1", 32, 8, 3, 3), weight("b1", 32), weight("w2", 32, 32, 3, 3),
             weight("b2", 32), weight("w3", 10, 32), weight("b3", 10)]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "nnfc_reference", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                [1, 8, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             producer_name=VERSION)


def write_reference(directory: str | Path) -> Path:
    path = Path(directory) / "nnfc-reference.onnx"
    onnx.save_model(reference_model(), str(path))
    return path


def normalized(rounds: list[float], reference_rounds: list[float]) -> list[float]:
    """Each round's latency over the reference's in the same round."""
    return [r / ref for r, ref in zip(rounds, reference_rounds)]
