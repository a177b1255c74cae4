"""Joint training: a tiny run learns above chance, respects limits, is deterministic, resumes,
and runs under torchrun with 2 CPU processes (DDP, gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from factory_fixtures import tiny_config, toml_text
from nnfc.bundle import read_bundle
from nnfc.errors import NnfcError
from nnfc.training.config import config_from_dict, load_config
from nnfc.training.trainer import train_factory

REPO = Path(__file__).resolve().parent.parent


def _train(tmp, name, **overrides):
    cfg = config_from_dict(tiny_config(**overrides))
    return train_factory(cfg, tmp / name, progress=False, log=lambda m: None)


def test_tiny_run_learns_and_respects_limits(tmp_path):
    root = _train(tmp_path, "f", history_eval_every=2, history_eval_per_task=2)
    metrics = read_bundle(root).manifest["training"]["metrics"]
    # the periodic evaluation (every 2 epochs and after the last) in the training history
    evals = {h["epoch"]: h["eval"] for h in metrics["history"] if "eval" in h}
    assert sorted(evals) == [2, 3]
    assert evals[3]["per_task"] == 2 and evals[3]["metric"] == "accuracy"
    assert set(evals[3]["seen"]) == set(metrics["seen"])  # the same limits as the final eval
    assert all(0 <= r["accuracy"] <= 1 and r["activation_ratio"] <= float(lim) + 1e-6
               for lim, r in evals[3]["seen"].items())
    # two seen tasks, balanced yes/no: chance is 50%
    assert metrics["seen"]["1"]["accuracy"] >= 0.75
    assert metrics["seen"]["0.5"]["activation_ratio"] <= 0.5 + 0.01
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert (tmp_path / "f.ckpt" / "state.json").is_file()


def test_deterministic_and_resume_equals_uninterrupted(tmp_path):
    a = _train(tmp_path, "a", epochs=2, samples_per_epoch=640)
    b = _train(tmp_path, "b", epochs=2, samples_per_epoch=640)
    wa, wb = load_file(str(a / "supernet.safetensors")), load_file(str(b / "supernet.safetensors"))
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    # 1 epoch, then --resume to 2 epochs: same weights as 2 epochs in one go
    cfg = config_from_dict(tiny_config(epochs=2, samples_per_epoch=640))
    ck = tmp_path / "ck"
    assert train_factory(cfg, tmp_path / "c", checkpoint_dir=ck, progress=False,
                         log=lambda m: None, stop_after=1) is None
    assert json.loads((ck / "state.json").read_text())["epoch"] == 0
    assert not (tmp_path / "c").exists()
    c = train_factory(cfg, tmp_path / "c", checkpoint_dir=ck, resume=True,
                      progress=False, log=lambda m: None)
    wc = load_file(str(c / "supernet.safetensors"))
    assert all(np.allclose(wa[k], wc[k], atol=1e-6) for k in wa)


def test_resume_errors(tmp_path):
    cfg = config_from_dict(tiny_config(epochs=1, samples_per_epoch=640))
    with pytest.raises(NnfcError, match="no checkpoint"):
        train_factory(cfg, tmp_path / "x", resume=True, progress=False)
    ck = tmp_path / "ck"
    two = dict(epochs=2, samples_per_epoch=640)
    assert train_factory(config_from_dict(tiny_config(**two)), tmp_path / "y", checkpoint_dir=ck,
                         progress=False, log=lambda m: None, stop_after=1) is None
    with pytest.raises(NnfcError, match="different config"):  # another recipe
        train_factory(config_from_dict(tiny_config(**two, lr=0.5)), tmp_path / "y",
                      checkpoint_dir=ck, resume=True, progress=False, log=lambda m: None)
    # where and how fast it runs is not the recipe: another thread count resumes
    root = train_factory(config_from_dict(tiny_config(**two, threads=2)), tmp_path / "y",
                         checkpoint_dir=ck, resume=True, progress=False, log=lambda m: None)
    assert read_bundle(root).manifest["training"]["metrics"]["history"][-1]["epoch"] == 2


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[backbone]\nfamily = "resnet"\n[train]\nepochz = 3\n')
    with pytest.raises(NnfcError, match=r"unknown key\(s\) in \[train\]: epochz"):
        load_config(bad)
    bad.write_text("[train]\nepochs = 3\n")
    with pytest.raises(NnfcError, match=r"\[backbone\]"):
        load_config(bad)
    bad.write_text("seed = [")
    with pytest.raises(NnfcError, match="not valid TOML"):
        load_config(bad)
    for shipped in sorted((REPO / "configs").glob("**/*.toml")):
        load_config(shipped)


def test_torchrun_two_cpu_processes(tmp_path):
    cfg = tiny_config(epochs=1, samples_per_epoch=512, batch_size=32, eval_per_task=10)
    path = tmp_path / "tiny.toml"
    path.write_text(toml_text(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "nnfc.cli", "train", "--config", str(path), "--out", str(tmp_path / "ddp"),
         "--no-progress"],
        capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bundle = read_bundle(tmp_path / "ddp")
    assert bundle.manifest["training"]["world_size"] == 2
    history = bundle.manifest["training"]["metrics"]["history"]
    assert len(history) == 1 and history[0]["epoch"] == 1


def test_progressive_shrinking_lowers_the_smallest_limit_drawn():
    """train.limit_shrink_epochs: limits drawn in epoch 0 start at limit_shrink_from, fall
    log-linearly to limit_min, and stay there (Once-for-All's progressive shrinking); off, every
    epoch draws from limit_min."""
    from nnfc.training.schedule import limit_floor, sample_limits
    cfg = config_from_dict(tiny_config(limit_min=0.02, limit_max=1.0, limit_sampling="loguniform",
                                       limit_shrink_epochs=4.0, limit_shrink_from=0.32))
    assert limit_floor(cfg, 0) == pytest.approx(0.32)
    assert limit_floor(cfg, 2) == pytest.approx(0.08)  # halfway in log space
    assert limit_floor(cfg, 4) == limit_floor(cfg, 9) == pytest.approx(0.02)
    rng = np.random.default_rng(0)
    first, late = sample_limits(cfg, 2000, rng, 0), sample_limits(cfg, 2000, rng, 6)
    assert first.min() >= 0.32 - 1e-6 and late.min() < 0.03 and late.max() <= 1.0
    off = config_from_dict(tiny_config(limit_min=0.02, limit_sampling="loguniform"))
    assert sample_limits(off, 2000, np.random.default_rng(0), 0).min() < 0.03
    with pytest.raises(NnfcError, match="limit_shrink"):
        config_from_dict(tiny_config(limit_shrink_epochs=-1.0))
