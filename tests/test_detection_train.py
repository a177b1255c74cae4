"""AttrOD through `nnfc train`'s contract path on a tiny detector: resume, bundle with mAP@0.5,
and the generated model's detections drawn (ORT end to end)."""

import json

from safetensors.numpy import load_file

from nnfc.training.config import config_from_dict
from nnfc.training.trainer import train_factory

TINY = {
    "seed": 0,
    "task": {"family": "attrod", "train_size": 32},
    "backbone": {"family": "resnet", "depths": [1, 1, 1], "widths": [8, 16, 16],
                 "stem": "imagenet", "stem_width": 8},
    "head": {"width": 8, "scales": 3},
    "assembler": {"depth": 0, "gater_hidden": 0, "init_bias": 0.5},
    "train": {"epochs": 3, "samples_per_epoch": 176, "batch_size": 22, "optimizer": "adamw",
              "lr": 0.003, "eval_per_task": 2, "eval_limits": [1.0], "threads": 1,
              "device": "cpu"},
}


def _cfg(**train):
    data = json.loads(json.dumps(TINY))
    data["train"].update(train)
    return config_from_dict(data)


def _train(tmp, name, cfg, **kw):
    return train_factory(cfg, tmp / name, checkpoint_dir=tmp / f"{name}.ckpt", progress=False,
                         log=lambda m: None, **kw)


def test_resume_continues_exactly(tmp_path):
    assert _train(tmp_path, "a", _cfg(), stop_after=2) is None
    assert _train(tmp_path, "b", _cfg(), stop_after=1) is None
    assert _train(tmp_path, "b", _cfg(), resume=True, stop_after=2) is None
    wa = load_file(str(tmp_path / "a.ckpt" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b.ckpt" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert (wa[k] == wb[k]).all(), k


def test_resume_mid_epoch(tmp_path, monkeypatch):
    """checkpoint_every: a run killed after a mid-epoch checkpoint continues at that step (exact
    here: hard_fraction = 1 leaves SemHash no random choice)."""
    from nnfc.training import trainer

    cfg = lambda: _cfg(checkpoint_every=2, hard_fraction=1.0)  # noqa: E731
    assert _train(tmp_path, "a", cfg(), stop_after=2) is None
    real = trainer.save_checkpoint

    def killed_after_mid_epoch_checkpoint(*args, **kwargs):
        real(*args, **kwargs)
        if args[3]["epoch"] == 1 and args[3].get("step") == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", killed_after_mid_epoch_checkpoint)
    try:
        _train(tmp_path, "b", cfg())
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(trainer, "save_checkpoint", real)
    state = json.loads((tmp_path / "b.ckpt" / "state.json").read_text())
    assert (state["epoch"], state["step"]) == (1, 2)
    assert _train(tmp_path, "b", cfg(), resume=True, stop_after=2) is None
    wa = load_file(str(tmp_path / "a.ckpt" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b.ckpt" / "model.safetensors"))
    for k in wa:
        assert (wa[k] == wb[k]).all(), k


def test_tiny_factory_writes_a_detection_bundle(tmp_path, capsys):
    from PIL import Image

    from nnfc.bundle import read_bundle
    from nnfc.families.attrod.draw import bundle_detections_png

    root = _train(tmp_path, "f", _cfg(epochs=1))
    manifest = json.loads((root / "manifest.json").read_text())
    assert [o["name"] for o in manifest["output"]] == ["heatmap", "box"]
    assert manifest["task_family"]["family"] == "attrod"
    assert manifest["output"][0]["decode"]["top_k"] == 50
    metrics = manifest["training"]["metrics"]
    assert metrics["metric"] == "map50"
    assert 0.0 <= metrics["seen"]["1"]["map50"] <= 1.0 and metrics["seen"]["1"]["tasks"] == 44
    # the generated model (ORT: assembler -> pruned net -> decode graph) draws its boxes
    png = bundle_detections_png(read_bundle(root), [["car", "red"]], tmp_path / "d.png",
                                limit=0.5, scenes=2)
    width, height = Image.open(png).size  # tiles 3x the 160 px scene, title bar, legend strip
    assert width == 2 * 480 and 480 < height < 600
    # nnfc eval reports map50 (the JSON list schema + metric/value); bad tasks: one line each
    from cli_runner import run_cli

    code, out, _ = run_cli(["eval", "--bundle", str(root), "--task", "car,red", "--limit", "1",
                            "--samples", "2", "--json"], capsys)
    (row,) = json.loads(out)
    assert code == 0 and row["metric"] == "map50" and row["value"] == row["map50"]
    for bad, why in [("pink,car", "unknown attribute"), ("red,blue", "exactly one category"),
                     ("car", "at least one colour")]:
        code, out, err = run_cli(["eval", "--bundle", str(root), "--task", bad, "--limit", "1",
                                  "--samples", "2"], capsys)
        assert code != 0 and why in err and len(err.strip().splitlines()) == 1, err
    # nnfc compile runs the pruned network joined to its decode graph, checked against the
    # gated supernet joined alike
    out = tmp_path / "compiled"
    code, _, err = run_cli(["profile", "--bundle", str(root), "--subnets", "10", "--runs", "1",
                            "--rounds", "1", "--warmup", "0"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["compile", "--bundle", str(root), "--task", "car,red", "--target",
                            "desktop", "--lat", "1000ms", "-o", str(out)], capsys)
    assert code == 0, err
    import onnx

    model = onnx.load(str(out / "model.onnx"))
    assert [o.name for o in model.graph.output] == ["boxes", "scores"]
    report = json.loads((out / "report.json").read_text())
    assert report["max_abs_diff_vs_supernet"] <= 1e-4
