"""Write a trained AttrOD factory (gated detector + assembler) as a bundle.

Same files as a classification bundle (``supernet.onnx`` with gate inputs and the raw ``heatmap``
/ ``box`` outputs, ``assembler.onnx``, safetensors weights); the manifest's ``outputs`` list is the
family's output spec (with the decode spec that targets use to join the decode graph) and
``task_family`` is the family's manifest section.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from nnfc.bundle import ASSEMBLER, SUPERNET, WEIGHTS, Bundle, write_bundle
from nnfc.training.assembler import Assembler
from nnfc.training.bundle_export import ASSEMBLER_WEIGHTS, LIMIT_INPUT, TASK_INPUT, export_assembler
from nnfc.training.detection import GatedDetector
from nnfc.training.export import DEFAULT_OPSET, INPUT_NAME, export_supernet


def export_detection_factory(root: str | Path, det: GatedDetector, assembler: Assembler, family,
                             training: dict[str, Any], opset: int = DEFAULT_OPSET) -> Bundle:
    det, assembler = det.cpu().eval(), assembler.cpu().eval()
    spec = family.output_spec()
    with tempfile.TemporaryDirectory(prefix="nnfc-export-") as tmp:
        tmp = Path(tmp)
        export_supernet(det, tmp / SUPERNET, (1, *family.image_shape), opset=opset,
                        output_names=[o["name"] for o in spec])
        export_assembler(assembler, tmp / ASSEMBLER, opset=opset)
        save_file({k: v.detach().contiguous() for k, v in det.state_dict().items()},
                  str(tmp / WEIGHTS))
        save_file({k: v.detach().contiguous() for k, v in assembler.state_dict().items()},
                  str(tmp / ASSEMBLER_WEIGHTS))
        info = family.manifest_info()
        manifest = {
            "backbone": {"family": det.family, "config": det.config},
            "input": {"name": INPUT_NAME, "shape": [1, *family.image_shape], "dtype": "float32",
                      "preprocessing": info.get("preprocessing", "")},
            "output": spec[0],
            "outputs": spec,
            "attributes": list(family.attributes),
            "tasks": {"seen": [list(t) for t in family.seen_tasks],
                      "unseen": [list(t) for t in family.unseen_tasks]},
            "task_family": info,
            "gate_layers": [g.to_json() for g in det.gate_layers()],
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
        return write_bundle(root, manifest, files)
