"""Export a gated supernet to ONNX with one float32 graph input per gate layer.

Graph inputs: ``input`` (dynamic batch) then ``gate.<layer>`` of shape ``[size]`` in gate order.
Graph outputs: a model returning a dict (a task family's heads) gives one named output per entry, in
the dict's order (the family's ``output_spec``); a plain tensor gives one output ``output``.
Uses torch's dynamo exporter (opset >= 18), in eval mode.
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
#: the output of a network returning one tensor (a backbone preset's classifier)
OUTPUT_NAME = "output"
DEFAULT_OPSET = 18

# The exporter logs a warning per missing torchvision op; nnfc has none.
logging.getLogger("torch.onnx").setLevel(logging.ERROR)


class _GateInputs(nn.Module):
    """Adapter: positional gate tensors -> the supernet's gate dict."""

    def __init__(self, net: GatedSupernet):
        super().__init__()
        self.net = net
        self.names = [g.name for g in net.gate_layers()]

    def forward(self, x: torch.Tensor, *gates: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(x, dict(zip(self.names, gates)))
        return tuple(out.values()) if isinstance(out, dict) else (out,)


def output_names(net: GatedSupernet, example: torch.Tensor) -> list[str]:
    """The graph output names of ``net``: its output dict's keys, or ``[OUTPUT_NAME]``."""
    with torch.no_grad():
        out = net(example[:1] if example.shape[0] > 1 else example, None)
    return list(out) if isinstance(out, dict) else [OUTPUT_NAME]


def export_supernet(net: GatedSupernet, path: str | os.PathLike, input_shape: tuple[int, ...],
                    opset: int = DEFAULT_OPSET, dynamic_batch: bool = True) -> onnx.ModelProto:
    """Export ``net`` (eval mode) to ``path`` atomically and return the ONNX model.

    ``input_shape`` includes the batch dimension, e.g. ``(1, 3, 32, 32)``.
    """
    layers = net.gate_layers()
    was_training = net.training
    net.eval()
    try:
        shape = tuple(input_shape)
        if dynamic_batch and shape[0] == 1:
            shape = (2, *shape[1:])  # an example batch of 1 makes torch.export specialize it
        example = (torch.randn(*shape), *[torch.ones(g.size) for g in layers])
        outputs = output_names(net, example[0])
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
                output_names=outputs, verbose=False, optimize=True,
            )
        model = program.model_proto
    finally:
        net.train(was_training)
    save_onnx(model, path)
    return model
