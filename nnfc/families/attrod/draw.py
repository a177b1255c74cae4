"""PNG contact sheets of scenes with boxes drawn (people would rather look than read)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np


#: ground truth and detections in two colours of Okabe & Ito's colour-blind-safe palette (sky
#: blue, orange), told apart by line style too: truth dashed and thin, detections solid and thick
TRUTH_RGB = (86, 180, 233)
DETECTION_RGB = (230, 159, 0)
TITLE_PX, LABEL_PX = 15, 14  # font sizes: readable when the PNG is viewed at 100 %


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _dashed_rectangle(d, box, fill, width: int = 2, dash: int = 6) -> None:
    x0, y0, x1, y1 = box
    for (a0, b0, a1, b1) in ((x0, y0, x1, y0), (x1, y0, x1, y1), (x1, y1, x0, y1),
                             (x0, y1, x0, y0)):
        length = max(abs(a1 - a0), abs(b1 - b0))
        steps = max(1, int(length // dash))
        for k in range(0, steps, 2):
            t0, t1 = k / steps, min(1.0, (k + 1) / steps)
            d.line([a0 + (a1 - a0) * t0, b0 + (b1 - b0) * t0, a0 + (a1 - a0) * t1,
                    b0 + (b1 - b0) * t1], fill=fill, width=width)


def draw_detections(image: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                    truth: np.ndarray | None = None, threshold: float = 0.3, scale: int = 3,
                    title: str = ""):
    """A PIL image: ``image`` [3,H,W] in [0,1] enlarged ``scale``×, ground truth dashed in sky
    blue, detections with score ≥ ``threshold`` solid in orange with their score on a label
    (see :func:`legend` for the key), ``title`` in a bar above."""
    from PIL import Image, ImageDraw

    rgb = (np.clip(image.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
    im = Image.fromarray(rgb).resize((rgb.shape[1] * scale, rgb.shape[0] * scale),
                                     Image.NEAREST)
    d = ImageDraw.Draw(im)
    font = _font(LABEL_PX)
    for box, score in zip(boxes, scores):
        if score >= threshold:
            x0, y0, x1, y1 = [float(v) * scale for v in box]
            d.rectangle([x0, y0, x1, y1], outline=DETECTION_RGB, width=3)
            text = f"{score:.2f}"
            l, t, r, b = d.textbbox((0, 0), text, font=font)
            ty = y0 - (b - t) - 6 if y0 - (b - t) - 6 >= 0 else y0 + 3
            d.rectangle([x0, ty, x0 + (r - l) + 6, ty + (b - t) + 6], fill=DETECTION_RGB)
            d.text((x0 + 3 - l, ty + 3 - t), text, fill=(0, 0, 0), font=font)
    for box in (truth if truth is not None else np.zeros((0, 4))):  # on top: both stay visible
        _dashed_rectangle(d, [float(v) * scale for v in box], TRUTH_RGB, width=3)
    if not title:
        return im
    tfont = _font(TITLE_PX)
    bar = TITLE_PX + 10
    out = Image.new("RGB", (im.width, im.height + bar), (0, 0, 0))
    out.paste(im, (0, bar))
    ImageDraw.Draw(out).text((5, 4), title, fill=(255, 255, 255), font=tfont)
    return out


def legend(width: int, threshold: float = 0.3):
    """A white strip saying which box is which (ground truth vs detections and their score)."""
    from PIL import Image, ImageDraw

    font = _font(LABEL_PX + 1)
    im = Image.new("RGB", (width, 34), (255, 255, 255))
    d = ImageDraw.Draw(im)
    _dashed_rectangle(d, [10, 8, 50, 26], TRUTH_RGB, width=3)
    d.text((58, 8), "ground truth (dashed)", fill=(0, 0, 0), font=font)
    x = 58 + d.textlength("ground truth (dashed)", font=font) + 30
    d.rectangle([x, 8, x + 40, 26], outline=DETECTION_RGB, width=3)
    d.text((x + 48, 8), f"detection, label = score (shown when >= {threshold:.2f})",
           fill=(0, 0, 0), font=font)
    return im


def contact_sheet(tiles: Sequence, path: str | os.PathLike, columns: int = 4,
                  threshold: float | None = 0.3) -> Path:
    """Save PIL images in a grid as one PNG (written atomically), with the box legend below
    (``threshold`` None: no legend)."""
    from PIL import Image

    from nnfc.atomic import atomic_file

    w, h = tiles[0].width, tiles[0].height
    rows = -(-len(tiles) // columns)
    width = w * min(columns, len(tiles))
    key = legend(width, threshold) if threshold is not None else None
    sheet = Image.new("RGB", (width, h * rows + (key.height if key else 0)), (255, 255, 255))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * w, (i // columns) * h))
    if key is not None:
        sheet.paste(key, (0, h * rows))
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
    return contact_sheet(tiles, path, columns=max(2, scenes * 2), threshold=threshold)
