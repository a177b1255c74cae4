"""AttrOD, the numpy half: scenes, tasks, COCO loading, decode graph, metric."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from nnfc.errors import NnfcError
from nnfc.families import TaskFamily, family_class
from nnfc.families.attrod import AttrOD, box_targets
from nnfc.families.attrod import scenes as S
from nnfc.families.attrod.coco import load_coco, read_image, write_procedural_coco
from nnfc.families.attrod.decode import build_decode_model, decode_numpy, join_decode
from nnfc.families.attrod.metric import map50


@pytest.fixture(scope="module")
def fam():
    return AttrOD()


def test_registered_and_implements_the_contract(fam):
    assert family_class("attrod") is AttrOD
    assert isinstance(fam, TaskFamily)
    assert len(fam.seen_tasks) >= 40 and len(fam.unseen_tasks) >= 8
    assert len(S.CATEGORIES) >= 5 and len(S.COLOURS) >= 6
    assert fam.image_shape == (3, 160, 160)
    # unseen pairs are never asked for by a seen task
    asked = {(c, t[-1]) for t in fam.seen_tasks for c in t[:-1]}
    assert not asked & {(t[0], t[1]) for t in fam.unseen_tasks}
    rebuilt = AttrOD.from_config(fam.manifest_info()["config"])
    assert rebuilt.seen_tasks == fam.seen_tasks and rebuilt.unseen_tasks == fam.unseen_tasks


def test_parse_task_any_order_and_errors(fam):
    assert fam.parse_task(["car", "red"]) == ("red", "car")
    assert fam.parse_task(["blue", "car", "red"]) == ("red", "blue", "car")
    with pytest.raises(NnfcError, match="unknown attribute 'pink'"):
        fam.parse_task(["pink", "car"])
    with pytest.raises(NnfcError, match="unknown attribute 'boat'"):
        fam.parse_task(["red", "boat"])
    with pytest.raises(NnfcError, match="exactly one category"):
        fam.parse_task(["red", "blue"])
    with pytest.raises(NnfcError, match="at least one colour"):
        fam.parse_task(["car"])
    enc = fam.encode([("red", "blue", "car")])
    assert enc.sum() == 3 and enc[0, fam.attributes.index("car")] == 1


def test_scenes_are_deterministic_and_have_distractors():
    a = S.task_scene(np.random.default_rng(5), 160, 160, ["red"], "car")
    b = S.task_scene(np.random.default_rng(5), 160, 160, ["red"], "car")
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert a.image.shape == (3, 160, 160) and a.image.dtype == np.float32
    kinds = set()
    for seed in range(20):
        sc = S.task_scene(np.random.default_rng(seed), 160, 160, ["red"], "car")
        for cat, cols in zip(sc.categories, sc.colours):
            kinds.add((cat == "car", cols == ["red"]))
    assert kinds == {(True, True), (True, False), (False, True), (False, False)}


def test_occlusion_boxes_only_the_visible_part():
    rng = np.random.default_rng(0)
    back = S.SceneObject("bus", "red", (20, 40, 100, 36))
    front = S.SceneObject("bus", "blue", (0, 30, 60, 62))  # nearer: lower bottom edge
    sc = S.render(rng, 120, 160, [back, front], blur=0, noise=0)
    red = sc.boxes[sc.colours.index(["red"])]
    assert red[0] >= 59 and red[2] == 120  # its left part is hidden by the blue bus


def test_procedural_training_never_draws_an_unseen_pair(fam):
    rng = np.random.default_rng(0)
    unseen = {(t[0], t[1]) for t in fam.unseen_tasks}
    for task in fam.seen_tasks[::7]:
        for _ in range(5):
            sc = fam.scene(task, "train", rng)
            assert sc.image.shape[1:] == (fam.train_size, fam.train_size)
            assert not {(c[0], k) for k, c in zip(sc.categories, sc.colours)} & unseen


def test_background_only_pairs_are_never_chosen_as_distractors():
    """draw_unseen = 'background': an unseen pair never is a task's chosen distractor (same
    category in another colour, same colour on another category), only a random object."""
    pair = ("black", "bicycle")
    counts = {}
    for mode in (frozenset(), frozenset({pair})):
        rng = np.random.default_rng(0)
        scenes = [S.task_scene(rng, 96, 96, ["black"], "car", n_objects=(0, 0),
                               background_only=mode) for _ in range(60)]
        scenes += [S.task_scene(rng, 96, 96, ["red"], "bicycle", n_objects=(0, 0),
                                background_only=mode) for _ in range(60)]
        counts[mode] = sum((c[0], k) == pair for sc in scenes
                           for k, c in zip(sc.categories, sc.colours))
    assert counts[frozenset()] > 10 and counts[frozenset({pair})] == 0
    fam = AttrOD(draw_unseen="background")  # random objects may still be unseen pairs
    rng = np.random.default_rng(1)
    unseen = {(t[0], t[1]) for t in fam.unseen_tasks}
    drawn = [(c[0], k) for t in fam.seen_tasks for sc in [fam.scene(t, "train", rng, 160)]
             for k, c in zip(sc.categories, sc.colours)]
    assert set(drawn) & unseen
    with pytest.raises(NnfcError, match="draw_unseen must be true, false or 'background'"):
        AttrOD(draw_unseen="yes")


def test_box_targets_peak_at_the_centre():
    t = box_targets(np.array([[8, 8, 24, 40]], np.float32), np.array([True]), 64, 64, 4)
    assert t["heatmap"].shape == (1, 16, 16)
    y, x = np.unravel_index(np.argmax(t["heatmap"][0]), (16, 16))
    assert (y, x) == (6, 4) and t["heatmap"].max() == 1.0
    l, tp, r, b = t["box"][:, 6, 4]
    assert (l, tp, r, b) == (10, 18, 6, 14)
    none = box_targets(np.array([[8, 8, 24, 40]], np.float32), np.array([False]), 64, 64, 4)
    assert none["heatmap"].max() == 0 and none["box_weight"].sum() == 0


def test_coco_round_trip_and_missing_fields(tmp_path):
    root = write_procedural_coco(tmp_path / "ds", 6, size=96, seed=1)
    items = load_coco(root / "instances.json", root / "colours.json")
    assert len(items) == 6 and all(it.path.is_file() for it in items)
    sc = S.random_scene(np.random.default_rng([1, 0]), 96, 96)
    np.testing.assert_allclose(items[0].boxes, sc.boxes)
    assert items[0].colours == sc.colours and items[0].categories == sc.categories
    img, boxes = read_image(items[0], (48, 48))
    assert img.shape == (3, 48, 48)
    np.testing.assert_allclose(boxes, sc.boxes / 2)
    with pytest.raises(NnfcError, match="not empty"):
        write_procedural_coco(root, 1)
    data = json.loads((root / "instances.json").read_text())
    del data["annotations"][0]["bbox"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(NnfcError, match=r"annotations\[0\] lacks field\(s\) bbox"):
        load_coco(bad, root / "colours.json")
    # the family trains on the COCO files as well
    coco = AttrOD(source="coco", annotations=str(root / "instances.json"),
                  colour_file=str(root / "colours.json"), image_size=96, train_size=96)
    b = coco.batch([("red", "car")], 3, "train", np.random.default_rng(0))
    assert b["image"].shape == (3, 3, 96, 96)


def test_decode_graph_matches_numpy_and_joins_a_model():
    rng = np.random.default_rng(0)
    heat = rng.normal(-2, 2, (1, 1, 10, 12)).astype(np.float32)
    box = rng.normal(0.5, 0.5, (1, 4, 10, 12)).astype(np.float32)
    dec = build_decode_model(40, 48, 4, 20)
    sess = ort.InferenceSession(dec.SerializeToString(), providers=["CPUExecutionProvider"])
    boxes, scores = sess.run(None, {"heatmap": heat, "box": box})
    nb, ns = decode_numpy(heat, box, 4, 20)
    assert boxes.shape == (1, 20, 4) and scores.shape == (1, 20)
    np.testing.assert_allclose(scores, ns, rtol=1e-6)
    np.testing.assert_allclose(boxes, nb, rtol=1e-5, atol=1e-4)
    assert not {n.op_type for n in dec.graph.node} & {"NonMaxSuppression", "NonZero"}
    # a stand-in "network": heatmap and box from the input by two 1x1 convs
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [1, 3, 1, 1], [0.5, -1, 2])
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [4, 3, 1, 1], list(np.linspace(-1, 1, 12)))
    net = helper.make_model(helper.make_graph(
        [helper.make_node("AveragePool", ["input"], ["p"], kernel_shape=[4, 4], strides=[4, 4]),
         helper.make_node("Conv", ["p", "w1"], ["heatmap"]),
         helper.make_node("Conv", ["p", "w2"], ["box"])], "net",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 40, 48])],
        [helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, [1, 1, 10, 12]),
         helper.make_tensor_value_info("box", TensorProto.FLOAT, [1, 4, 10, 12])], [w1, w2]),
        opset_imports=[helper.make_opsetid("", 18)])
    spec = {"image_size": [40, 48], "stride": 4, "top_k": 20}
    joined = join_decode(net, spec)
    onnx.checker.check_model(joined, full_check=True)
    domains = [o.domain for o in joined.opset_import]
    assert len(domains) == len(set(domains))  # ORT's quantizer refuses a domain listed twice
    assert [o.name for o in joined.graph.output] == ["boxes", "scores"]
    x = rng.random((1, 3, 40, 48)).astype(np.float32)
    raw = ort.InferenceSession(net.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})
    got = ort.InferenceSession(joined.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"input": x})
    want = decode_numpy(raw[0], raw[1], 4, 20)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)


def test_map50_perfect_partial_and_crowd():
    gt = [np.array([[10, 10, 30, 30], [50, 50, 70, 90]], np.float32)]
    crowd = [np.array([False, False])]
    perfect = map50(gt, crowd, [gt[0]], [np.array([0.9, 0.8])])
    assert perfect == pytest.approx(1.0)
    half = map50(gt, crowd, [gt[0][:1]], [np.array([0.9])])
    assert 0.4 < half < 0.6
    ignored = map50(gt, [np.array([False, True])], [gt[0]], [np.array([0.9, 0.8])])
    assert ignored == pytest.approx(1.0)
    assert map50(gt, crowd, [np.zeros((0, 4))], [np.zeros(0)]) == 0.0


def test_evaluate_with_an_oracle_scores_high(fam):
    """An oracle run (targets as outputs) gets mAP@0.5 near 1 through the whole path."""
    b = fam.test_batch(("red", "car"), 6)
    outputs = iter(range(0, 6, 6))

    def run(images):
        i = next(outputs)
        heat = np.log(np.clip(b["heatmap"][i:i + len(images)], 1e-4, 1 - 1e-4)
                      / (1 - np.clip(b["heatmap"][i:i + len(images)], 1e-4, 1 - 1e-4)))
        return {"heatmap": heat, "box": np.log(np.maximum(b["box"][i:i + len(images)], 1e-3)
                                               / fam.stride)}

    assert fam.evaluate(("red", "car"), run, 6) > 0.9


def test_evaluate_deployed_equals_evaluate_on_the_same_detections(fam):
    """A deployed artifact (boxes/scores per image, batch 1) scores what the raw outputs score."""
    b = fam.test_batch(("red", "car"), 4)
    heat = np.log(np.clip(b["heatmap"], 1e-4, 1 - 1e-4) / (1 - np.clip(b["heatmap"], 1e-4, 1 - 1e-4)))
    box = np.log(np.maximum(b["box"], 1e-3) / fam.stride)
    index = {img.tobytes(): i for i, img in enumerate(b["image"])}

    def raw(images):
        rows = [index[img.tobytes()] for img in images]
        return {"heatmap": heat[rows], "box": box[rows]}

    def deployed(images):
        assert len(images) == 1  # the joined graph has a static batch of 1
        boxes, scores = fam.decode(raw(images))
        return {"boxes": boxes, "scores": scores}

    want = fam.evaluate(("red", "car"), raw, 4)
    assert want > 0.9
    assert fam.evaluate_deployed(("red", "car"), deployed, 4) == pytest.approx(want)


def test_decode_graph_takes_any_batch():
    """Batch 2 (and 3) through the decode graph: each sample decoded as alone."""
    rng = np.random.default_rng(1)
    dec = build_decode_model(40, 48, 4, 20)
    sess = ort.InferenceSession(dec.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (2, 3):
        heat = rng.normal(-2, 2, (batch, 1, 10, 12)).astype(np.float32)
        box = rng.normal(0.5, 0.5, (batch, 4, 10, 12)).astype(np.float32)
        boxes, scores = sess.run(None, {"heatmap": heat, "box": box})
        assert boxes.shape == (batch, 20, 4) and scores.shape == (batch, 20)
        nb, ns = decode_numpy(heat, box, 4, 20)
        np.testing.assert_allclose(scores, ns, rtol=1e-6)
        np.testing.assert_allclose(boxes, nb, rtol=1e-5, atol=1e-4)
        for i in range(batch):
            one = sess.run(None, {"heatmap": heat[i:i + 1], "box": box[i:i + 1]})
            np.testing.assert_array_equal(one[0][0], boxes[i])
