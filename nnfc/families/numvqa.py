"""NumVQA: an image of four handwritten digits in a 2x2 grid and a yes/no question.

A question is an attribute set ``{quantifier, target}``: quantifier in ``has``, ``only-one`` …
``only-four`` (``has`` = at least one; ``only-k`` = exactly k of the four digits) and target a digit
``0``…``9``, ``odd`` or ``even``. "only two odd numbers" = ``{only-two, odd}``. Labels are balanced
yes/no per task by construction (a "yes" sample draws exactly a satisfying count of target digits,
a "no" sample a non-satisfying one).

Digit source: scikit-learn's bundled handwritten digits (8x8, shipped with the package, no
download) by default, giving 16x16 images; or MNIST IDX files from a directory (28x28 digits,
56x56 images). Source images are split once into train/test (no image in both). Numpy only.

The family's ``[task]`` keys (:data:`CONFIG_DEFAULTS`): ``mnist_dir``, ``test_fraction``,
``split_seed``, ``unseen``/``seen`` (lists of attribute lists) and the training jitter of the digit
tiles ``augment_shift`` (pixels), ``augment_rotate`` (degrees), ``augment_scale`` (zoom ±).
The supernet answers with one output ``logits`` [B, 2] (no, yes); the metric is accuracy.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from nnfc.errors import NnfcError
from nnfc.families.augment import TileJitter

QUANTIFIERS = ("has", "only-one", "only-two", "only-three", "only-four")
TARGETS = tuple(str(d) for d in range(10)) + ("odd", "even")
ATTRIBUTES = QUANTIFIERS + TARGETS
_COUNT = {"only-one": 1, "only-two": 2, "only-three": 3, "only-four": 4}

#: Never trained on; reported separately. Every attribute still occurs in some seen task.
UNSEEN_TASKS: tuple[tuple[str, str], ...] = (
    ("only-two", "odd"), ("has", "7"), ("only-one", "2"), ("only-three", "5"),
    ("only-four", "even"), ("only-one", "9"), ("has", "even"), ("only-two", "0"),
)

#: The ``[task]`` keys of a NumVQA training config and their defaults.
CONFIG_DEFAULTS: dict[str, Any] = {
    "mnist_dir": "",  # empty: scikit-learn's bundled digits
    "test_fraction": 0.25,
    "split_seed": 0,
    "unseen": None,  # None: UNSEEN_TASKS
    "seen": None,  # None: every task that is not unseen
    "augment_shift": 0.0,
    "augment_rotate": 0.0,
    "augment_scale": 0.0,
}
OUTPUT = "logits"
CLASSES = ["no", "yes"]
PREPROCESSING = "four digits in a 2x2 grid, grey values scaled to [0, 1], one channel"


def all_tasks() -> list[tuple[str, str]]:
    """The full attribute space: quantifier x target (60 tasks)."""
    return [(q, t) for q in QUANTIFIERS for t in TARGETS]


def target_digits(target: str) -> np.ndarray:
    """Digits a target attribute matches."""
    if target == "odd":
        return np.array([1, 3, 5, 7, 9])
    if target == "even":
        return np.array([0, 2, 4, 6, 8])
    return np.array([int(target)])


def answer(task: Sequence[str], digits: Sequence[int]) -> bool:
    """Ground truth of a question on four digit labels."""
    quant, target = task
    count = int(np.isin(np.asarray(digits), target_digits(target)).sum())
    return count >= 1 if quant == "has" else count == _COUNT[quant]


@dataclass(frozen=True)
class DigitSource:
    """Labelled single-digit images, float32 in [0, 1], shape [N, h, w]."""

    images: np.ndarray
    labels: np.ndarray
    name: str


def load_digit_source(mnist_dir: str | os.PathLike | None = None) -> DigitSource:
    """scikit-learn's bundled digits (default) or MNIST IDX files from ``mnist_dir``."""
    if mnist_dir is None:
        from sklearn.datasets import load_digits
        d = load_digits()
        return DigitSource(d.images.astype(np.float32) / 16.0, d.target.astype(np.int64),
                           "sklearn-digits")
    return _load_mnist(Path(mnist_dir))


#: the most bytes an IDX file may declare (MNIST's largest: 47 MB); a gzip is read no further
MAX_IDX_BYTES = 1 << 30


def _read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX file (optionally gzipped), read no further than its header declares
    (a gzip bomb stops there)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
                raise NnfcError(f"{path} is not an unsigned-byte IDX file")
            raw = fh.read(4 * head[3])
            dims = [int.from_bytes(raw[4 * i: 4 * i + 4], "big") for i in range(head[3])]
            size = int(np.prod(dims, dtype=object)) if dims else 0
            if len(raw) != 4 * head[3] or size > MAX_IDX_BYTES:
                raise NnfcError(f"{path}: IDX header declares {dims} ({size:,} values, at most "
                                f"{MAX_IDX_BYTES:,})")
            data = fh.read(size + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise NnfcError(f"cannot read {path}: {exc}") from None
    if len(data) != size:
        raise NnfcError(f"{path}: IDX header says {dims} but the file holds "
                        f"{len(data) if len(data) <= size else 'more than'} values")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (root / name).is_file():
            return root / name
    return None


def _load_mnist(root: Path) -> DigitSource:
    if not root.is_dir():
        raise NnfcError(f"MNIST directory {root} does not exist")
    images, labels = [], []
    for split in ("train", "t10k"):
        ip, lp = _find(root, f"{split}-images-idx3-ubyte"), _find(root, f"{split}-labels-idx1-ubyte")
        if ip and lp:
            images.append(_read_idx(ip))
            labels.append(_read_idx(lp))
    if not images:
        raise NnfcError(f"{root} holds no MNIST IDX files (train-images-idx3-ubyte[.gz], "
                        "train-labels-idx1-ubyte[.gz], t10k-…)")
    x = np.concatenate(images).astype(np.float32) / 255.0
    y = np.concatenate(labels).astype(np.int64)
    if x.ndim != 3 or len(x) != len(y):
        raise NnfcError(f"{root}: MNIST images and labels do not match ({x.shape} vs {y.shape})")
    return DigitSource(x, y, f"mnist:{root}")


class NumVQA:
    """The NumVQA task family over a digit source, with a train/test split by source image."""

    name = "numvqa"
    metric = "accuracy"
    config_defaults = CONFIG_DEFAULTS
    partial_tasks = True  # e.g. `odd` alone: the assembler takes any attribute subset

    def __init__(self, mnist_dir: str | os.PathLike | None = None, test_fraction: float = 0.25,
                 split_seed: int = 0, unseen: Sequence[Sequence[str]] | None = None,
                 seen: Sequence[Sequence[str]] | None = None, jitter: TileJitter | None = None):
        if not 0 < test_fraction < 1:
            raise NnfcError(f"task.test_fraction {test_fraction} must be in (0, 1)")
        self.jitter = jitter or TileJitter()
        self._config = {"mnist_dir": str(mnist_dir or ""), "test_fraction": test_fraction,
                        "split_seed": split_seed,
                        "unseen": None if unseen is None else [list(t) for t in unseen],
                        "seen": None if seen is None else [list(t) for t in seen],
                        "augment_shift": self.jitter.shift, "augment_rotate": self.jitter.rotate,
                        "augment_scale": self.jitter.scale}
        src = load_digit_source(mnist_dir or None)
        self.source = src.name
        rng = np.random.default_rng(split_seed)
        order = rng.permutation(len(src.labels))
        n_test = int(round(len(order) * test_fraction))
        if not 0 < n_test < len(order):
            raise NnfcError(f"test_fraction {test_fraction} leaves an empty split")
        self._split = {"test": order[:n_test], "train": order[n_test:]}
        self._images, self._labels = src.images, src.labels
        self.digit_shape = src.images.shape[1:]
        self.image_shape = (1, 2 * self.digit_shape[0], 2 * self.digit_shape[1])
        unseen = [tuple(t) for t in (UNSEEN_TASKS if unseen is None else unseen)]
        for t in unseen:
            self._check(t)
        self.unseen_tasks = unseen
        if seen is None:
            self.seen_tasks = [t for t in all_tasks() if t not in unseen]
        else:
            self.seen_tasks = [self.parse_task(t) for t in seen]
            both = [t for t in self.seen_tasks if t in unseen]
            if both:
                raise NnfcError(f"task(s) {both} are both seen and unseen")
            if not self.seen_tasks:
                raise NnfcError("the list of training (seen) tasks is empty")
        # Per split and digit: indices of source images with that label.
        self._by_digit = {s: [idx[self._labels[idx] == d] for d in range(10)]
                          for s, idx in self._split.items()}

    attributes: tuple[str, ...] = ATTRIBUTES

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "NumVQA":
        """From a ``[task]`` table / the manifest's ``task_family.config`` (``family`` ignored)."""
        c = {**CONFIG_DEFAULTS, **{k: v for k, v in config.items() if k != "family"}}
        bad = set(c) - set(CONFIG_DEFAULTS)
        if bad:
            raise NnfcError(f"unknown [task] key(s) for numvqa: {', '.join(sorted(bad))}; "
                            f"known: {', '.join(CONFIG_DEFAULTS)}")
        jitter = TileJitter(float(c["augment_shift"]), float(c["augment_rotate"]),
                            float(c["augment_scale"]))
        if jitter.shift < 0 or jitter.rotate < 0 or not 0 <= jitter.scale < 1:
            raise NnfcError("task.augment_shift/augment_rotate must be >= 0 and augment_scale "
                            "in [0, 1)")
        return cls(mnist_dir=c["mnist_dir"] or None, test_fraction=float(c["test_fraction"]),
                   split_seed=int(c["split_seed"]), unseen=c["unseen"], seen=c["seen"],
                   jitter=jitter)

    def manifest_info(self) -> dict[str, Any]:
        return {"family": self.name, "config": dict(self._config), "source": self.source,
                "preprocessing": PREPROCESSING}

    def output_spec(self) -> list[dict[str, Any]]:
        return [{"name": OUTPUT, "shape": [1, len(CLASSES)], "classes": list(CLASSES)}]

    def batch(self, tasks: Sequence[Sequence[str]], n_per_task: int, split: str,
              rng: np.random.Generator, augment: bool = False) -> dict[str, np.ndarray]:
        """``{"image": [N,1,H,W], "task": [N], "label": [N]}`` (1 = yes), balanced per task."""
        image, task, label = self.sample(tasks, n_per_task, split, rng,
                                         jitter=self.jitter if augment else None)
        return {"image": image, "task": task, "label": label}

    def evaluate(self, task: Sequence[str], run, samples: int, seed: int = 2024) -> float:
        """Accuracy of ``run``'s ``logits`` (argmax) on ``samples`` balanced test samples."""
        task = self.parse_task(task)
        rng = np.random.default_rng([zlib.crc32(",".join(task).encode()), seed])
        x, _, y = self.sample([task], samples, "test", rng)
        logits = np.asarray(run(x)[OUTPUT])
        return float((logits.argmax(1) == y).mean())

    @staticmethod
    def _check(task: Sequence[str]) -> None:
        if len(task) != 2 or task[0] not in QUANTIFIERS or task[1] not in TARGETS:
            raise NnfcError(f"not a NumVQA task: {list(task)} (need one quantifier of "
                            f"{', '.join(QUANTIFIERS)} and one target of {', '.join(TARGETS)})")

    def parse_task(self, attrs: Sequence[str]) -> tuple[str, str]:
        """Order an attribute set as (quantifier, target); clear error otherwise."""
        q = [a for a in attrs if a in QUANTIFIERS]
        t = [a for a in attrs if a in TARGETS]
        if len(q) != 1 or len(t) != 1 or len(attrs) != 2:
            self._check(tuple(attrs))
        return q[0], t[0]

    def encode(self, tasks: Sequence[Sequence[str]]) -> np.ndarray:
        """Multi-hot [N, A] float32 over ``attributes``."""
        out = np.zeros((len(tasks), len(self.attributes)), np.float32)
        index = {a: i for i, a in enumerate(self.attributes)}
        for row, task in enumerate(tasks):
            for a in task:
                out[row, index[a]] = 1.0
        return out

    def split_size(self, split: str) -> int:
        return len(self._split[split])

    def sample(self, tasks: Sequence[Sequence[str]], n_per_task: int, split: str,
               rng: np.random.Generator, jitter: TileJitter | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n_per_task`` balanced samples per task from ``split``'s images; ``jitter`` (training
        augmentation) moves each digit tile by a small random affine transform.

        Returns images [N,1,H,W] float32, task ids [N] (index into ``tasks``), labels [N] (1 = yes).
        """
        if split not in self._split:
            raise NnfcError(f"unknown split {split!r} (train, test)")
        n = len(tasks) * n_per_task
        task_ids = np.repeat(np.arange(len(tasks)), n_per_task)
        labels = np.tile(np.arange(n_per_task) % 2, len(tasks)).astype(np.int64)
        digits = np.empty((n, 4), np.int64)
        for i, (tid, yes) in enumerate(zip(task_ids, labels)):
            digits[i] = self._draw_digits(tasks[tid], bool(yes), rng)
        pools = self._by_digit[split]
        src = np.empty((n, 4), np.int64)
        for d in range(10):
            mask = digits == d
            src[mask] = rng.choice(pools[d], size=int(mask.sum()))
        h, w = self.digit_shape
        tiles = self._images[src]  # [N, 4, h, w]
        if jitter is not None and jitter.active:  # inactive: no draws, earlier runs reproduce
            tiles = jitter.apply(tiles, rng)
        img = np.empty((n, 1, 2 * h, 2 * w), np.float32)
        img[:, 0, :h, :w], img[:, 0, :h, w:] = tiles[:, 0], tiles[:, 1]
        img[:, 0, h:, :w], img[:, 0, h:, w:] = tiles[:, 2], tiles[:, 3]
        return img, task_ids, labels

    @staticmethod
    def _draw_digits(task: Sequence[str], yes: bool, rng: np.random.Generator) -> np.ndarray:
        quant, target = task
        match = target_digits(target)
        other = np.setdiff1d(np.arange(10), match)
        if quant == "has":
            counts = np.arange(1, 5) if yes else np.array([0])
        else:
            k = _COUNT[quant]
            counts = np.array([k]) if yes else np.array([c for c in range(5) if c != k])
        count = int(rng.choice(counts))
        digits = np.concatenate([rng.choice(match, count), rng.choice(other, 4 - count)])
        return rng.permutation(digits)
