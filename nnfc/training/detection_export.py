"""Write a trained AttrOD factory (gated detector + assembler) as a bundle.

The files of every bundle (``supernet.onnx`` with gate inputs and the raw ``heatmap`` / ``box``
outputs, ``assembler.onnx``, safetensors weights); the manifest's ``outputs`` list is the family's
output spec (with the decode spec that targets use to join the decode graph) and ``task_family``
the family's manifest section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nnfc.bundle import Bundle
from nnfc.training.assembler import Assembler
from nnfc.training.bundle_export import export_factory
from nnfc.training.detection import GatedDetector
from nnfc.training.export import DEFAULT_OPSET


def export_detection_factory(root: str | Path, det: GatedDetector, assembler: Assembler, family,
                             training: dict[str, Any], opset: int = DEFAULT_OPSET) -> Bundle:
    return export_factory(root, det.eval(), assembler.eval(), image_shape=family.image_shape,
                          attributes=family.attributes, seen=family.seen_tasks,
                          unseen=family.unseen_tasks, task_info=family.manifest_info(),
                          training=training, opset=opset, outputs=family.output_spec())
