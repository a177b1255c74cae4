"""The passes on real architectures nobody here wrote (tests/real_archs.py: timm models with
random weights and norm statistics, gates added by forward hooks) exported by torch's dynamo and
TorchScript exporters: every output exact, and the parameters removed against the ideal that
torch-pruning's dependency groups give for the same masks. The full table over more models is
``benchmarks/passes_real_archs.py``."""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("timm") is None or importlib.util.find_spec("torch_pruning") is None:
    pytest.skip("timm / torch-pruning not installed (make install)", allow_module_level=True)

import real_archs  # noqa: E402
from nnfc.onnx_io import count_params  # noqa: E402
from nnfc.passes import apply_gates_with_report  # noqa: E402
from onnx_text import run_all  # noqa: E402

pytestmark = pytest.mark.slow

#: model -> least share of the ideal removed at random 50 % gates (None: exact only)
CASES = {
    ("resnet18", "dynamo"): 95, ("resnet18", "torchscript"): 95,
    ("regnetx_002", "dynamo"): 95,            # grouped convs
    ("mobilenetv3_small_050", "dynamo"): 95,  # hard-swish, squeeze-excitation
    ("convnext_atto", "dynamo"): 95,          # depthwise 7x7, channels-last MLP
    ("vit_tiny", "dynamo"): 95,               # MLP hidden features
    ("ghostnet_050", "dynamo"): 95,           # a channel reaching one Concat twice (coupled)
}


@functools.lru_cache(maxsize=None)
def _exported(name: str, exporter: str):
    arch = real_archs.build(name)
    return arch, real_archs.export(arch, dynamo=exporter == "dynamo")


@pytest.mark.parametrize("name, exporter", list(CASES), ids=[f"{n}-{e}" for n, e in CASES])
def test_real_architecture_prunes_exactly(name, exporter):
    arch, model = _exported(name, exporter)
    x = np.random.default_rng(0).standard_normal(
        (1, 3, arch.input_size, arch.input_size)).astype(np.float32)
    for label, gates in real_archs.gate_sets(arch).items():
        pruned, reports = apply_gates_with_report(model, gates)
        got, ref = run_all(pruned, {"x": x}), run_all(model, {"x": x, **gates})
        for g, r in zip(got, ref):
            assert np.abs(g - r).max() <= 1e-4 * np.abs(r).max(), (label, np.abs(g - r).max())
        if label == "random50" and CASES[name, exporter] is not None:
            removed = count_params(model) - count_params(pruned)
            ideal = real_archs.ideal_removed(arch, gates)
            assert removed >= CASES[name, exporter] / 100 * ideal, (removed, ideal)
        for r in reports:  # every gated-off channel left in place says why (an active channel
            # may go too: one whose only reader is gated off further on)
            assert r.kept <= r.active or r.notes or r.active == 0, r
