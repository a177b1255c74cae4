"""The passes' error type: an ``onnx_ir.passes.PassError`` (so pass managers and other compilers
handle it like their own), with a one-line message. The nnfc CLI prints it as
``nnfc: error: ...``."""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir
from onnx_ir.passes import PassError
from onnx_ir.passes._pass_infra import PreconditionError  # not re-exported by onnx_ir.passes


class PruneError(PassError):
    """A gated model the passes cannot bind or prune; the message names the gate or op."""

    #: the CLI shows this error as one line instead of a traceback
    nnfc_user_error = True


class GatePreconditionError(PruneError, PreconditionError):
    """A pass' precondition on the gates failed (a pass manager re-raises it unwrapped)."""


@dataclass(frozen=True)
class Failure:
    """Why an analysis step found nothing to do, as a value (like onnxscript's
    ``MatchResult.fail(reason, failure_source)``): the reason and the node it is about."""

    reason: str
    node: ir.Node | None = None

    def __bool__(self) -> bool:  # a failure is falsy, so ``if not found: ...`` reads well
        return False

    @property
    def where(self) -> str:
        node = self.node
        return f" at {node.op_type} node {node.name or '(unnamed)'}" if node is not None else ""
