"""Export a gated supernet to ONNX with one float32 graph input per gate layer.

Graph inputs: ``input`` (dynamic batch) then ``gate.<layer>`` of shape ``[size]`` in gate order;
output ``logits``. Uses torch's dynamo exporter (opset >= 18), in eval mode.
"""

from __future__ import annotations

import logging
import os
import warnings

import onnx
import torch
from torch import nn

from nnfc.onnx_io import save_onnx
from nnfc.training.gating import GatedSupernet

#: kept for callers of the earlier name
save_model_atomic = save_onnx

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 18

# The exporter logs a warning per missing torchvision op; nnfc has none.
logging.getLogger("torch.onnx").setLevel(logging.ERROR)


class _GateInputs(nn.Module):
    """Adapter: positional gate tensors -> the supernet's gate dict."""

    def __init__(self, net: GatedSupernet):
        super().__init__()
        self.net = net
        self.names = [g.name for g in net.gate_layers()]

    def forward(self, x: torch.Tensor, *gates: torch.Tensor) -> torch.Tensor:
        return self.net(x, dict(zip(self.names, gates)))


def export_supernet(net: GatedSupernet, path: str | os.PathLike, input_shape: tuple[int, ...],
                    opset: int = DEFAULT_OPSET, dynamic_batch: bool = True,
                    output_names: list[str] | None = None) -> onnx.ModelProto:
    """Export ``net`` (eval mode) to ``path`` atomically and return the ONNX model.

    ``input_shape`` includes the batch dimension, e.g. ``(1, 3, 32, 32)``; ``output_names``
    name the outputs in the order the net returns them (default: one ``logits``).
    """
    layers = net.gate_layers()
    was_training = net.training
    net.eval()
    try:
        shape = tuple(input_shape)
        if dynamic_batch and shape[0] == 1:
            shape = (2, *shape[1:])  # an example batch of 1 makes torch.export specialize it
        example = (torch.randn(*shape), *[torch.ones(g.size) for g in layers])
        dynamic = None
        if dynamic_batch:
            dynamic = ({0: torch.export.Dim("batch", min=1, max=4096)}, (None,) * len(layers))
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # torch.export first: torch.onnx's own wrapper turns the varargs' dynamic-shape
            # tuple into a list and then rejects it.
            exported = torch.export.export(_GateInputs(net), example, dynamic_shapes=dynamic)
            program = torch.onnx.export(
                exported, dynamo=True, opset_version=opset,
                input_names=[INPUT_NAME] + [g.input_name for g in layers],
                output_names=output_names or [OUTPUT_NAME], verbose=False, optimize=True,
            )
        model = program.model_proto
    finally:
        net.train(was_training)
    save_onnx(model, path)
    return model
