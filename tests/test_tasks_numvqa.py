"""NumVQA task family: attribute space, balanced labels, correct answers, split by source image."""

import gzip

import numpy as np
import pytest

from nnfc.errors import NnfcError
from nnfc.families.augment import TileJitter
from nnfc.families.numvqa import (ATTRIBUTES, UNSEEN_TASKS, NumVQA, all_tasks, answer,
                                        load_digit_source)


@pytest.fixture(scope="module")
def family():
    return NumVQA()


def test_task_space_and_unseen_list(family):
    assert len(all_tasks()) == 60
    assert len(family.seen_tasks) == 60 - len(UNSEEN_TASKS)
    assert not set(family.seen_tasks) & set(family.unseen_tasks)
    # every attribute still occurs in some seen task, so unseen tasks are new combinations
    assert {a for t in family.seen_tasks for a in t} == set(ATTRIBUTES)
    assert ("only-two", "odd") in family.unseen_tasks


def test_answers():
    assert answer(("only-two", "odd"), [1, 3, 2, 4])
    assert not answer(("only-two", "odd"), [1, 3, 5, 4])
    assert answer(("has", "7"), [0, 7, 7, 1]) and not answer(("has", "7"), [0, 1, 2, 3])
    assert answer(("only-four", "even"), [0, 2, 4, 8])
    assert answer(("only-one", "0"), [0, 1, 1, 1]) and not answer(("only-one", "0"), [0, 0, 1, 1])


@pytest.mark.parametrize("task", [("has", "3"), ("only-four", "5"), ("only-two", "odd"),
                                  ("only-three", "even"), ("only-one", "0")])
def test_drawn_digits_match_label(task):
    rng = np.random.default_rng(0)
    for yes in (True, False):
        for _ in range(50):
            digits = NumVQA._draw_digits(task, yes, rng)
            assert len(digits) == 4 and answer(task, digits) == yes


def test_sample_balanced_shapes_and_deterministic(family):
    tasks = family.seen_tasks[:5]
    x, tid, y = family.sample(tasks, 10, "train", np.random.default_rng(1))
    assert x.shape == (50, 1, 16, 16) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    for t in range(5):
        assert y[tid == t].mean() == 0.5
    x2, _, _ = family.sample(tasks, 10, "train", np.random.default_rng(1))
    assert np.array_equal(x, x2)


def test_tile_jitter(family):
    tiles = family._images[:64]
    rng = np.random.default_rng(0)
    assert not TileJitter().active
    # a vanishing transform is the identity (bilinear weights all on the source pixel)
    assert np.allclose(TileJitter(shift=1e-9).apply(tiles, rng), tiles, atol=1e-6)
    # shift=1 with every offset forced to +1 moves the content one pixel down and right
    one = TileJitter(shift=1.0)
    moved = one.apply(tiles, _TopOfRange())
    assert np.allclose(moved[:, 1:, 1:], tiles[:, :-1, :-1], atol=1e-6)
    assert np.all(moved[:, 0, :] == 0) and np.all(moved[:, :, 0] == 0)
    jit = TileJitter(shift=0.5, rotate=10, scale=0.1)
    a = jit.apply(tiles, np.random.default_rng(3))
    assert a.shape == tiles.shape and a.dtype == np.float32
    assert np.array_equal(a, jit.apply(tiles, np.random.default_rng(3)))
    assert 0.0 <= a.min() and a.max() <= 1.0 + 1e-6 and not np.allclose(a, tiles)
    # mild jitter keeps the digit: total ink changes by well under a quarter
    ink = tiles.sum((1, 2))
    assert np.all(np.abs(a.sum((1, 2)) - ink) < 0.25 * ink)
    x, _, _ = family.sample(family.seen_tasks[:2], 8, "train", np.random.default_rng(1), jitter=jit)
    assert x.shape == (16, 1, 16, 16)


class _TopOfRange:
    """Stands in for a numpy Generator: every uniform draw is the top of its range."""

    @staticmethod
    def uniform(low, high, n):
        return np.full(n, float(high))


def test_split_by_source_image(family):
    train, test = family._split["train"], family._split["test"]
    assert not set(train) & set(test)
    assert len(train) + len(test) == 1797
    # a test-split image only contains test-split digits
    rng = np.random.default_rng(3)
    x, _, _ = family.sample([("has", "1")], 4, "test", rng)
    tiles = {x[i, 0, :8, :8].tobytes() for i in range(4)}
    test_tiles = {family._images[j].tobytes() for j in test}
    assert tiles <= test_tiles


def test_encode_and_parse(family):
    enc = family.encode([("only-two", "odd")])
    assert enc.shape == (1, len(ATTRIBUTES)) and enc.sum() == 2
    assert family.parse_task(["odd", "only-two"]) == ("only-two", "odd")
    with pytest.raises(NnfcError, match="not a NumVQA task"):
        family.parse_task(["odd", "even"])


def test_seen_subset_and_overlap_error():
    fam = NumVQA(seen=[["has", "1"], ["only-one", "odd"]])
    assert fam.seen_tasks == [("has", "1"), ("only-one", "odd")]
    with pytest.raises(NnfcError, match="both seen and unseen"):
        NumVQA(seen=[["only-two", "odd"]])


def _write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def test_mnist_idx_reader(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (40, 28, 28))
    labels = np.arange(40) % 10
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    src = load_digit_source(tmp_path)
    assert src.images.shape == (40, 28, 28) and np.array_equal(src.labels, labels)
    assert np.allclose(src.images, imgs / 255.0)
    fam = NumVQA(mnist_dir=tmp_path)
    x, _, _ = fam.sample([("has", "1")], 2, "train", rng)
    assert x.shape == (2, 1, 56, 56)


def test_mnist_errors(tmp_path):
    with pytest.raises(NnfcError, match="no MNIST IDX files"):
        load_digit_source(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"garbage!")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"garbage!")
    with pytest.raises(NnfcError, match="not an unsigned-byte IDX"):
        load_digit_source(tmp_path)
