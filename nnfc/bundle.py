"""Factory bundle: a directory with ``manifest.json``, ``supernet.onnx``, ``assembler.onnx`` and
``supernet.safetensors`` (see DESIGN.md). Written atomically, read with validation of the format
version, required keys and the sha256 of every file. Never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from nnfc.atomic import replace_dir
from nnfc.errors import NnfcError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SUPERNET = "supernet.onnx"
ASSEMBLER = "assembler.onnx"
WEIGHTS = "supernet.safetensors"
REQUIRED_FILES = (SUPERNET, ASSEMBLER)
REQUIRED_KEYS = ("format_version", "backbone", "input", "output", "attributes", "tasks",
                 "gate_layers", "limit_encoding", "files")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A validated factory bundle on disk."""

    root: Path
    manifest: dict[str, Any]

    @property
    def supernet_path(self) -> Path:
        return self.root / SUPERNET

    @property
    def assembler_path(self) -> Path:
        return self.root / ASSEMBLER

    @property
    def weights_path(self) -> Path:
        return self.root / WEIGHTS

    @property
    def attributes(self) -> list[str]:
        return list(self.manifest["attributes"])

    @property
    def gate_layers(self) -> list[dict[str, Any]]:
        return list(self.manifest["gate_layers"])

    @property
    def input_spec(self) -> dict[str, Any]:
        return dict(self.manifest["input"])

    @property
    def output_spec(self) -> list[dict[str, Any]]:
        """The supernet's named graph outputs in order (``[{"name", "shape", ...}]``); bundles
        written before task families had one output object, read as a list of one."""
        out = self.manifest["output"]
        return [dict(o) for o in (out if isinstance(out, list) else [out])]

    def tasks(self, which: str = "seen") -> list[list[str]]:
        """Attribute sets of the ``seen`` (trained) or ``unseen`` (held-out) tasks."""
        return [list(t) for t in self.manifest["tasks"].get(which, [])]

    def encode_task(self, attributes: list[str]) -> list[float]:
        """Multi-hot vector over the vocabulary; unknown attributes are an NnfcError."""
        vocab = self.attributes
        unknown = [a for a in attributes if a not in vocab]
        if unknown:
            raise NnfcError(f"unknown attribute(s) {', '.join(map(repr, unknown))}; "
                            f"this factory knows: {', '.join(vocab)}")
        if not attributes:
            raise NnfcError("a task needs at least one attribute")
        return [1.0 if a in attributes else 0.0 for a in vocab]


def default_bundle_path() -> Path:
    """The factory used when a command gets no ``--bundle``: ``$NNFC_FACTORY`` if set, else the
    default factory shipped in the repository (``factories/default``)."""
    env = os.environ.get("NNFC_FACTORY")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "factories" / "default"


def read_bundle(root: str | os.PathLike, verify_hashes: bool = True) -> Bundle:
    """Open and validate a bundle directory; every problem is one clear NnfcError."""
    root = Path(root)
    if not root.is_dir():
        raise NnfcError(f"factory bundle {root} does not exist (make one with `nnfc train`)")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise NnfcError(f"{root} is not a factory bundle: {MANIFEST} is missing")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NnfcError(f"{mpath} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise NnfcError(f"{mpath} must hold a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise NnfcError(f"{mpath} lacks required key(s): {', '.join(missing)}")
    version = manifest["format_version"]
    if version != FORMAT_VERSION:
        raise NnfcError(f"{root}: bundle format version {version!r} is not supported "
                        f"(this nnfc reads version {FORMAT_VERSION})")
    files = manifest["files"]
    for name in REQUIRED_FILES:
        if name not in files:
            raise NnfcError(f"{mpath}: 'files' has no entry for {name}")
    for name, expected in files.items():
        path = root / name
        if Path(name).name != name:
            raise NnfcError(f"{mpath}: file entry {name!r} must be a plain file name")
        if not path.is_file():
            raise NnfcError(f"{root}: {name} is listed in the manifest but missing")
        if verify_hashes and sha256_file(path) != expected:
            raise NnfcError(f"{root}: {name} does not match its sha256 in the manifest "
                            "(the file was changed or truncated)")
    for i, layer in enumerate(manifest["gate_layers"]):
        if not isinstance(layer, dict) or not {"name", "size", "kind"} <= layer.keys():
            raise NnfcError(f"{mpath}: gate_layers[{i}] needs name, size and kind")
    return Bundle(root, manifest)


def write_bundle(root: str | os.PathLike, manifest: Mapping[str, Any],
                 files: Mapping[str, str | os.PathLike | bytes]) -> Bundle:
    """Write a bundle atomically: files (name -> source path or bytes) and the manifest with
    their sha256 go to a temp directory beside ``root``, which then replaces ``root``."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.", suffix=".tmp"))
    try:
        hashes = {}
        for name, src in files.items():
            dst = tmp / name
            if isinstance(src, bytes):
                dst.write_bytes(src)
            else:
                shutil.copyfile(src, dst)
            hashes[name] = sha256_file(dst)
        full = {"format_version": FORMAT_VERSION, **dict(manifest), "files": hashes}
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
        replace_dir(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_bundle(root)
