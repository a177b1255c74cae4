"""PNG contact sheets of scenes with boxes drawn (people would rather look than read)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np


def draw_detections(image: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                    truth: np.ndarray | None = None, threshold: float = 0.3, scale: int = 2,
                    title: str = ""):
    """A PIL image: ``image`` [3,H,W] in [0,1] enlarged ``scale``×, ground truth in white
    (dashed look: thin), detections with score ≥ ``threshold`` in magenta with their score."""
    from PIL import Image, ImageDraw

    rgb = (np.clip(image.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
    im = Image.fromarray(rgb).resize((rgb.shape[1] * scale, rgb.shape[0] * scale),
                                     Image.NEAREST)
    d = ImageDraw.Draw(im)
    for box in (truth if truth is not None else np.zeros((0, 4))):
        d.rectangle([float(v) * scale for v in box], outline=(255, 255, 255), width=1)
    for box, score in zip(boxes, scores):
        if score >= threshold:
            d.rectangle([float(v) * scale for v in box], outline=(255, 0, 255), width=2)
            d.text((float(box[0]) * scale + 2, float(box[1]) * scale + 1), f"{score:.2f}",
                   fill=(255, 0, 255))
    if title:
        d.rectangle([0, 0, im.width, 12], fill=(0, 0, 0))
        d.text((2, 0), title, fill=(255, 255, 255))
    return im


def contact_sheet(tiles: Sequence, path: str | os.PathLike, columns: int = 4) -> Path:
    """Save PIL images in a grid as one PNG (written atomically)."""
    from PIL import Image

    from nnfc.atomic import atomic_file

    w, h = tiles[0].width, tiles[0].height
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (w * min(columns, len(tiles)), h * rows))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * w, (i // columns) * h))
    path = Path(path)
    with atomic_file(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path


def bundle_detections_png(bundle, tasks: Sequence[Sequence[str]], path: str | os.PathLike,
                          limit: float = 1.0, scenes: int = 2, threshold: float = 0.3,
                          seed: int = 2024) -> Path:
    """For each task: the bundle's generated model at ``limit`` (assembler -> pruned network ->
    decode graph, all in ONNX Runtime) on ``scenes`` test scenes, boxes drawn; one PNG."""
    import onnx
    import onnxruntime as ort

    from nnfc.compiler.assembler_runtime import Assembler
    from nnfc.families import family_from_manifest
    from nnfc.families.attrod.decode import deployable
    from nnfc.passes import apply_gates

    family = family_from_manifest(bundle.manifest)
    supernet = onnx.load(str(bundle.supernet_path))
    assembler = Assembler(bundle.assembler_path)
    tiles = []
    for attrs in tasks:
        task = family.parse_task(attrs)
        gates = {k: v[0] for k, v in assembler.gates(family.encode([task])[0], [limit]).items()}
        model = deployable(apply_gates(supernet, gates), bundle.manifest)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        b = family.test_batch(task, scenes, seed)
        for img, truth in zip(b["image"], b["gt_boxes"]):
            boxes, scores = sess.run(["boxes", "scores"], {"input": img[None]})
            tiles.append(draw_detections(img, boxes[0], scores[0], truth, threshold,
                                         title=f"{','.join(task)} @ {limit:.0%}"))
    return contact_sheet(tiles, path, columns=max(2, scenes * 2))
