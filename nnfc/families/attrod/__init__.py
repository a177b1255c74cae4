"""AttrOD: attributed object detection ("detect red cars") as a task family (numpy only).

A task is a colour set × a category: ``("red", "car")`` = red cars, ``("red", "blue", "car")`` =
red or blue cars. The detector has one heatmap class, "objects matching the task": the assembler's
gates for the task decide which objects count. Raw outputs ``heatmap`` [1,1,H/s,W/s] and ``box``
[1,4,H/s,W/s]; :mod:`.decode` turns them into a fixed list of boxes and scores. The metric is
COCO-style mAP@0.5 per task (:mod:`.metric`).

Data come from the procedural street scenes (:mod:`.scenes`, streamed, deterministic by seed) or
from a COCO instances file with a colour-attribute file (:mod:`.coco`), e.g. COCO 2017 with
colour labels, or procedural scenes written to disk with ``write_procedural_coco``.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from nnfc.errors import NnfcError
from nnfc.families.attrod import scenes as S
from nnfc.families.attrod.decode import BOX, BOXES, HEATMAP, SCORES, decode_numpy, decode_spec

#: Colour–category pairs never trained on (each colour and category still occurs in seen tasks;
#: in procedural training scenes these pairs are not even drawn).
UNSEEN_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "bus"), ("orange", "person"), ("yellow", "bicycle"), ("green", "car"),
    ("blue", "motorcycle"), ("purple", "bus"), ("white", "person"), ("black", "bicycle"),
)
#: Two-colour tasks per category (the paper's "Motorcycle {2,3,4}"), over seen pairs only.
COLOUR_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "blue"), ("yellow", "green"), ("white", "black"), ("orange", "purple"),
)


def default_tasks(colours: Sequence[str], categories: Sequence[str],
                  unseen_pairs: Sequence[Sequence[str]]) -> tuple[list, list]:
    """Seen tasks (single colours on seen pairs + two-colour sets of seen pairs) and unseen
    tasks (the held-out pairs)."""
    held = {tuple(p) for p in unseen_pairs}
    seen = [(c, k) for k in categories for c in colours if (c, k) not in held]
    for k in categories:
        for a, b in COLOUR_PAIRS:
            if a in colours and b in colours and (a, k) not in held and (b, k) not in held:
                seen.append((a, b, k))
    unseen = [p for p in ((c, k) for k in categories for c in colours) if p in held]
    return seen, unseen


def box_targets(boxes: np.ndarray, positive: np.ndarray, height: int, width: int,
                stride: int) -> dict[str, np.ndarray]:
    """CenterNet-style targets for one image: ``heatmap`` [1,h,w] (a Gaussian peak of 1 at each
    positive box centre), ``box`` [4,h,w] (left/top/right/bottom distances in pixels from the cell
    centre, at the 3×3 cells around each centre) and ``box_weight`` [1,h,w]."""
    h, w = height // stride, width // stride
    heat = np.zeros((1, h, w), np.float32)
    reg = np.ones((4, h, w), np.float32)
    weight = np.zeros((1, h, w), np.float32)
    ys = (np.arange(h, dtype=np.float32) + 0.5) * stride
    xs = (np.arange(w, dtype=np.float32) + 0.5) * stride
    # big boxes first so that a small box on top of a big one owns the shared cells
    order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) \
        if len(boxes) else []
    for i in order:
        if not positive[i]:
            continue
        x0, y0, x1, y1 = boxes[i]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        gx, gy = min(int(cx // stride), w - 1), min(int(cy // stride), h - 1)
        sx = max(0.5, (x1 - x0) / stride / 6)
        sy = max(0.5, (y1 - y0) / stride / 6)
        g = np.exp(-0.5 * (((np.arange(w) - gx) / sx) ** 2)[None, :]
                   - 0.5 * (((np.arange(h) - gy) / sy) ** 2)[:, None]).astype(np.float32)
        heat[0] = np.maximum(heat[0], g)
        for yy in range(max(0, gy - 1), min(h, gy + 2)):
            for xx in range(max(0, gx - 1), min(w, gx + 2)):
                l, t = xs[xx] - x0, ys[yy] - y0
                r, b = x1 - xs[xx], y1 - ys[yy]
                if min(l, t, r, b) <= 0:
                    continue
                reg[:, yy, xx] = (l, t, r, b)
                weight[0, yy, xx] = g[yy, xx]
    return {"heatmap": heat, "box": reg, "box_weight": weight}


class AttrOD:
    """Attributed object detection over procedural street scenes or COCO + colour labels."""

    name: ClassVar[str] = "attrod"
    metric: ClassVar[str] = "map50"
    #: a task is colours x one category: `red` or `car,bus` alone is an error
    partial_tasks: ClassVar[bool] = False
    #: words people write for the categories (task phrases, nnfc/task_text.py); plain plurals
    #: ("cars", "buses") need no entry
    task_words: ClassVar[Mapping[str, str]] = {
        "automobile": "car", "automobiles": "car", "sedan": "car", "sedans": "car",
        "busses": "bus", "coach": "bus", "coaches": "bus",
        "bike": "bicycle", "bikes": "bicycle", "cycle": "bicycle", "cycles": "bicycle",
        "motorbike": "motorcycle", "motorbikes": "motorcycle", "moped": "motorcycle",
        "mopeds": "motorcycle", "people": "person", "pedestrian": "person",
        "pedestrians": "person", "man": "person", "men": "person", "woman": "person",
        "women": "person", "child": "person", "children": "person"}
    #: sRGB of the colour attributes as scenes draw them (nearest colour of a colour name)
    palette: ClassVar[Mapping[str, tuple[float, float, float]]] = S.COLOURS
    #: ``[task]`` keys and defaults (colours/categories/seen/unseen None: the built-in lists).
    config_defaults: ClassVar[Mapping[str, Any]] = {
        "source": "procedural", "image_size": 160, "train_size": 96, "stride": 4, "top_k": 50,
        "colours": None, "categories": None, "unseen": None, "seen": None,
        "annotations": "", "colour_file": "", "images": "", "test_annotations": "",
        "test_colour_file": "", "test_images": "", "objects": [3, 7], "split_seed": 0,
        "draw_unseen": False,
    }

    def __init__(self, source: str = "procedural", image_size: int = 160, train_size: int = 96,
                 stride: int = 4, top_k: int = 50, colours: Sequence[str] | None = None,
                 categories: Sequence[str] | None = None,
                 unseen: Sequence[Sequence[str]] | None = None,
                 seen: Sequence[Sequence[str]] | None = None,
                 annotations: str = "", colour_file: str = "", images: str = "",
                 test_annotations: str = "", test_colour_file: str = "", test_images: str = "",
                 objects: Sequence[int] = (3, 7), split_seed: int = 0,
                 draw_unseen: bool | str = False):
        if draw_unseen not in (True, False, "background"):
            raise NnfcError(f"task.draw_unseen must be true, false or 'background', not "
                            f"{draw_unseen!r}")
        if source not in ("procedural", "coco"):
            raise NnfcError(f"task.source must be 'procedural' or 'coco', not {source!r}")
        if image_size % stride or train_size % stride:
            raise NnfcError(f"task.image_size and train_size must be multiples of the stride "
                            f"{stride}")
        self.source, self.stride, self.top_k = source, int(stride), int(top_k)
        self.image_size, self.train_size = int(image_size), int(train_size)
        self.colours = tuple(colours or S.COLOURS)
        self.categories = tuple(categories or S.CATEGORIES)
        if source == "procedural":
            bad = [c for c in self.colours if c not in S.COLOURS] + \
                  [c for c in self.categories if c not in S.CATEGORIES]
            if bad:
                raise NnfcError(f"the procedural scenes have no {', '.join(bad)}; colours: "
                                f"{', '.join(S.COLOURS)}; categories: {', '.join(S.CATEGORIES)}")
        self.attributes = self.colours + self.categories
        #: attribute index groups a factorized assembler gates by (colours, categories)
        self.attribute_groups = [list(range(len(self.colours))),
                                 list(range(len(self.colours), len(self.attributes)))]
        pairs = UNSEEN_PAIRS if unseen is None else [tuple(t) for t in unseen]
        if unseen is None:
            pairs = [p for p in pairs if p[0] in self.colours and p[1] in self.categories]
        d_seen, d_unseen = default_tasks(self.colours, self.categories, pairs)
        self.unseen_tasks = [self.parse_task(t) for t in (d_unseen if unseen is None else unseen)]
        self.seen_tasks = [self.parse_task(t) for t in seen] if seen is not None else \
            [t for t in d_seen if t not in self.unseen_tasks]
        self.image_shape = (3, self.image_size, self.image_size)
        self.objects = tuple(int(v) for v in objects)
        self.split_seed = split_seed
        self._config = dict(source=source, image_size=self.image_size,
                            train_size=self.train_size, stride=self.stride, top_k=self.top_k,
                            colours=list(self.colours), categories=list(self.categories),
                            unseen=[list(t) for t in self.unseen_tasks],
                            seen=[list(t) for t in self.seen_tasks],
                            annotations=annotations, colour_file=colour_file, images=images,
                            test_annotations=test_annotations,
                            test_colour_file=test_colour_file, test_images=test_images,
                            objects=list(self.objects), split_seed=split_seed,
                            draw_unseen=draw_unseen)
        # pairs that no seen task asks for are not drawn in procedural training scenes, unless
        # draw_unseen: then they occur as negatives only (as in COCO, where every colour-category
        # pair occurs in the images and an unseen task is one never asked for in training);
        # 'background': only among a scene's random objects, never as a task's chosen distractor
        asked = {(c, t[-1]) for t in self.seen_tasks for c in t[:-1]}
        unasked = {(c, k) for t in self.unseen_tasks for c in t[:-1] for k in t[-1:]} - asked
        self._hidden = set() if draw_unseen else unasked
        self._background_only = unasked if draw_unseen == "background" else set()
        self._coco: dict[str, list] = {}
        if source == "coco":
            if not annotations or not colour_file:
                raise NnfcError("task.source = 'coco' needs task.annotations and "
                                "task.colour_file")

    # --- tasks ------------------------------------------------------------------------------

    def parse_task(self, attrs: Sequence[str]) -> tuple[str, ...]:
        """Canonical ``(colour..., category)`` from attributes in any order."""
        attrs = [str(a).strip().lower() for a in attrs if str(a).strip()]
        unknown = [a for a in attrs if a not in self.attributes]
        if unknown:
            raise NnfcError(f"unknown attribute {unknown[0]!r}; colours: "
                            f"{', '.join(self.colours)}; categories: "
                            f"{', '.join(self.categories)}")
        cats = [a for a in attrs if a in self.categories]
        cols = sorted({a for a in attrs if a in self.colours}, key=self.colours.index)
        if len(cats) != 1:
            raise NnfcError("a detection task needs exactly one category (" +
                            ", ".join(self.categories) + f"), got {len(cats)}: " +
                            ",".join(attrs))
        if not cols:
            raise NnfcError(f"a detection task needs at least one colour ({', '.join(self.colours)})"
                            f", got none: {','.join(attrs)}")
        return (*cols, cats[0])

    def encode(self, tasks: Sequence[Sequence[str]]) -> np.ndarray:
        out = np.zeros((len(tasks), len(self.attributes)), np.float32)
        for i, t in enumerate(tasks):
            for a in t:
                out[i, self.attributes.index(a)] = 1.0
        return out

    def with_test_data(self, annotations: str, colours: str, images: str = "") -> "AttrOD":
        """This family (same tasks and vocabulary) with its test split read from a COCO
        instances file + colour file (e.g. ``nnfc eval --data``); every image is checked to
        open at the size its annotations give."""
        from nnfc.families.attrod.coco import check_images

        config = {**self._config, "source": "coco", "annotations": str(annotations),
                  "colour_file": str(colours), "images": str(images or ""),
                  "test_annotations": str(annotations), "test_colour_file": str(colours),
                  "test_images": str(images or "")}
        family = type(self).from_config(config)
        check_images(family._images("test"))
        return family

    # --- data -------------------------------------------------------------------------------

    def _images(self, split: str) -> list:
        from nnfc.families.attrod.coco import load_coco

        if split not in self._coco:
            c = self._config
            if split == "test" and c["test_annotations"]:
                self._coco[split] = load_coco(c["test_annotations"], c["test_colour_file"],
                                              c["test_images"] or None)
            else:
                items = load_coco(c["annotations"], c["colour_file"], c["images"] or None)
                if not c["test_annotations"]:  # hold out every fourth image (fixed split)
                    perm = np.random.default_rng(self.split_seed).permutation(len(items))
                    test = set(perm[: max(1, len(items) // 4)].tolist())
                    items = [x for i, x in enumerate(items) if (i in test) == (split == "test")]
                self._coco[split] = items
        return self._coco[split]

    def scene(self, task: Sequence[str], split: str, rng: np.random.Generator,
              size: int | None = None) -> S.Scene:
        """One sample for ``task``: a procedural scene drawn for it, or a COCO image (four in
        five contain an object of the task's category)."""
        size = size or self.image_size
        if self.source == "procedural":
            train = split == "train"  # test scenes may hold any pair, in any role
            sc = S.task_scene(rng, size, size, task[:-1], task[-1], n_objects=self.objects,
                              forbid=self._hidden if train else set(),
                              background_only=self._background_only if train else set())
            if train and self.train_size < size:
                sc = S.crop(sc, rng, self.train_size)
            return sc
        from nnfc.families.attrod.coco import read_image

        items = self._images(split)
        if not items:
            raise NnfcError(f"the COCO {split} split has no images")
        with_cat = [x for x in items if task[-1] in x.categories]
        pool = with_cat if with_cat and rng.random() < 0.8 else items
        item = pool[int(rng.integers(len(pool)))]
        img, boxes = read_image(item, (size, size))
        return S.Scene(img, boxes, list(item.categories), [list(c) for c in item.colours],
                       item.crowd.copy())

    def matches(self, scene: S.Scene, task: Sequence[str]) -> np.ndarray:
        from nnfc.families.attrod.coco import matching

        return matching(scene.categories, scene.colours, task[:-1], task[-1])

    def batch(self, tasks: Sequence[Sequence[str]], n_per_task: int, split: str,
              rng: np.random.Generator, augment: bool = False) -> dict[str, Any]:
        """Images, task index and detection targets (``heatmap``, ``box``, ``box_weight``) plus
        the raw ground truth (``gt_boxes``/``gt_crowd``: lists of arrays per image)."""
        imgs, tids, heat, reg, wt, gtb, gtc = [], [], [], [], [], [], []
        for ti, task in enumerate(tasks):
            for _ in range(n_per_task):
                sc = self.scene(task, split, rng)
                if augment and rng.random() < 0.5:  # horizontal flip
                    W = sc.image.shape[2]
                    sc.image = np.ascontiguousarray(sc.image[:, :, ::-1])
                    sc.boxes = np.stack([W - sc.boxes[:, 2], sc.boxes[:, 1], W - sc.boxes[:, 0],
                                         sc.boxes[:, 3]], 1) if len(sc.boxes) else sc.boxes
                pos = self.matches(sc, task)
                H, W = sc.image.shape[1:]
                t = box_targets(sc.boxes, pos, H, W, self.stride)
                imgs.append(sc.image), tids.append(ti)
                heat.append(t["heatmap"]), reg.append(t["box"]), wt.append(t["box_weight"])
                gtb.append(sc.boxes[pos]), gtc.append(sc.crowd[pos])
        return {"image": np.stack(imgs).astype(np.float32), "task": np.asarray(tids, np.int64),
                "heatmap": np.stack(heat), "box": np.stack(reg), "box_weight": np.stack(wt),
                "gt_boxes": gtb, "gt_crowd": gtc}

    # --- outputs and metric -----------------------------------------------------------------

    def decode_spec(self) -> dict[str, Any]:
        return decode_spec(self.image_size, self.image_size, self.stride, self.top_k)

    def output_spec(self) -> list[dict[str, Any]]:
        h = self.image_size // self.stride
        return [{"name": HEATMAP, "shape": [1, 1, h, h], "stride": self.stride,
                 "classes": ["matches task"], "activation": "sigmoid",
                 "decode": self.decode_spec()},
                {"name": BOX, "shape": [1, 4, h, h], "stride": self.stride,
                 "encoding": "log_ltrb_stride"}]

    def decode(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Boxes [B,K,4] and scores [B,K] from raw outputs (the decode graph's arithmetic)."""
        return decode_numpy(np.asarray(outputs[HEATMAP]), np.asarray(outputs[BOX]),
                            self.stride, self.top_k)

    def test_batch(self, task: Sequence[str], samples: int, seed: int = 2024) -> dict[str, Any]:
        """The deterministic test samples of ``task`` (same for every caller)."""
        key = zlib.crc32(",".join(task).encode())
        return self.batch([tuple(task)], samples, "test",
                          np.random.default_rng([seed, key, self.split_seed, 1]))

    def evaluate(self, task: Sequence[str], run: Callable[[np.ndarray], Mapping[str, np.ndarray]],
                 samples: int, seed: int = 2024, chunk: int = 16) -> float:
        """mAP@0.5 of ``task`` on ``samples`` test scenes at the deployed size, from the
        network's raw outputs (decoded here with the decode graph's arithmetic)."""
        return self._map50(task, lambda x: self.decode(run(x)), samples, seed, chunk)

    def evaluate_deployed(self, task: Sequence[str],
                          run: Callable[[np.ndarray], Mapping[str, np.ndarray]],
                          samples: int, seed: int = 2024) -> float:
        """mAP@0.5 as :meth:`evaluate`, with ``run`` a deployed artifact (network joined to its
        decode graph: static batch 1, outputs ``boxes`` and ``scores``)."""
        def detect(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out = run(x)
            return np.asarray(out[BOXES]), np.asarray(out[SCORES])
        return self._map50(task, detect, samples, seed, chunk=1)

    def _map50(self, task: Sequence[str],
               detect: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
               samples: int, seed: int, chunk: int) -> float:
        from nnfc.families.attrod.metric import map50

        b = self.test_batch(task, samples, seed)
        boxes, scores = [], []
        for i in range(0, len(b["image"]), chunk):
            bx, sc = detect(b["image"][i:i + chunk])
            boxes.extend(bx), scores.extend(sc)
        return map50(b["gt_boxes"], b["gt_crowd"], boxes, scores)

    # --- manifest ---------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "AttrOD":
        config = {k: v for k, v in dict(config).items() if k != "family"}
        bad = set(config) - set(cls.config_defaults)
        if bad:
            raise NnfcError(f"unknown key(s) in [task] for family attrod: "
                            f"{', '.join(sorted(bad))}; known: {', '.join(cls.config_defaults)}")
        return cls(**config)

    def manifest_info(self) -> dict[str, Any]:
        return {"family": self.name, "config": dict(self._config), "metric": self.metric,
                "source": self.source,
                "preprocessing": f"RGB scaled to [0, 1], resized to {self.image_size}x"
                                 f"{self.image_size}, channels first",
                "decode": self.decode_spec()}


__all__ = ["AttrOD", "UNSEEN_PAIRS", "box_targets", "default_tasks"]
