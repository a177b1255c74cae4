"""AttrOD training end to end on a tiny detector: checkpoints, resume, bundle with mAP@0.5."""

import json

import pytest
from safetensors.numpy import load_file

from nnfc.training import detection_train
from nnfc.training.config import config_from_dict
from nnfc.training.trainer import train_factory

TINY = {
    "seed": 0,
    "task": {"family": "attrod"},
    "backbone": {"family": "resnet", "depths": [1, 1, 1], "widths": [8, 16, 16],
                 "stem": "imagenet", "stem_width": 8, "head_width": 8, "head_scales": 3},
    "assembler": {"depth": 0, "gater_hidden": 0, "init_bias": 0.5},
    "train": {"epochs": 3, "samples_per_epoch": 8, "batch_size": 4, "optimizer": "adamw",
              "lr": 0.003, "eval_per_task": 2, "eval_limits": [1.0], "threads": 1,
              "device": "cpu"},
}


def _train(tmp, name, **kw):
    cfg = config_from_dict(json.loads(json.dumps(TINY)))
    return train_factory(cfg, tmp / name, checkpoint_dir=tmp / f"{name}.ckpt", progress=False,
                         log=lambda m: None, **kw)


def test_resume_mid_epoch_continues_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(detection_train, "CHECKPOINT_EVERY", 1)
    monkeypatch.setattr(detection_train, "EVAL_EVERY", 100)
    assert _train(tmp_path, "a", stop_after=2) is None
    # b: interrupted after one step of epoch 2 (a mid-epoch checkpoint), then resumed
    calls = {"n": 0}
    real = detection_train.save_checkpoint

    def crash_after_mid_epoch_checkpoint(*args, **kwargs):
        real(*args, **kwargs)
        state = args[3]
        if state["epoch"] == 1 and state["step"] == 1:
            calls["n"] += 1
            raise KeyboardInterrupt

    monkeypatch.setattr(detection_train, "save_checkpoint", crash_after_mid_epoch_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, "b")
    monkeypatch.setattr(detection_train, "save_checkpoint", real)
    assert calls["n"] == 1
    assert _train(tmp_path, "b", resume=True, stop_after=2) is None
    wa = load_file(str(tmp_path / "a.ckpt" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b.ckpt" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert (wa[k] == wb[k]).all(), k


def test_tiny_factory_writes_a_detection_bundle(tmp_path, monkeypatch):
    monkeypatch.setattr(detection_train, "EVAL_EVERY", 100)
    cfg = dict(TINY, train=dict(TINY["train"], epochs=1))
    root = train_factory(config_from_dict(cfg), tmp_path / "f", progress=False,
                         log=lambda m: None)
    manifest = json.loads((root / "manifest.json").read_text())
    assert [o["name"] for o in manifest["outputs"]] == ["heatmap", "box"]
    assert manifest["task_family"]["family"] == "attrod"
    assert manifest["outputs"][0]["decode"]["top_k"] == 50
    seen = manifest["training"]["metrics"]["seen"]["1"]
    assert 0.0 <= seen["map50"] <= 1.0 and seen["tasks"] == 44
    # the generated model (ORT: assembler -> pruned net -> decode graph) draws its boxes
    from PIL import Image

    from nnfc.bundle import read_bundle
    from nnfc.families.attrod.draw import bundle_detections_png

    png = bundle_detections_png(read_bundle(root), [["car", "red"]], tmp_path / "d.png",
                                limit=0.5, scenes=2)
    assert Image.open(png).size == (2 * 320, 320)
