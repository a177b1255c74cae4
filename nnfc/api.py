"""nnfc's Python API (``import nnfc``): :func:`compile`, :func:`prune`, ``load_factory``.

Bad input raises :class:`nnfc.NnfcError` (one line, as the CLI prints it); nothing here exits
the caller's process or prints, except progress bars and ``logging`` records of the ``nnfc``
logger (a first compile on a machine profiles it: see :mod:`nnfc.compiler.auto_profile`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from nnfc.errors import NnfcError


@dataclass(frozen=True)
class CompileResult:
    """What :func:`compile` wrote: ``report`` is ``report.json`` as a dict."""

    report: dict[str, Any]
    output: Path

    @property
    def artifact(self) -> Path:
        """The target artifact (e.g. ``model.ort.onnx``, ``model.tflite``) inside ``output``."""
        return self.output / self.report["artifact"]

    @property
    def model(self) -> Path:
        """The pruned ONNX model (``model.onnx``) inside ``output``."""
        return self.output / "model.onnx"

    @property
    def within_budget(self) -> bool:
        """Whether the artifact meets its budgets: as measured, or as predicted where the target
        cannot be measured here (jetson without a device)."""
        measured = self.report.get("within_budget")
        return bool(self.report.get("within_budget_predicted") if measured is None else measured)


def _budget(value: str | None, parse, example: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise NnfcError(f"give budgets with their unit, e.g. {example!r} (got {value!r})")
    return parse(value)


def compile(task: str | Sequence[str], *, target: str = "desktop",  # noqa: A001
            latency: str | None = None, memory: str | None = None,
            output: str | os.PathLike, bundle: str | os.PathLike | None = None,
            profile: str | os.PathLike | None = None, auto_profile: bool = True,
            force: bool = False, **options: Any) -> CompileResult:
    """Build the model for ``task`` within the budgets on ``target`` and write it to ``output``
    (as ``nnfc compile``: model.onnx, the target artifact, gates.json, report.json).

    ``task``: the factory's attributes (``"red,car"``, ``["red", "car"]``) or words
    (``"crimson cars"``). ``latency``/``memory``: the CLI's unit strings (``"20ms"``,
    ``"50MB"``). ``bundle``: a bundle directory or factory name (default: the default
    factory). Further ``options`` are :class:`nnfc.compiler.pipeline.CompileRequest` fields
    (``precision``, ``max_drop``, ``method``, ``refine_rounds``, ``device``, ...).

    >>> r = nnfc.compile("red,car", target="jetson", latency="20ms", output="out/x")
    >>> r.within_budget, r.artifact, r.report["limit"]
    """
    from nnfc.compiler.pipeline import CompileRequest, compile_model
    from nnfc.factories import resolve_factory
    from nnfc.units import parse_latency_ms, parse_memory_mb

    lat_ms = _budget(latency, parse_latency_ms, "20ms")
    mem_mb = _budget(memory, parse_memory_mb, "50MB")
    try:
        req = CompileRequest(task=task if isinstance(task, str) else list(task), target=target,
                             out=Path(output), lat_ms=lat_ms, mem_mb=mem_mb,
                             bundle=resolve_factory(bundle) if bundle is not None else None,
                             profile=Path(profile) if profile else None,
                             auto_profile=auto_profile, force=force, count_startup=False,
                             **options)
    except TypeError as exc:
        raise NnfcError(f"nnfc.compile: {exc}") from exc
    report = _user_errors(compile_model, req)
    return CompileResult(report, Path(output))


def prune(model, gates: Mapping[str, Any] | str | os.PathLike):
    """Bind ``gates`` into a gated ``model`` and physically remove every gated-off channel.

    ``model``: an ``onnx.ModelProto`` or an ``onnx_ir.Model`` (the same kind comes back), or a
    path (a ModelProto comes back). ``gates``: ``{"gate.<layer>": 0/1 array}`` or the path of a
    gates JSON file (``gates.json`` of a compile output)."""
    import onnx

    from nnfc.passes import apply_gates
    from nnfc.passes.gates import load_gates_json

    if isinstance(gates, (str, os.PathLike)):
        gates = _user_errors(load_gates_json, gates)
    if isinstance(model, (str, os.PathLike)):
        from nnfc.onnx_io import load_onnx
        model = load_onnx(model)
    if isinstance(model, onnx.ModelProto):
        return _user_errors(apply_gates, model, gates)
    import onnx_ir as ir
    if isinstance(model, ir.Model):
        pruned = _user_errors(apply_gates, ir.serde.serialize_model(model), gates)
        return ir.serde.deserialize_model(pruned)
    raise NnfcError(f"nnfc.prune takes an onnx.ModelProto, an onnx_ir.Model or a path, not "
                    f"{type(model).__name__}")


def _user_errors(fn, *args, **kwargs):
    """Call ``fn``; errors meant for a user (the passes' PruneError) become NnfcError."""
    try:
        return fn(*args, **kwargs)
    except NnfcError:
        raise
    except Exception as exc:
        if getattr(exc, "nnfc_user_error", False):
            raise NnfcError(str(exc)) from exc
        raise


__all__ = ["CompileResult", "compile", "prune"]
