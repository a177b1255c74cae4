"""Helpers for the hostile-input tests: copy a fixture bundle and tamper with it the way an
attacker who controls the bundle would (hashes kept consistent, so only nnfc's checks stand)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from nnfc.trust import sha256_file


def copy_bundle(src: Path, dst: Path) -> Path:
    """A copy of the bundle (and its profiles) at ``dst``."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def rehash(bundle: Path, add: dict[str, str] | None = None) -> None:
    """Make the manifest's sha256 entries agree with the files again (an attacker can)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    files = dict(manifest["files"])
    files.update(add or {})
    manifest["files"] = {name: sha256_file(bundle / name) if (bundle / name).is_file() else h
                         for name, h in files.items()}
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1))


def edit_manifest(bundle: Path, **changes) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1))


def poison_supernet(bundle: Path, value: float = float("nan")) -> None:
    """Set every float weight of the supernet to ``value`` and rehash."""
    model = onnx.load(str(bundle / "supernet.onnx"))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size > 16:
            init.CopyFrom(numpy_helper.from_array(np.full_like(arr, value), init.name))
    onnx.save_model(model, str(bundle / "supernet.onnx"))
    rehash(bundle)


def external_supernet(bundle: Path, location: str = "weights.bin", listed: bool = False) -> None:
    """Move the supernet's large weights into ONNX external data ``location`` beside it;
    ``listed``: also add that file to the manifest (so its hash covers it)."""
    model = onnx.load(str(bundle / "supernet.onnx"))
    onnx.save_model(model, str(bundle / "supernet.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=location, size_threshold=256)
    rehash(bundle, {location: ""} if listed else None)
