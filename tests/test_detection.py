"""The gated detector (torch half of AttrOD): outputs, loss, export, and pass exactness."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from nnfc.families.attrod import AttrOD
from nnfc.passes import apply_gates
from nnfc.training.detection import (build_detector, detection_loss, focal_heatmap_loss,
                                     giou_loss)
from nnfc.training.model import FamilyModel
from nnfc.training.export import export_supernet
from supernets import randomize

IMAGE = 32
TINY = {
    "resnet": dict(depths=[1, 1, 1], widths=[8, 16, 16], stem="imagenet", stem_width=8),
    "mobilenet": dict(setting=((1, 8, 1, 1), (4, 12, 2, 2), (4, 16, 1, 2), (4, 16, 1, 2)),
                      stem_width=8, stem_stride=2, last_width=0),
}
ATOL = 1e-5


def _tiny(family: str) -> FamilyModel:
    return randomize(build_detector(family, TINY[family], {"width": 8, "scales": 3}))


@pytest.fixture(scope="module", params=sorted(TINY))
def exported(request, tmp_path_factory):
    det = _tiny(request.param)
    path = tmp_path_factory.mktemp("det") / "det.onnx"
    model = export_supernet(det, path, (1, 3, IMAGE, IMAGE))
    return det, model


def _run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def test_outputs_at_stride_4_and_head_gated(exported):
    det, model = exported
    out = det(torch.zeros(2, 3, IMAGE, IMAGE))
    assert out["heatmap"].shape == (2, 1, IMAGE // 4, IMAGE // 4)
    assert out["box"].shape == (2, 4, IMAGE // 4, IMAGE // 4)
    names = [g.name for g in det.gate_layers()]
    assert "head.tower" in names and sum(n.startswith("head.lateral") for n in names) == 3
    assert [o.name for o in model.graph.output] == ["heatmap", "box"]
    ops = {n.op_type for n in model.graph.node}
    assert "Resize" in ops and "Add" in ops


def test_random_gates_pruned_equals_supernet_every_output(exported):
    det, model = exported
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, IMAGE, IMAGE)).astype(np.float32)
    for trial in range(6):
        gates = {g.input_name: (rng.random(g.size) < [0.2, 0.5, 0.8, 1.0, 0.5, 0.3][trial])
                 .astype(np.float32) for g in det.gate_layers()}
        pruned = apply_gates(model, gates)
        onnx.checker.check_model(pruned)
        ref = _run(model, {"input": x, **gates})
        out = _run(pruned, {"input": x})
        assert len(out) == len(ref) == 2
        for r, o in zip(ref, out):
            assert np.max(np.abs(o - r)) <= ATOL * max(1.0, float(np.abs(r).max()))
        full = sum(np.asarray(i.dims).prod() for i in model.graph.initializer)
        kept = sum(np.asarray(i.dims).prod() for i in pruned.graph.initializer)
        if trial < 3:
            assert kept < full  # head and backbone channels really go


def test_head_channels_are_pruned(exported):
    det, model = exported
    gates = {g.input_name: np.ones(g.size, np.float32) for g in det.gate_layers()}
    for g in det.gate_layers():
        if g.name.startswith("head.lateral"):
            gates[g.input_name][g.size // 2:] = 0  # the same half off in every lateral
    pruned = apply_gates(model, gates)
    size = lambda m: sum(int(np.prod(i.dims)) for i in m.graph.initializer)  # noqa: E731
    # every lateral loses half its filters, the tower half its input channels
    lateral = sum(p.numel() for n, p in det.head.laterals.named_parameters() if "conv" in n)
    assert size(model) - size(pruned) >= lateral // 2


def test_loss_is_small_for_the_targets_and_large_otherwise():
    fam = AttrOD(train_size=96)
    b = fam.batch(fam.seen_tasks[:4], 2, "train", np.random.default_rng(0))
    batch = {k: torch.from_numpy(b[k]) for k in ("heatmap", "box", "box_weight")}
    # a "perfect" output: logits from the target heatmap, log distances of the targets
    heat = torch.logit(batch["heatmap"].clamp(1e-4, 1 - 1e-4))
    box = torch.log(batch["box"].clamp(min=1e-3) / fam.stride)
    good = detection_loss({"heatmap": heat, "box": box}, batch, fam.stride)
    bad = detection_loss({"heatmap": torch.zeros_like(heat), "box": torch.zeros_like(box)},
                         batch, fam.stride)
    assert float(good["loss"]) < 0.2 < float(bad["loss"])


def test_giou_and_focal_basics():
    a = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    assert float(giou_loss(a, a)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(giou_loss(a, a * 3)[0]) > 0.5
    t = torch.zeros(1, 1, 4, 4)
    t[0, 0, 1, 1] = 1.0
    assert float(focal_heatmap_loss(torch.full_like(t, -8.0) + 16 * t, t)) < 0.01


def test_a_training_step_lowers_the_loss():
    torch.manual_seed(0)
    det = build_detector("resnet", TINY["resnet"], {"width": 8, "scales": 3})
    fam = AttrOD(train_size=32)
    b = fam.batch(fam.seen_tasks[:2], 2, "train", np.random.default_rng(1))
    batch = {k: torch.from_numpy(b[k]) for k in ("heatmap", "box", "box_weight")}
    x = torch.from_numpy(b["image"][:, :, :32, :32].copy())
    batch = {k: v[..., :8, :8] for k, v in batch.items()}
    opt = torch.optim.Adam(det.parameters(), 1e-2)
    first = None
    for _ in range(15):
        loss = detection_loss(det(x), batch, fam.stride)["loss"]
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.7 * first


def test_training_half_implements_the_contract():
    from nnfc.families import TrainingFamily
    from nnfc.training.detection import AttrODTraining

    half = AttrODTraining()
    assert isinstance(half, TrainingFamily)
    det = _tiny("resnet")
    head = half.build_head(det.feature_channels(), {"width": 8, "scales": 3})
    x = torch.zeros(2, 3, IMAGE, IMAGE)
    out = head(det.features(x, None), None)
    assert list(out) == [o["name"] for o in AttrOD().output_spec()]
