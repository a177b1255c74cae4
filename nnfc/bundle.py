"""Factory bundle: a directory with ``manifest.json``, ``supernet.onnx``, ``assembler.onnx`` and
``supernet.safetensors`` (the layout is in README.md, "Factories"). Written atomically, read with validation of the format
version, required keys and the sha256 of every file. Never imports torch.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from nnfc.errors import NnfcError
from nnfc.jsonfile import read_json
from nnfc.outputs import output_dir
from nnfc.schema import Any_, Obj
from nnfc.trust import member, own_subdir, plain_name, sha256_file

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SUPERNET = "supernet.onnx"
ASSEMBLER = "assembler.onnx"
WEIGHTS = "supernet.safetensors"
PROFILES = "profiles"
REQUIRED_FILES = (SUPERNET, ASSEMBLER)
REQUIRED_KEYS = ("format_version", "backbone", "input", "output", "attributes", "tasks",
                 "gate_layers", "limit_encoding", "files")


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
        repeated = sorted({a for a in attributes if attributes.count(a) > 1})
        if repeated:
            raise NnfcError(f"attribute(s) {', '.join(map(repr, repeated))} given more than "
                            "once; list each attribute of the task once")
        self._check_task_structure(attributes)
        return [1.0 if a in attributes else 0.0 for a in vocab]

    def _check_task_structure(self, attributes: list[str]) -> None:
        """The task family's own check of a task (e.g. a detection task needs one category and
        a colour), for families that do not take any attribute subset (``partial_tasks``)."""
        from nnfc.families import family_class, family_from_manifest

        name = (self.manifest.get("task_family") or {}).get("family")
        if name and not getattr(family_class(str(name)), "partial_tasks", True):
            family_from_manifest(self.manifest).parse_task(attributes)


def default_bundle_path() -> Path:
    """The factory used when a command gets no ``--bundle`` (:func:`nnfc.factories.default_factory`:
    ``$NNFC_FACTORY``, else the default factory of the checkout or of the installed package)."""
    from nnfc.factories import default_factory
    return default_factory()


MAX_MANIFEST_BYTES = 16 << 20


def read_bundle(root: str | os.PathLike, verify_hashes: bool = True) -> Bundle:
    """Open and validate a bundle directory; every problem is one clear NnfcError.

    The trust boundary (README, "Factories"): every file the manifest names is a plain name of
    a regular file in the bundle (no symlink), checked for type and size before it is hashed;
    every ONNX external-data file is one of them; ``profiles/`` is no symlink."""
    root = Path(root)
    if not root.is_dir():
        raise NnfcError(f"factory bundle {root} does not exist (make one with `nnfc train`)")
    mpath = root / MANIFEST
    if not os.path.lexists(mpath):
        raise NnfcError(f"{root} is not a factory bundle: {MANIFEST} is missing")
    member(root, MANIFEST, str(root), MAX_MANIFEST_BYTES)
    manifest = read_json(mpath, Obj({"format_version": Any_()}), what="bundle manifest",
                         max_bytes=MAX_MANIFEST_BYTES)
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise NnfcError(f"{mpath} lacks required key(s): {', '.join(missing)}")
    version = manifest["format_version"]
    if type(version) is not int or version != FORMAT_VERSION:
        raise NnfcError(f"{root}: bundle format version {version!r} is not supported "
                        f"(this nnfc reads version {FORMAT_VERSION})")
    validate_manifest(manifest, mpath)
    files = manifest["files"]
    for name in REQUIRED_FILES:
        if name not in files:
            raise NnfcError(f"{mpath}: 'files' has no entry for {name}")
    where = f"{mpath}: files"
    for name in files:
        if not os.path.lexists(root / plain_name(name, where)):
            raise NnfcError(f"{root}: {name} is listed in the manifest but missing")
    sizes = {name: member(root, name, where)[1] for name in files}
    own_subdir(root, PROFILES, str(root))
    if verify_hashes:
        for name, expected in files.items():
            if sha256_file(root / name) != expected:
                raise NnfcError(f"{root}: {name} does not match its sha256 in the manifest "
                                "(the file was changed or truncated)")
    for name in files:
        if name.endswith(".onnx"):
            check_external_data(root / name, sizes, where)
    return Bundle(root, manifest)


def check_external_data(model_path: Path, listed: Mapping[str, int], where: str) -> None:
    """Every tensor of the ONNX file holds the bytes its shape declares; one stored as external
    data lies in a file the manifest lists (and so hashes), within that file's size (read
    without loading any external data)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors

    from nnfc.onnx_io import check_tensor_sizes, declared_bytes
    try:
        model = onnx.load(str(model_path), load_external_data=False)
        check_tensor_sizes(model, str(model_path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NnfcError(f"{model_path} is not a valid ONNX model: {first}") from None
    for tensor in _get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = ExternalDataInfo(tensor)
        name = info.location
        if name not in listed:
            raise NnfcError(f"{where}: {model_path.name} keeps tensor {tensor.name!r} in "
                            f"{name!r}, which the manifest does not list (and so does not "
                            "hash); refusing it")
        offset = info.offset or 0
        length = info.length if info.length is not None else listed[name] - offset
        need = declared_bytes(tensor)
        if offset < 0 or length < 0 or offset + length > listed[name] or (
                need is not None and length != need):
            raise NnfcError(f"{where}: tensor {tensor.name!r} of {model_path.name} claims "
                            f"bytes {offset}..{offset + length} of {name} ({listed[name]} "
                            f"bytes){'' if need is None else f'; its shape needs {need}'}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def manifest_problems(manifest: Mapping[str, Any]) -> list[str]:
    """Type problems of a manifest's required keys, one line each (empty: fine)."""
    problems = []
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        problems.append("'files' must map file names to sha256 strings")
    attrs = manifest.get("attributes")
    if not isinstance(attrs, list) or not attrs or not all(
            isinstance(a, str) and a for a in attrs):
        problems.append("'attributes' must be a non-empty list of strings")
    elif len(set(attrs)) != len(attrs):
        problems.append("'attributes' lists an attribute twice")
    layers = manifest.get("gate_layers")
    if not isinstance(layers, list):
        problems.append("'gate_layers' must be a list of {name, size, kind}")
    else:
        for i, layer in enumerate(layers):
            if (not isinstance(layer, dict) or not isinstance(layer.get("name"), str)
                    or not _is_int(layer.get("size")) or layer["size"] < 1
                    or not isinstance(layer.get("kind"), str)):
                problems.append(f"gate_layers[{i}] needs name (string), size (positive "
                                "integer) and kind (string)")
                break
    tasks = manifest.get("tasks")
    if not isinstance(tasks, dict) or not all(
            isinstance(t, list) and all(isinstance(task, list) and all(
                isinstance(a, str) for a in task) for task in t)
            for t in tasks.values()):
        problems.append("'tasks' must map 'seen'/'unseen' to lists of attribute lists")
    spec = manifest.get("input")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(
            spec.get("shape"), list) or not all(_is_int(d) and d > 0 for d in spec["shape"]):
        problems.append("'input' must hold a name and a shape of positive integers")
    out = manifest.get("output")
    outs = out if isinstance(out, list) else [out]
    if not outs or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outs):
        problems.append("'output' must be an object (or a list of objects) with a name")
    for key in ("limit_encoding", "task_family", "training", "backbone"):
        if key in manifest and not isinstance(manifest[key], dict):
            problems.append(f"'{key}' must be an object")
    family = manifest.get("task_family")
    if isinstance(family, dict) and not isinstance(family.get("family", ""), str):
        problems.append("'task_family.family' must be a string")
    return problems


def validate_manifest(manifest: Mapping[str, Any], where: str | os.PathLike) -> None:
    """One NnfcError, one line per problem, when the manifest's required keys have wrong types."""
    problems = manifest_problems(manifest)
    if problems:
        raise NnfcError("\n".join(f"{where}: {p}" for p in problems))


def write_bundle(root: str | os.PathLike, manifest: Mapping[str, Any],
                 files: Mapping[str, str | os.PathLike | bytes], *, force: bool = False,
                 inputs: Iterable[str | os.PathLike | None] = ()) -> Bundle:
    """Write a bundle atomically: files (name -> source path or bytes) and the manifest with
    their sha256 go to a temp directory beside ``root``, which then replaces ``root`` (an empty
    directory or an earlier bundle; see :mod:`nnfc.outputs` for the rules and ``force``)."""
    with output_dir(root, "bundle", force=force, inputs=inputs, option="--out") as tmp:
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
    return read_bundle(root)
