"""The factories shipped in the repository: valid, small, reproducible from their configs, and
accurate after pruning."""

from pathlib import Path

import numpy as np
import pytest

from nnfc.bundle import default_bundle_path, read_bundle
from nnfc.training.config import config_from_dict, load_config
from nnfc.training.trainer import recipe
from nnfc.evaluation import activation_ratio, evaluate_bundle, run_assembler

REPO = Path(__file__).resolve().parent.parent
SHIPPED = [("numvqa-resnet", "numvqa-resnet"), ("numvqa-vit", "numvqa-vit")]


@pytest.mark.parametrize("name, config", SHIPPED)
def test_shipped_factory_valid_small_and_from_config(name, config):
    root = REPO / "factories" / name
    bundle = read_bundle(root)  # hashes and format version
    assert sum(p.stat().st_size for p in root.iterdir()) <= 10 * 2 ** 20
    cfg = load_config(REPO / "configs" / f"{config}.toml")
    # knobs added after the bundle was trained are absent from its manifest: read as defaults
    assert config_from_dict(bundle.manifest["training"]["config"]).to_dict() == cfg.to_dict()
    assert bundle.manifest["training"]["seed"] == cfg.seed


def test_default_path_is_the_attrod_resnet_factory(monkeypatch):
    """Commands without --bundle use the AttrOD ResNet detection factory."""
    monkeypatch.delenv("NNFC_FACTORY", raising=False)
    assert default_bundle_path() == REPO / "factories" / "default"
    manifest = read_bundle(default_bundle_path()).manifest
    assert manifest["backbone"]["family"] == "resnet"
    assert manifest["task_family"]["family"] == "attrod"


def assert_limits_kept(bundle, lowest: float) -> None:
    """Every task, at limits from ``lowest`` to 1, gets gates within its limit."""
    tasks = bundle.tasks("seen") + bundle.tasks("unseen")
    limits = np.linspace(lowest, 1.0, len(tasks))
    gates = run_assembler(bundle, tasks, limits)
    for i, limit in enumerate(limits):
        assert activation_ratio({k: v[i] for k, v in gates.items()}) <= limit + 1e-6


@pytest.mark.parametrize("name", ["numvqa-resnet", "numvqa-vit"])
def test_assembler_never_exceeds_limit(name):
    assert_limits_kept(read_bundle(REPO / "factories" / name), 0.01)


def test_numvqa_factory_accuracy_after_pruning():
    bundle = read_bundle(REPO / "factories" / "numvqa-resnet")
    rows = evaluate_bundle(bundle, [["has", "3"], ["only-one", "even"]], [0.1], samples=100)
    assert all(r.seen and r.value >= 0.9 and r.activation_ratio <= 0.1 for r in rows)


def test_numvqa_factory_unseen_tasks_after_pruning():
    """Attribute combinations never trained on still get accurate subnets (additive assembler)."""
    bundle = read_bundle(REPO / "factories" / "numvqa-resnet")
    rows = evaluate_bundle(bundle, [["only-one", "2"], ["has", "even"]], [0.1], samples=100)
    assert all(not r.seen and r.value >= 0.9 and r.activation_ratio <= 0.1 for r in rows)


@pytest.mark.parametrize("name, config", [("default", "attrod-resnet"),
                                          ("attrod-mobilenet", "attrod-mobilenet")])
def test_attrod_factory_valid_and_from_config(name, config):
    """The AttrOD detection factories (the default ResNet one and MobileNetV2): hashes, their
    config's recipe (trained with --threads 1 beside other jobs: where it ran may differ), and
    limits kept."""
    root = REPO / "factories" / name
    bundle = read_bundle(root)
    assert sum(p.stat().st_size for p in root.iterdir()) <= 25 * 2 ** 20
    cfg = load_config(REPO / "configs" / f"{config}.toml")
    assert recipe(config_from_dict(bundle.manifest["training"]["config"])) == recipe(cfg)
    assert_limits_kept(bundle, 0.05)


def test_attrod_factory_detects_after_pruning():
    """Pruned subnets at a 25 % limit find the task's objects, on a seen and an unseen task."""
    bundle = read_bundle(REPO / "factories" / "default")
    seen, unseen = bundle.tasks("seen")[0], bundle.tasks("unseen")[0]
    rows = evaluate_bundle(bundle, [seen, unseen], [0.25], samples=24)
    assert [r.metric for r in rows] == ["map50", "map50"]
    assert all(r.value >= 0.6 and r.activation_ratio <= 0.25 for r in rows), rows
