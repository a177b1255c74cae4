"""Import timm beside CPU torch.

PyPI's torchvision 0.28.0 (the release for torch 2.13) is a CUDA build whose C++ ops do not load
beside the CPU torch wheel, so ``import torchvision`` fails registering fake kernels for
``torchvision::nms`` / ``torchvision::qnms``. timm imports torchvision but never runs those ops:
defining the two op schemas first lets torchvision's Python side import cleanly."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def import_timm():
    """The ``timm`` module (registering torchvision's missing op schemas first)."""
    import torch

    try:
        import torchvision  # noqa: F401
    except (RuntimeError, ImportError, OSError):
        import sys
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 - lives for the process
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBS.append(lib)
        import torchvision  # noqa: F401
    import timm
    return timm


_LIBS: list = []
