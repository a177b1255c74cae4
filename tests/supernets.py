"""Test helpers: tiny gated supernets with randomized weights, exported once per process."""

from __future__ import annotations

import functools
from pathlib import Path
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import torch

from nnfc.onnx_io import count_params
from nnfc.training.backbones import build_backbone
from nnfc.training.export import export_supernet

PRESETS = ["resnet-tiny", "resnet-tiny-bottleneck", "mobilenet-tiny", "efficientnet-tiny",
           "vit-tiny"]
IMAGE = 16
_DIR = Path(tempfile.mkdtemp(prefix="nnfc-test-supernets-"))


def randomize(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights and BN statistics, so BN folding and biases are exercised (and no two
    initializers are equal, which the exporter would deduplicate)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return net.eval()


@functools.lru_cache(maxsize=None)
def supernet(preset: str) -> tuple[torch.nn.Module, onnx.ModelProto]:
    """(torch supernet, its ONNX export) for a preset; cached per process."""
    net = randomize(build_backbone(preset))
    model = export_supernet(net, _DIR / f"{preset}.onnx", (1, 3, IMAGE, IMAGE))
    return net, model


@functools.lru_cache(maxsize=None)
def session(model_bytes: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def predicted_params(net: torch.nn.Module, model: onnx.ModelProto,
                     gates: dict[str, np.ndarray]) -> int:
    """Float parameters the pruned ONNX must have, predicted from the active gates alone.

    Every parameter a gate slices shrinks by kept/size on that axis (a layer with no active
    gate keeps one channel); BatchNorm folds into its conv as one bias per kept channel;
    constants the exporter adds (e.g. GELU's) are the same before and after.
    """
    sizes = {g.name: g.size for g in net.gate_layers()}
    kept = {name: max(1, int(gates["gate." + name].sum())) for name in sizes}
    axes = net.gated_param_axes()

    def torch_count(keep: dict[str, int]) -> int:
        total = 0
        for name, p in net.named_parameters():
            n = p.numel()
            for _, gate in axes.get(name, {}).items():
                n = n // sizes[gate] * keep[gate]
            total += n
        for mod_name, m in net.named_modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # weight+bias (2C) fold into a C bias
                n = m.num_features
                for _, gate in axes.get(f"{mod_name}.weight", {}).items():
                    n = n // sizes[gate] * keep[gate]
                total -= n
        return total

    extras = count_params(model) - torch_count(sizes)
    return torch_count(kept) + extras
