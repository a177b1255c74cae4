"""COCO-format data with colour attributes: one loader for real COCO and for procedural scenes.

Annotations are a COCO instances JSON read with pycocotools; colours come from a second JSON file
mapping annotation id to its colour list (``{"123": ["red"], "456": ["white", "black"]}``), as
the NN-Factory paper annotated COCO 2017 with colours. :func:`write_procedural_coco` writes the
procedural street scenes in exactly this format (PNG images + the two JSON files).
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nnfc.errors import NnfcError

INSTANCES = "instances.json"
COLOURS_FILE = "colours.json"
IMAGES_DIR = "images"

_REQUIRED = {"images": ("id", "file_name", "width", "height"),
             "annotations": ("id", "image_id", "category_id", "bbox"),
             "categories": ("id", "name")}


@dataclass
class CocoImage:
    """One image's path and its annotations (boxes x0, y0, x1, y1 in the image's pixels)."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray  # [N, 4]
    categories: list[str]
    colours: list[list[str]]
    crowd: np.ndarray  # [N] bool


def _check_fields(data: dict, where: str) -> None:
    for key, fields in _REQUIRED.items():
        if not isinstance(data.get(key), list):
            raise NnfcError(f"{where}: not a COCO instances file (no '{key}' list)")
        for i, item in enumerate(data[key]):
            missing = [f for f in fields if not isinstance(item, dict) or f not in item]
            if missing:
                raise NnfcError(f"{where}: {key}[{i}] lacks field(s) {', '.join(missing)}")


def load_coco(annotations: str | os.PathLike, colours: str | os.PathLike,
              images: str | os.PathLike | None = None) -> list[CocoImage]:
    """Images with their annotations and colour lists. ``images`` defaults to an ``images``
    folder beside the annotation file. Annotations without a colour entry are kept with an
    empty colour list (they count as objects of no requested colour)."""
    ann_path, col_path = Path(annotations), Path(colours)
    for p in (ann_path, col_path):
        if not p.is_file():
            raise NnfcError(f"{p} does not exist")
    from nnfc.jsonfile import read_json
    data = read_json(ann_path, what="COCO annotation file", max_bytes=2 << 30)
    colour_map = read_json(col_path, what="COCO colour file", max_bytes=2 << 30)
    if not isinstance(data, dict):
        raise NnfcError(f"{ann_path}: not a COCO instances file (not a JSON object)")
    _check_fields(data, str(ann_path))
    if not isinstance(colour_map, dict):
        raise NnfcError(f"{col_path}: expected an object mapping annotation id to colours")
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    names = {c["id"]: c["name"] for c in data["categories"]}
    root = Path(images) if images else ann_path.parent / IMAGES_DIR
    out = []
    for img_id in sorted(coco.getImgIds()):
        info = coco.imgs[img_id]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                           a["bbox"][1] + a["bbox"][3]] for a in anns], np.float32).reshape(-1, 4)
        out.append(CocoImage(root / info["file_name"], int(info["width"]), int(info["height"]),
                             boxes, [names[a["category_id"]] for a in anns],
                             [list(colour_map.get(str(a["id"]), [])) for a in anns],
                             np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)))
    return out


def _size_problem(item: CocoImage, im) -> str | None:
    if im.size != (item.width, item.height):
        return (f"image {item.path} is {im.size[0]}x{im.size[1]} pixels but the annotations "
                f"give it as {item.width}x{item.height} (its boxes would not fit it)")
    return None


def check_images(items: Sequence[CocoImage]) -> None:
    """Every image opens and has the size its annotations give (headers only: fast)."""
    from PIL import Image

    for item in items:
        try:
            with Image.open(item.path) as im:
                problem = _size_problem(item, im)
        except OSError as exc:
            raise NnfcError(f"cannot read image {item.path}: {exc}") from exc
        if problem:
            raise NnfcError(problem)


def read_image(item: CocoImage, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The image resized to ``size`` (H, W) as float32 [3, H, W] in [0, 1], and its boxes
    scaled alike; an image whose size is not the one its annotations give is an error."""
    from PIL import Image

    try:
        with Image.open(item.path) as im:
            problem = _size_problem(item, im)
            if not problem:
                im = im.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
                arr = np.asarray(im, np.float32) / 255.0
    except OSError as exc:
        raise NnfcError(f"cannot read image {item.path}: {exc}") from exc
    if problem:
        raise NnfcError(problem)
    sx, sy = size[1] / item.width, size[0] / item.height
    return arr.transpose(2, 0, 1).copy(), item.boxes * np.array([sx, sy, sx, sy], np.float32)


def write_procedural_coco(out: str | os.PathLike, n_images: int, size: int = 160,
                          seed: int = 0, progress: bool = False) -> Path:
    """Write ``n_images`` random procedural scenes as a COCO data set: ``images/*.png``,
    ``instances.json`` and ``colours.json``. Refuses a non-empty directory."""
    from PIL import Image
    from tqdm import tqdm

    from nnfc.atomic import write_json_atomic as write_json
    from nnfc.families.attrod.scenes import CATEGORIES, random_scene

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise NnfcError(f"{out} exists and is not empty; choose a new directory")
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    cat_ids = {c: i + 1 for i, c in enumerate(CATEGORIES)}
    images, anns, colours = [], [], {}
    for i in tqdm(range(n_images), disable=not progress, desc="scenes"):
        scene = random_scene(np.random.default_rng([seed, i]), size, size)
        name = f"{i:06d}.png"
        Image.fromarray((scene.image.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)).save(
            out / IMAGES_DIR / name)
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        for box, cat, cols, crowd in zip(scene.boxes, scene.categories, scene.colours,
                                         scene.crowd):
            aid = len(anns) + 1
            x0, y0, x1, y1 = (float(v) for v in box)
            anns.append({"id": aid, "image_id": i + 1, "category_id": cat_ids[cat],
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                         "iscrowd": int(crowd)})
            colours[str(aid)] = list(cols)
    write_json(out / INSTANCES, {"images": images, "annotations": anns,
                                 "categories": [{"id": v, "name": k}
                                                for k, v in cat_ids.items()]})
    write_json(out / COLOURS_FILE, colours)
    return out


def matching(categories: Sequence[str], colours: Sequence[Sequence[str]],
             task_colours: Sequence[str], category: str) -> np.ndarray:
    """Which objects match the task ``task_colours × category`` (any listed colour)."""
    want = set(task_colours)
    return np.array([c == category and bool(want & set(cols))
                     for c, cols in zip(categories, colours)], bool)
