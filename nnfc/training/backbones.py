"""Backbone registry: build a gated supernet from a family name and a config dict."""

from __future__ import annotations

from typing import Any, Callable

from nnfc.training.gating import GatedSupernet
from nnfc.training.mobilenet import GatedMobileNet
from nnfc.training.resnet import GatedResNet
from nnfc.training.vit import GatedViT

FAMILIES: dict[str, Callable[..., GatedSupernet]] = {
    "resnet": GatedResNet,
    "mobilenet": GatedMobileNet,
    "vit": GatedViT,
}

# Named sizes: tiny ones for tests, standard ones for benchmarks.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "resnet-tiny": ("resnet", dict(depths=(1, 1), widths=(8, 16), stem="small",
                                   num_classes=10, in_channels=3)),
    "resnet-tiny-bottleneck": ("resnet", dict(depths=(1, 1), widths=(4, 8), block="bottleneck",
                                              stem="small", num_classes=10)),
    "resnet18": ("resnet", dict(depths=(2, 2, 2, 2), block="basic")),
    "resnet50": ("resnet", dict(depths=(3, 4, 6, 3), block="bottleneck")),
    "mobilenet-tiny": ("mobilenet", dict(setting=((1, 8, 1, 1), (4, 12, 2, 2), (4, 16, 1, 2)),
                                         stem_width=8, stem_stride=1, last_width=32,
                                         num_classes=10)),
    "efficientnet-tiny": ("mobilenet", dict(setting=((1, 8, 1, 1), (4, 12, 2, 2), (4, 16, 1, 2)),
                                            stem_width=8, stem_stride=1, last_width=32,
                                            num_classes=10, act="silu", se_ratio=0.25)),
    "mobilenetv2": ("mobilenet", dict()),
    "vit-tiny": ("vit", dict(image_size=16, patch=4, dim=16, depth=2, heads=2, num_classes=10)),
    "vit-small": ("vit", dict(image_size=224, patch=16, dim=384, depth=12, heads=6)),
}


def build_backbone(family: str, **config: Any) -> GatedSupernet:
    """Build a gated supernet. ``family`` is a family ("resnet") or a preset ("resnet-tiny");
    ``config`` overrides the preset's keyword arguments."""
    if family in PRESETS:
        base_family, base = PRESETS[family]
        return FAMILIES[base_family](**{**base, **config})
    if family not in FAMILIES:
        known = ", ".join(sorted(FAMILIES) + sorted(PRESETS))
        raise ValueError(f"unknown backbone {family!r}; known: {known}")
    return FAMILIES[family](**config)
