"""COCO-style mAP@0.5 of one task's detections (faster-coco-eval, the COCO protocol in C++)."""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Sequence

import numpy as np


def map50(gt_boxes: Sequence[np.ndarray], gt_crowd: Sequence[np.ndarray],
          det_boxes: Sequence[np.ndarray], det_scores: Sequence[np.ndarray]) -> float:
    """AP at IoU 0.5 (COCO's 101-point interpolation, up to 100 detections per image) of one
    class over a set of images. Boxes are x0, y0, x1, y1; crowd boxes are COCO "ignore" regions.
    No ground truth at all gives 0.0."""
    from faster_coco_eval import COCO, COCOeval_faster

    images, anns, dets = [], [], []
    for i, (g, c, d, s) in enumerate(zip(gt_boxes, gt_crowd, det_boxes, det_scores)):
        images.append({"id": i + 1, "width": 1, "height": 1})
        for box, crowd in zip(np.asarray(g).reshape(-1, 4), np.asarray(c).reshape(-1)):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1,
                         "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h,
                         "iscrowd": int(crowd)})
        for box, score in zip(np.asarray(d).reshape(-1, 4), np.asarray(s).reshape(-1)):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            if score > 0 and w > 0 and h > 0:
                dets.append({"image_id": i + 1, "category_id": 1,
                             "bbox": [float(box[0]), float(box[1]), w, h],
                             "score": float(score)})
    if not any(not a["iscrowd"] for a in anns):
        return 0.0
    quiet = logging.getLogger("faster_coco_eval")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO({"images": images, "annotations": anns,
                       "categories": [{"id": 1, "name": "object"}]})
            if not dets:
                return 0.0
            dt = gt.loadRes(dets)
            ev = COCOeval_faster(gt, dt, iouType="bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
    finally:
        quiet.setLevel(level)
    return max(0.0, float(ev.stats[1]))
