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
