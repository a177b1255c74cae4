"""Procedural street scenes for attributed object detection (numpy only, deterministic by seed).

A scene is a textured street (sky, buildings, road, clutter) with objects of five categories drawn
as multi-part shapes in one of eight colours: a car (body, cabin, windows, wheels), a bus (long
body, window row, wheels), a bicycle (two rings, a coloured frame, handlebar), a motorcycle (solid
wheels, coloured tank and seat) and a person (head, coloured shirt, arms, legs). Each object has a
random scale, aspect, horizontal flip and tilt; objects are painted far to near, so later ones
occlude earlier ones, and poles/signs in front occlude some more. The box of an object is the box
of its *visible* pixels; an object less than ``MIN_VISIBLE`` visible is marked ``iscrowd`` (COCO's
"ignore": neither a hit nor a miss). Finally blur and noise.

Drawing is vectorised per object (every primitive is a mask over the object's box patch), so a
128² scene takes about a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

CATEGORIES: tuple[str, ...] = ("car", "bus", "bicycle", "motorcycle", "person")
#: Colour name -> RGB in [0, 1] (the attribute vocabulary's colours).
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.10, 0.10),
    "orange": (0.97, 0.55, 0.08),
    "yellow": (0.93, 0.87, 0.15),
    "green": (0.13, 0.66, 0.20),
    "blue": (0.13, 0.30, 0.88),
    "purple": (0.58, 0.18, 0.74),
    "white": (0.95, 0.95, 0.95),
    "black": (0.07, 0.07, 0.08),
}
#: Width / height of each category's box (before jitter) and its height range in pixels.
ASPECT = {"car": 2.0, "bus": 2.9, "bicycle": 1.6, "motorcycle": 1.55, "person": 0.42}
HEIGHT = {"car": (14, 34), "bus": (18, 40), "bicycle": (14, 30), "motorcycle": (14, 30),
          "person": (22, 46)}
MIN_VISIBLE = 0.35

_DARK = np.array([0.12, 0.12, 0.13])
_GLASS = np.array([0.62, 0.78, 0.88])
_SKIN = np.array([0.87, 0.68, 0.52])
_TROUSERS = np.array([0.20, 0.22, 0.32])


@dataclass
class SceneObject:
    """One object to paint: category, colour name, box (x, y, w, h) of the whole shape, pose."""

    category: str
    colour: str
    box: tuple[float, float, float, float]
    flip: bool = False
    tilt: float = 0.0  # radians
    shade: float = 1.0  # brightness of the colour
    hue: tuple[float, float, float] = (0.0, 0.0, 0.0)  # small RGB shift of the colour


@dataclass
class Scene:
    """A rendered scene: image float32 [3, H, W] in [0, 1] and its annotations."""

    image: np.ndarray
    boxes: np.ndarray  # [N, 4] visible boxes x0, y0, x1, y1 (pixels)
    categories: list[str] = field(default_factory=list)
    colours: list[list[str]] = field(default_factory=list)
    crowd: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # heavily occluded


# --- primitives: boolean masks over local coordinates (a, b) in pixels of the object frame ----

def _rect(a, b, x0, x1, y0, y1):
    return (a >= x0) & (a <= x1) & (b >= y0) & (b <= y1)


def _ellipse(a, b, cx, cy, rx, ry):
    return ((a - cx) / rx) ** 2 + ((b - cy) / ry) ** 2 <= 1.0


def _ring(a, b, cx, cy, r, t):
    d = np.hypot(a - cx, b - cy)
    return (d <= r) & (d >= r - t)


def _segment(a, b, p, q, t):
    px, py = p
    qx, qy = q
    dx, dy = qx - px, qy - py
    s = np.clip(((a - px) * dx + (b - py) * dy) / max(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
    return np.hypot(a - px - s * dx, b - py - s * dy) <= t / 2


def _parts(cat: str, a: np.ndarray, b: np.ndarray, w: float, h: float,
           colour: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(mask, rgb) layers of one object in its frame (a right, b down; 0..w, 0..h)."""
    dark = _DARK
    if cat == "car":
        r = 0.17 * h
        return [
            (_rect(a, b, 0, w, 0.42 * h, 0.82 * h), colour),
            (_rect(a, b, 0.2 * w, 0.72 * w, 0.08 * h, 0.45 * h)
             & (b >= 0.08 * h + (0.2 * w - a) * 0), colour),
            (_rect(a, b, 0.25 * w, 0.44 * w, 0.15 * h, 0.42 * h), _GLASS),
            (_rect(a, b, 0.48 * w, 0.67 * w, 0.15 * h, 0.42 * h), _GLASS),
            (_ellipse(a, b, 0.22 * w, h - r, r, r), dark),
            (_ellipse(a, b, 0.78 * w, h - r, r, r), dark),
            (_ellipse(a, b, 0.22 * w, h - r, 0.45 * r, 0.45 * r), np.array([0.6, 0.6, 0.62])),
            (_ellipse(a, b, 0.78 * w, h - r, 0.45 * r, 0.45 * r), np.array([0.6, 0.6, 0.62])),
        ]
    if cat == "bus":
        r = 0.13 * h
        layers = [(_rect(a, b, 0, w, 0.02 * h, h - r), colour),
                  (_rect(a, b, 0.9 * w, 0.98 * w, 0.12 * h, 0.55 * h), _GLASS)]
        n = 5
        for i in range(n):
            x0 = (0.04 + i * 0.17) * w
            layers.append((_rect(a, b, x0, x0 + 0.12 * w, 0.14 * h, 0.42 * h), _GLASS))
        layers += [(_ellipse(a, b, 0.16 * w, h - r, r, r), dark),
                   (_ellipse(a, b, 0.82 * w, h - r, r, r), dark)]
        return layers
    if cat == "bicycle":
        r = 0.3 * h
        t = max(1.6, 0.09 * h)
        back, front = (r, h - r), (w - r, h - r)
        seat, bar, crank = (0.38 * w, 0.3 * h), (0.72 * w, 0.25 * h), (0.48 * w, h - r)
        frame = (_segment(a, b, back, crank, t) | _segment(a, b, crank, bar, t)
                 | _segment(a, b, seat, crank, t) | _segment(a, b, seat, back, t)
                 | _segment(a, b, seat, (0.68 * w, 0.42 * h), t) | _segment(a, b, bar, front, t))
        return [
            (_ring(a, b, back[0], back[1], r, max(1.5, 0.08 * h)), dark),
            (_ring(a, b, front[0], front[1], r, max(1.5, 0.08 * h)), dark),
            (frame, colour),
            (_segment(a, b, (0.32 * w, 0.28 * h), (0.45 * w, 0.28 * h), t * 1.3), dark),
            (_segment(a, b, (0.68 * w, 0.14 * h), (0.8 * w, 0.2 * h), t), dark),
        ]
    if cat == "motorcycle":
        r = 0.27 * h
        return [
            (_ellipse(a, b, r, h - r, r, r), dark),
            (_ellipse(a, b, w - r, h - r, r, r), dark),
            (_ellipse(a, b, r, h - r, 0.4 * r, 0.4 * r), np.array([0.55, 0.55, 0.57])),
            (_ellipse(a, b, w - r, h - r, 0.4 * r, 0.4 * r), np.array([0.55, 0.55, 0.57])),
            (_ellipse(a, b, 0.52 * w, 0.5 * h, 0.3 * w, 0.2 * h), colour),
            (_rect(a, b, 0.22 * w, 0.5 * w, 0.3 * h, 0.45 * h), colour),
            (_segment(a, b, (0.75 * w, 0.15 * h), (w - r, h - r), max(1.5, 0.07 * h)), dark),
            (_segment(a, b, (0.68 * w, 0.12 * h), (0.86 * w, 0.16 * h), max(1.5, 0.07 * h)),
             dark),
        ]
    if cat == "person":
        return [
            (_ellipse(a, b, 0.5 * w, 0.1 * h, 0.3 * w, 0.1 * h), _SKIN),
            (_rect(a, b, 0.18 * w, 0.82 * w, 0.2 * h, 0.58 * h), colour),
            (_rect(a, b, 0.0, 0.17 * w, 0.22 * h, 0.52 * h), colour),
            (_rect(a, b, 0.83 * w, w, 0.22 * h, 0.52 * h), colour),
            (_rect(a, b, 0.22 * w, 0.47 * w, 0.58 * h, h), _TROUSERS),
            (_rect(a, b, 0.53 * w, 0.78 * w, 0.58 * h, h), _TROUSERS),
        ]
    raise ValueError(f"unknown category {cat!r}")


def paint_object(img: np.ndarray, label: np.ndarray, obj: SceneObject, oid: int) -> None:
    """Paint ``obj`` into ``img`` [H, W, 3] and write ``oid`` into ``label`` where it shows."""
    H, W = label.shape
    x, y, w, h = obj.box
    cx, cy = x + w / 2, y + h / 2
    ext = 0.5 * (abs(w * np.cos(obj.tilt)) + abs(h * np.sin(obj.tilt))) + 1, \
        0.5 * (abs(w * np.sin(obj.tilt)) + abs(h * np.cos(obj.tilt))) + 1
    x0, x1 = max(0, int(cx - ext[0])), min(W, int(np.ceil(cx + ext[0])) + 1)
    y0, y1 = max(0, int(cy - ext[1])), min(H, int(np.ceil(cy + ext[1])) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    py, px = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    px, py = px + 0.5 - cx, py + 0.5 - cy
    c, s = np.cos(-obj.tilt), np.sin(-obj.tilt)
    a = c * px - s * py + w / 2
    b = s * px + c * py + h / 2
    if obj.flip:
        a = w - a
    colour = np.clip(np.asarray(COLOURS[obj.colour]) * obj.shade + np.asarray(obj.hue), 0, 1)
    # a soft vertical shading makes the body look lit from above
    shade = (1.08 - 0.16 * np.clip(b / max(h, 1), 0, 1))[..., None]
    patch, lab = img[y0:y1, x0:x1], label[y0:y1, x0:x1]
    for mask, rgb in _parts(obj.category, a, b, w, h, colour):
        if mask.any():
            patch[mask] = np.clip(np.asarray(rgb, np.float32) * shade[mask], 0, 1)
            lab[mask] = oid


def background(rng: np.random.Generator, H: int, W: int) -> np.ndarray:
    """Street background [H, W, 3]: sky, building facades with windows, road with markings,
    low-frequency texture and clutter blobs in muted colours."""
    horizon = int(H * rng.uniform(0.3, 0.55))
    yy = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    sky_top, sky_bot = rng.uniform(0.45, 0.8, 3), rng.uniform(0.6, 0.9, 3)
    img = sky_top + (sky_bot - sky_top) * yy
    img = np.broadcast_to(img, (H, W, 3)).astype(np.float32).copy()
    x = 0
    while x < W:  # facades
        bw = int(rng.integers(14, 48))
        top = int(rng.integers(0, max(1, horizon - 4)))
        base = rng.uniform(0.25, 0.7) * np.array([1.0, 1.0, 1.0]) + rng.uniform(-0.08, 0.08, 3)
        img[top:horizon, x:x + bw] = base
        step = int(rng.integers(6, 11))
        win = np.clip(base * rng.uniform(0.5, 0.8), 0, 1)
        for wy in range(top + 3, horizon - 4, step):
            for wx in range(x + 3, min(W, x + bw) - 3, step):
                img[wy:wy + step // 2, wx:wx + step // 2] = win
        x += bw
    road = rng.uniform(0.28, 0.48)
    img[horizon:] = road + rng.uniform(-0.03, 0.03, 3)
    for mx in range(int(rng.integers(0, 10)), W, int(rng.integers(18, 30))):  # lane marks
        my = int(horizon + (H - horizon) * rng.uniform(0.45, 0.6))
        img[my:my + 2, mx:mx + 8] = 0.9
    # low-frequency texture: a coarse random grid upsampled
    gh, gw = max(2, H // 16), max(2, W // 16)
    coarse = rng.normal(0, 0.05, (gh, gw, 1)).astype(np.float32)
    img += np.repeat(np.repeat(coarse, -(-H // gh), 0), -(-W // gw), 1)[:H, :W]
    for _ in range(int(rng.integers(2, 7))):  # clutter blobs (muted, never a pure colour)
        cx, cy = rng.uniform(0, W), rng.uniform(horizon, H) if rng.random() < 0.5 \
            else rng.uniform(0, H)
        rx, ry = rng.uniform(3, 12), rng.uniform(2, 8)
        yy2, xx2 = np.ogrid[:H, :W]
        m = ((xx2 - cx) / rx) ** 2 + ((yy2 - cy) / ry) ** 2 <= 1
        img[m] = 0.5 * img[m] + 0.5 * rng.uniform(0.2, 0.7, 3)
    return np.clip(img, 0, 1)


def _occluders(rng: np.random.Generator, img: np.ndarray, label: np.ndarray) -> None:
    """Poles and sign boards in front of everything (they hide parts of objects)."""
    H, W = label.shape
    for _ in range(int(rng.integers(0, 3))):
        x = int(rng.integers(0, W - 3))
        t = int(rng.integers(2, 5))
        top = int(rng.integers(0, H // 2))
        img[top:, x:x + t] = rng.uniform(0.25, 0.55)
        label[top:, x:x + t] = -1
        if rng.random() < 0.5:
            sw, sh = int(rng.integers(6, 14)), int(rng.integers(5, 10))
            sx = max(0, x - sw // 2)
            img[top:top + sh, sx:sx + sw] = rng.uniform(0.5, 0.9, 3) * np.array([1, 1, 1])
            label[top:top + sh, sx:sx + sw] = -1


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.3:
        return img
    r = int(np.ceil(2.5 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    pad = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
    tmp = sum(k[i] * pad[:, i:i + img.shape[1]] for i in range(2 * r + 1))
    return sum(k[i] * tmp[i:i + img.shape[0]] for i in range(2 * r + 1))


def random_object(rng: np.random.Generator, H: int, W: int, category: str, colour: str,
                  horizon: float = 0.35) -> SceneObject:
    """An object of the given category and colour at a random place, size and pose."""
    lo, hi = HEIGHT[category]
    h = float(rng.uniform(lo, min(hi, 0.6 * H)))
    w = h * ASPECT[category] * float(rng.uniform(0.85, 1.15))
    if w > 0.9 * W:
        h, w = h * 0.9 * W / w, 0.9 * W
    # objects stand on the road: bottom edge below the horizon, partly off-image allowed
    x = float(rng.uniform(-0.15 * w, W - 0.85 * w))
    bottom = float(rng.uniform(horizon * H + 0.5 * h, H + 0.1 * h))
    return SceneObject(category, colour, (x, bottom - h, w, h), flip=bool(rng.random() < 0.5),
                       tilt=float(rng.normal(0, 0.08)), shade=float(rng.uniform(0.8, 1.1)),
                       hue=tuple(rng.normal(0, 0.035, 3).tolist()))


def render(rng: np.random.Generator, H: int, W: int, objects: Sequence[SceneObject],
           blur: float | None = None, noise: float | None = None) -> Scene:
    """Paint ``objects`` (far to near = in order of their bottom edge) onto a random background,
    add occluders, blur and noise; boxes are those of the visible pixels."""
    img = background(rng, H, W)
    label = np.full((H, W), -1, np.int32)
    order = sorted(range(len(objects)), key=lambda i: objects[i].box[1] + objects[i].box[3])
    full_area = np.zeros(len(objects))
    for i in order:
        before = label.copy()
        paint_object(img, label, objects[i], i)
        full_area[i] = float(((label == i) & (before != i)).sum())
    _occluders(rng, img, label)
    blur = float(rng.uniform(0, 1.0)) if blur is None else blur
    noise = float(rng.uniform(0.005, 0.04)) if noise is None else noise
    img = _blur(img, blur)
    img = np.clip(img + rng.normal(0, noise, img.shape).astype(np.float32), 0, 1)
    boxes, cats, cols, crowd = [], [], [], []
    for i, obj in enumerate(objects):
        ys, xs = np.nonzero(label == i)
        if len(xs) < 6:
            continue
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        cats.append(obj.category)
        cols.append([obj.colour])
        crowd.append(len(xs) < MIN_VISIBLE * max(full_area[i], 1))
    return Scene(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32),
                 np.asarray(boxes, np.float32).reshape(-1, 4), cats, cols,
                 np.asarray(crowd, bool))


def task_scene(rng: np.random.Generator, H: int, W: int, colours: Sequence[str], category: str,
               n_objects: tuple[int, int] = (3, 7), p_positive: float = 0.9,
               forbid: set[tuple[str, str]] | frozenset = frozenset(),
               background_only: set[tuple[str, str]] | frozenset = frozenset()) -> Scene:
    """A scene drawn for the task ``colours × category``: usually 1-3 matching objects, plus
    distractors of the same category in other colours and of the same colours on other
    categories, plus random objects. No object is a (colour, category) pair in ``forbid``; pairs
    in ``background_only`` are never chosen as distractors, only among the random objects."""
    objs: list[SceneObject] = []
    avoid = set(forbid) | set(background_only)  # pairs a distractor may not be
    other_cols = [c for c in COLOURS if c not in colours and (c, category) not in avoid] \
        or [c for c in COLOURS if c not in colours]
    other_cats = [c for c in CATEGORIES if c != category]

    def colour_for(cat: str, choices: Sequence[str], banned: set | frozenset = forbid) -> str:
        ok = [c for c in choices if (c, cat) not in banned] or \
            [c for c in COLOURS if (c, cat) not in forbid]
        return str(rng.choice(ok))

    if rng.random() < p_positive:
        for _ in range(int(rng.integers(1, 4))):
            objs.append(random_object(rng, H, W, category, str(rng.choice(list(colours)))))
    for _ in range(int(rng.integers(1, 3))):
        objs.append(random_object(rng, H, W, category, str(rng.choice(other_cols))))
    for _ in range(int(rng.integers(1, 3))):
        cats = [k for k in other_cats if any((c, k) not in avoid for c in colours)]
        cat = str(rng.choice(cats or other_cats))
        objs.append(random_object(rng, H, W, cat, colour_for(cat, colours, avoid)))
    total = int(rng.integers(n_objects[0], n_objects[1] + 1))
    while len(objs) < total:
        cat = str(rng.choice(CATEGORIES))
        objs.append(random_object(rng, H, W, cat, colour_for(cat, list(COLOURS))))
    rng.shuffle(objs)
    return render(rng, H, W, objs)


def random_scene(rng: np.random.Generator, H: int, W: int,
                 n_objects: tuple[int, int] = (3, 8)) -> Scene:
    """A scene with random objects (the generic data set written to disk)."""
    n = int(rng.integers(n_objects[0], n_objects[1] + 1))
    objs = [random_object(rng, H, W, str(rng.choice(CATEGORIES)), str(rng.choice(list(COLOURS))))
            for _ in range(n)]
    return render(rng, H, W, objs)


def crop(scene: Scene, rng: np.random.Generator, size: int, keep: float = MIN_VISIBLE) -> Scene:
    """A random ``size``×``size`` crop (training on smaller crops of full scenes): boxes are
    clipped to it, objects cut to less than ``keep`` of their box area become ``crowd``
    (ignored) and objects outside it are dropped. Prefers crops that keep a positive centre
    when any object exists (the caller decides what is positive; here: any box)."""
    _, H, W = scene.image.shape
    y0 = int(rng.integers(0, H - size + 1))
    x0 = int(rng.integers(0, W - size + 1))
    b = scene.boxes - np.array([x0, y0, x0, y0], np.float32)
    clipped = np.clip(b, 0, size)
    area = np.prod(np.maximum(b[:, 2:] - b[:, :2], 0), 1)
    left = np.prod(np.maximum(clipped[:, 2:] - clipped[:, :2], 0), 1)
    alive = left >= 4
    crowd = scene.crowd | (left < keep * np.maximum(area, 1e-6))
    idx = np.nonzero(alive)[0]
    return Scene(np.ascontiguousarray(scene.image[:, y0:y0 + size, x0:x0 + size]),
                 clipped[idx], [scene.categories[i] for i in idx],
                 [scene.colours[i] for i in idx], crowd[idx])
