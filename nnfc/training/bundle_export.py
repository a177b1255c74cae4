"""Write a trained factory (supernet + assembler) as a bundle: ONNX + JSON + safetensors.

``supernet.onnx`` (gate inputs, from export.export_supernet), ``assembler.onnx`` (task [B,A],
limit [B] -> ``gate.<layer>`` [B,size] of 0/1 float, positional encoding and threshold inside the
graph, dynamic batch), ``supernet.safetensors`` / ``assembler.safetensors`` and the manifest.
Each network's weights are stored once: the ONNX file points into its safetensors file
(:mod:`nnfc.bundle_weights`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import onnx
import torch

from nnfc.bundle import ASSEMBLER, SUPERNET, WEIGHTS, Bundle, write_bundle
from nnfc.bundle_weights import store_once
from nnfc.training.assembler import Assembler, _ExportAssembler
from nnfc.families.base import TaskFamily
from nnfc.training.export import (DEFAULT_OPSET, INPUT_NAME, batch_dim, export_dynamo,
                                  export_supernet, save_model_atomic)
from nnfc.training.gating import GatedSupernet

ASSEMBLER_WEIGHTS = "assembler.safetensors"
TASK_INPUT, LIMIT_INPUT = "task", "limit"

logging.getLogger("torch.onnx").setLevel(logging.ERROR)


def export_assembler(assembler: Assembler, path: str | os.PathLike,
                     opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Export the assembler (eval mode, discrete gates) with a dynamic batch dimension."""
    example = (torch.zeros(4, assembler.num_attributes), torch.linspace(0.1, 1.0, 4))
    batch = batch_dim(65536)
    model = export_dynamo(_ExportAssembler(assembler), example, ({0: batch}, {0: batch}),
                          [TASK_INPUT, LIMIT_INPUT],
                          [f"gate.{g.name}" for g in assembler.layers], opset)
    save_model_atomic(model, path)
    return model


def _numpy_state(module: torch.nn.Module) -> dict[str, Any]:
    return {k: v.detach().cpu().contiguous().numpy() for k, v in module.state_dict().items()}


def export_factory(root: str | os.PathLike, supernet: GatedSupernet, assembler: Assembler,
                   family: TaskFamily, *, training: dict[str, Any],
                   opset: int = DEFAULT_OPSET, force: bool = False,
                   inputs: Sequence[str | os.PathLike] = ()) -> Bundle:
    """Export both networks and write the bundle at ``root`` atomically (``force``/``inputs``:
    see :func:`nnfc.outputs.output_dir`). The manifest's ``output`` is the family's
    ``output_spec()`` (the supernet's graph outputs, in order) and ``task_family`` its
    ``manifest_info()``."""
    supernet, assembler = supernet.cpu(), assembler.cpu()
    image_shape = family.image_shape
    task_info = family.manifest_info()
    spec = family.output_spec()
    with tempfile.TemporaryDirectory(prefix="nnfc-export-") as tmp:
        tmp = Path(tmp)
        model = export_supernet(supernet, tmp / SUPERNET, (1, *image_shape), opset=opset)
        names = [o.name for o in model.graph.output]
        if names != [o["name"] for o in spec]:
            raise ValueError(f"the supernet's outputs {names} differ from the family's output "
                             f"spec {[o['name'] for o in spec]}")
        export_assembler(assembler, tmp / ASSEMBLER, opset=opset)
        store_once(tmp / SUPERNET, _numpy_state(supernet), tmp / WEIGHTS)
        store_once(tmp / ASSEMBLER, _numpy_state(assembler), tmp / ASSEMBLER_WEIGHTS)
        layers = supernet.gate_layers()
        manifest = {
            "backbone": {"family": supernet.family, "config": supernet.config},
            "input": {"name": INPUT_NAME, "shape": [1, *image_shape], "dtype": "float32",
                      "preprocessing": task_info.get("preprocessing", "")},
            "output": spec,
            "attributes": list(family.attributes),
            "tasks": {"seen": [list(t) for t in family.seen_tasks],
                      "unseen": [list(t) for t in family.unseen_tasks]},
            "task_family": task_info,
            "gate_layers": [g.to_json() for g in layers],
            "limit_encoding": {
                "type": "sinusoidal", "dim": assembler.limit_dim,
                "position": f"{assembler.limit_scale:g} * limit", "appends_raw_limit": True,
                "in_graph": True,
                "assembler_inputs": {TASK_INPUT: "float32 [B, A] multi-hot over attributes",
                                     LIMIT_INPUT: "float32 [B], fraction in (0, 1]"},
                "assembler_outputs": "gate.<layer> float32 [B, size] of 0/1",
                "activation_ratio": "sum of active gate entries over all gate layers / "
                                    "sum of their sizes",
            },
            "assembler": {"config": assembler.config},
            "training": training,
        }
        files = {SUPERNET: tmp / SUPERNET, ASSEMBLER: tmp / ASSEMBLER, WEIGHTS: tmp / WEIGHTS,
                 ASSEMBLER_WEIGHTS: tmp / ASSEMBLER_WEIGHTS}
        return write_bundle(root, manifest, files, force=force, inputs=inputs)
