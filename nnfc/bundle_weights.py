"""A factory's supernet weights stored once: ``supernet.safetensors`` holds the ONNX
initializers (``supernet.onnx`` points into it as ONNX external data: location, offset, length)
and the training-only tensors; its metadata maps every torch state-dict name to a stored
tensor, a transposed one (a Linear weight as MatMul's), or a BatchNorm-folded conv weight in
ONNX form (``W = W0 * gamma / sqrt(var + eps)``: ``W0`` is recovered from ``W`` and the
BatchNorm's stored parameters).

ONNX Runtime, ``onnx.load`` and onnx-ir read ``supernet.onnx`` as usual (from its path: the
weights file lies beside it). Torch code gets its state dict from :func:`training_state`.
Numpy only: never imports torch.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import TensorProto, external_data_helper, numpy_helper

from nnfc.atomic import write_bytes_atomic
from nnfc.errors import NnfcError

#: initializers smaller than this stay inside the ONNX file (shape constants and the like)
INLINE_BYTES = 1024
META_KEY = "nnfc.torch_state"
#: safetensors' own limit on its JSON header
MAX_HEADER_BYTES = 100_000_000
#: BatchNorm eps values tried when matching a folded conv (torch's default first)
BN_EPS = (1e-5, 1e-3)
#: a recovered conv weight must match the trained one this closely (relative to its channel)
RECOVER_RTOL = 1e-5


def _safetensors_offsets(path: Path) -> tuple[int, dict[str, Any]]:
    """(byte offset of the data section, header) of a safetensors file."""
    from nnfc.jsonfile import parse_json
    with open(path, "rb") as fh:
        head = fh.read(8)
        size = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < size <= MAX_HEADER_BYTES:
            raise NnfcError(f"{path} is not a safetensors file (header size {size})")
        header = parse_json(fh.read(size), f"{path}: its safetensors header")
    return 8 + size, header


def _fold_source(name: str, w0: np.ndarray, state: Mapping[str, np.ndarray],
                 onnx_weights: Mapping[str, np.ndarray]) -> dict[str, Any] | None:
    """The ONNX initializer and BatchNorm that ``w0`` (a conv weight) was folded with, when
    ``w0`` is recovered from them within ``RECOVER_RTOL``; else None."""
    if w0.ndim < 2 or w0.dtype != np.float32:
        return None
    out = w0.shape[0]
    prefixes = [k[: -len(".running_var")] for k, v in state.items()
                if k.endswith(".running_var") and v.shape == (out,)]
    candidates = [k for k, w in onnx_weights.items() if w.shape == w0.shape and w.dtype == w0.dtype]
    scale0 = np.abs(w0).reshape(out, -1).max(axis=1) + 1e-12
    for prefix in prefixes:
        gamma, var = state.get(prefix + ".weight"), state[prefix + ".running_var"]
        if gamma is None or np.any(gamma == 0):
            continue
        for eps in BN_EPS:
            factor = (gamma / np.sqrt(var + eps)).astype(np.float32)
            for key in candidates:
                w = onnx_weights[key]
                shape = (out,) + (1,) * (w0.ndim - 1)
                recovered = w / factor.reshape(shape)
                err = np.abs(recovered - w0).reshape(out, -1).max(axis=1) / scale0
                if np.all(err <= RECOVER_RTOL):
                    return {"folded": key, "bn": prefix, "eps": eps}
    return None


def store_once(onnx_path: str | os.PathLike, state: Mapping[str, np.ndarray],
               weights_path: str | os.PathLike) -> dict[str, int]:
    """Rewrite ``onnx_path`` (weights inline) so its large initializers live in
    ``weights_path`` (written here, beside it), which also holds ``state`` (the torch state
    dict as numpy) without repeating a tensor the ONNX file has. Returns byte counts
    (``onnx``, ``training_only``, ``shared``, ``folded``) for the caller's log."""
    from safetensors.numpy import save_file

    onnx_path, weights_path = Path(onnx_path), Path(weights_path)
    if onnx_path.parent != weights_path.parent:
        raise ValueError("the ONNX file and its weights must share a directory")
    model = onnx.load(str(onnx_path))
    big = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer
           if not t.HasField("data_location") or t.data_location != TensorProto.EXTERNAL}
    big = {k: np.ascontiguousarray(v) for k, v in big.items() if v.nbytes >= INLINE_BYTES}
    stored: dict[str, np.ndarray] = dict(big)
    by_bytes = {(v.dtype.str, v.shape, v.tobytes()): k for k, v in big.items()}
    mapping: dict[str, Any] = {}
    counts = {"onnx": sum(v.nbytes for v in big.values()), "training_only": 0, "shared": 0,
              "folded": 0}
    for name, value in state.items():
        value = np.ascontiguousarray(value)
        same = by_bytes.get((value.dtype.str, value.shape, value.tobytes()))
        if same is not None:
            mapping[name] = {"tensor": same}
            counts["shared"] += value.nbytes
            continue
        if value.ndim == 2:  # a Linear weight exported as MatMul's [in, out]
            t = np.ascontiguousarray(value.T)
            same = by_bytes.get((t.dtype.str, t.shape, t.tobytes()))
            if same is not None:
                mapping[name] = {"tensor": same, "transpose": True}
                counts["shared"] += value.nbytes
                continue
        fold = _fold_source(name, value, state, big)
        if fold is not None:
            mapping[name] = fold
            counts["folded"] += value.nbytes
            continue
        key = name if name not in stored else f"train:{name}"
        stored[key] = value
        mapping[name] = {"tensor": key}
        counts["training_only"] += value.nbytes
    save_file(stored, str(weights_path), metadata={META_KEY: json.dumps(mapping)})
    base, header = _safetensors_offsets(weights_path)
    for t in model.graph.initializer:
        if t.name not in big:
            continue
        start, end = header[t.name]["data_offsets"]
        external_data_helper.set_external_data(t, weights_path.name, offset=base + start,
                                               length=end - start)
        t.data_location = TensorProto.EXTERNAL
        t.ClearField("raw_data")
    write_bytes_atomic(onnx_path, model.SerializeToString())
    return counts


def training_state(weights_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The torch state dict (as numpy arrays) stored in a bundle's ``supernet.safetensors``:
    shared tensors resolved, folded conv weights recovered. A file without nnfc's metadata is
    a plain state dict."""
    from safetensors import SafetensorError, safe_open

    path = Path(weights_path)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = (fh.metadata() or {}).get(META_KEY)
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise NnfcError(f"{path} is not a readable safetensors file ({exc})") from exc
    if meta is None:
        return tensors
    from nnfc.jsonfile import parse_json
    from nnfc.schema import Map, Obj
    mapping = parse_json(meta, f"{path}: its {META_KEY} metadata", Map(Obj()))
    try:
        state = {}
        for name, src in mapping.items():
            if "tensor" in src:
                value = tensors[src["tensor"]]
                state[name] = np.ascontiguousarray(value.T) if src.get("transpose") else value
                continue
            w = tensors[src["folded"]]
            gamma = tensors[mapping[src["bn"] + ".weight"]["tensor"]]
            var = tensors[mapping[src["bn"] + ".running_var"]["tensor"]]
            factor = (gamma / np.sqrt(var + float(src["eps"]))).astype(np.float32)
            state[name] = w / factor.reshape((-1,) + (1,) * (w.ndim - 1))
        return state
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NnfcError(f"{path}: its {META_KEY} metadata does not match its tensors "
                        f"({type(exc).__name__}: {exc})") from exc


def torch_state(weights_path: str | os.PathLike) -> dict[str, Any]:
    """:func:`training_state` as torch tensors (for ``load_state_dict``); imports torch."""
    import torch

    return {k: torch.from_numpy(np.array(v)) for k, v in training_state(weights_path).items()}
