"""The task-family contract: registry, NumVQA as its implementation, backbone features + a gated
multi-output head exported with named outputs and pruned exactly (every output), and compile's
equivalence check over every output."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from nnfc.errors import NnfcError
from nnfc.families import (TaskFamily, family_class, family_from_manifest, task_config)
from nnfc.families.numvqa import NumVQA
from nnfc.targets.onnxruntime import open_session


@pytest.fixture(scope="module")
def family():
    return NumVQA.from_config({"seen": [["has", "0"], ["only-two", "odd"]],
                               "unseen": [["has", "1"]]})


def test_registry_and_task_config():
    assert family_class("numvqa") is NumVQA
    with pytest.raises(NnfcError, match="unknown task family 'nope'"):
        family_class("nope")
    cfg = task_config({"split_seed": 3})
    assert cfg["family"] == "numvqa" and cfg["split_seed"] == 3 and cfg["test_fraction"] == 0.25
    with pytest.raises(NnfcError, match="unknown key.*test_fraktion"):
        task_config({"test_fraktion": 0.2})


def test_numvqa_implements_the_contract(family):
    assert isinstance(family, TaskFamily)
    assert family.metric == "accuracy"
    assert family.parse_task(["odd", "only-two"]) == ("only-two", "odd")
    b = family.batch(family.seen_tasks, 6, "train", np.random.default_rng(0), augment=True)
    assert set(b) == {"image", "task", "label"}
    assert b["image"].shape == (12, *family.image_shape) and b["image"].dtype == np.float32
    assert list(b["task"]) == [0] * 6 + [1] * 6 and b["label"].sum() == 6
    assert family.output_spec() == [{"name": "logits", "shape": [1, 2], "classes": ["no", "yes"]}]
    # balanced labels: always answering "yes" is right half of the time
    always_yes = lambda x: {"logits": np.tile([[0.0, 1.0]], (len(x), 1))}  # noqa: E731
    assert family.evaluate(("has", "0"), always_yes, 40) == 0.5
    info = family.manifest_info()
    assert info["family"] == "numvqa"
    again = family_from_manifest({"task_family": info})
    assert again.seen_tasks == family.seen_tasks and again.unseen_tasks == family.unseen_tasks


def test_manifest_without_family_config_reads_the_training_config():
    """Bundles written before task_family had a config: rebuilt from training.config.task."""
    old = {"task_family": {"family": "numvqa", "source": "sklearn-digits"},
           "training": {"config": {"task": {"family": "numvqa", "mnist_dir": "",
                                            "test_fraction": 0.25, "split_seed": 0,
                                            "unseen": [["has", "1"]], "seen": None}}}}
    fam = family_from_manifest(old)
    assert fam.unseen_tasks == [("has", "1")] and len(fam.seen_tasks) == 59


class _TwoOutputHead(nn.Module):
    """A detection-like head: gated 3x3 conv on the upsampled deepest feature added to the finer
    one, then two named outputs."""

    GATED_PARAMS = (("mix.weight", 0, "gate"), ("mix.bias", 0, "gate"),
                    ("heat.weight", 1, "gate"), ("box.weight", 1, "gate"))

    def __init__(self, channels):
        super().__init__()
        from nnfc.training.gating import Gate
        self.lateral = nn.Conv2d(channels[-1], channels[0], 1)
        self.mix = nn.Conv2d(channels[0], 12, 3, padding=1)
        self.gate = Gate("head.mix", 12, "conv")
        self.heat = nn.Conv2d(12, 3, 1)
        self.box = nn.Conv2d(12, 4, 1)

    def forward(self, feats, gates=None):
        up = nn.functional.interpolate(self.lateral(feats[-1]), size=feats[0].shape[-2:],
                                       mode="nearest")
        h = self.gate(torch.relu(self.mix(feats[0] + up)), gates)
        return {"heatmap": torch.sigmoid(self.heat(h)), "boxes": self.box(h)}


@pytest.mark.parametrize("preset", ["resnet-tiny", "mobilenet-tiny"])
def test_features_head_named_outputs_prune_exactly(tmp_path, preset):
    from nnfc.passes import apply_gates
    from nnfc.training.backbones import build_backbone
    from nnfc.training.export import export_supernet
    from nnfc.training.model import FamilyModel

    torch.manual_seed(0)
    backbone = build_backbone(preset, num_classes=None, in_channels=3)
    feats = backbone.features(torch.randn(1, 3, 16, 16))
    assert [f.shape[1] for f in feats] == backbone.feature_channels()
    model = FamilyModel(backbone, _TwoOutputHead(backbone.feature_channels()))
    layers = model.gate_layers()
    assert layers[-1].name == "head.mix" and layers[:-1] == backbone.gate_layers()
    assert model.gated_param_axes()["head.mix.weight"] == {0: "head.mix"}
    proto = export_supernet(model, tmp_path / "m.onnx", (1, 3, 16, 16))
    assert [o.name for o in proto.graph.output] == ["heatmap", "boxes"]
    session = open_session(proto.SerializeToString())
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    for _ in range(3):
        gates = {g.input_name: (rng.random(g.size) < 0.5).astype(np.float32) for g in layers}
        want = session.run(None, {"input": x, **gates})
        got = open_session(apply_gates(proto, gates).SerializeToString()).run(None, {"input": x})
        assert len(got) == 2
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=1e-5)


def _two_output_model() -> onnx.ModelProto:
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])
    g = helper.make_tensor_value_info("gate.a", TensorProto.FLOAT, [4])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("y1", "y2")]
    nodes = [helper.make_node("Mul", ["input", "gate.a"], ["y1"]),
             helper.make_node("Add", ["input", "input"], ["y2"])]
    graph = helper.make_graph(nodes, "two", [x, g], outs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


class _ShiftSecondOutput:
    """A target whose second output is off by 0.5 (the first is right)."""

    def run(self, artifact, inputs):
        outs = open_session(str(artifact)).run(None, dict(inputs))
        return [outs[0], outs[1] + 0.5]


class _FirstOutputOnly:
    def run(self, artifact, inputs):
        return open_session(str(artifact)).run(None, dict(inputs))[:1]


def test_equivalence_compares_every_output(tmp_path):
    from nnfc.compiler.measured_rounds import equivalence as _equivalence
    from nnfc.passes import apply_gates

    model = _two_output_model()
    gates = {"gate.a": np.array([1, 0, 1, 1], np.float32)}
    path = tmp_path / "pruned.onnx"
    onnx.save_model(apply_gates(model, gates), str(path))
    with pytest.raises(NnfcError, match="output 'y2' differs from the gated supernet's by 0.5"):
        _equivalence(None, model, gates, _ShiftSecondOutput(), path)  # beyond the tolerance
    with pytest.raises(NnfcError, match="1 output"):
        _equivalence(None, model, gates, _FirstOutputOnly(), path)
