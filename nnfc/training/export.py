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
from typing import Any, Sequence

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


def export_dynamo(module: nn.Module, example: tuple[torch.Tensor, ...], dynamic_shapes: Any,
                  input_names: Sequence[str], output_names: Sequence[str],
                  opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """``module`` (in eval mode; every submodule's mode restored after) through ``torch.export`` and torch's dynamo ONNX
    exporter, optimized. ``torch.export`` runs first because torch.onnx's own wrapper turns a
    varargs dynamic-shape tuple into a list and then rejects it."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            exported = torch.export.export(module, example, dynamic_shapes=dynamic_shapes)
            program = torch.onnx.export(exported, dynamo=True, opset_version=opset,
                                        input_names=list(input_names),
                                        output_names=list(output_names), verbose=False,
                                        optimize=True)
        return program.model_proto
    finally:
        for m, training in modes:
            m.training = training


def batch_dim(max_batch: int = 4096) -> Any:
    """A dynamic batch dimension for :func:`export_dynamo`'s ``dynamic_shapes``."""
    return torch.export.Dim("batch", min=1, max=max_batch)


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


#: the exported supernet's doc_string: marks a file ``nnfc export --preset --out`` may replace
EXPORT_MARKER = "exported by nnfc export"


def export_supernet(net: GatedSupernet, path: str | os.PathLike, input_shape: tuple[int, ...],
                    opset: int = DEFAULT_OPSET, dynamic_batch: bool = True) -> onnx.ModelProto:
    """Export ``net`` (eval mode) to ``path`` atomically and return the ONNX model.

    ``input_shape`` includes the batch dimension, e.g. ``(1, 3, 32, 32)``.
    """
    layers = net.gate_layers()
    shape = tuple(input_shape)
    if dynamic_batch and shape[0] == 1:
        shape = (2, *shape[1:])  # an example batch of 1 makes torch.export specialize it
    example = (torch.randn(*shape), *[torch.ones(g.size) for g in layers])
    was_training = net.training
    net.eval()
    try:
        outputs = output_names(net, example[0])
    finally:
        net.train(was_training)
    dynamic = ({0: batch_dim()}, (None,) * len(layers)) if dynamic_batch else None
    model = export_dynamo(_GateInputs(net), example, dynamic,
                          [INPUT_NAME] + [g.input_name for g in layers], outputs, opset)
    model.doc_string = EXPORT_MARKER  # lets `nnfc export --out` recognise and replace its file
    save_onnx(model, path)
    return model
