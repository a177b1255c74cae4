"""nnfc: an ONNX-centric NN-Factory compiler.

One trained model factory (gated supernet + assembler) becomes customized, physically pruned
edge models: ``nnfc compile --task red,car --target desktop --lat 20ms --mem 300MB``, or from
Python::

    import nnfc
    r = nnfc.compile("red,car", target="jetson", latency="20ms", output="out/x")
    r.report, r.artifact, r.within_budget
    small = nnfc.prune(model, gates)        # onnx.ModelProto or onnx_ir.Model in, same kind out
    f = nnfc.load_factory()                 # attributes, tasks, gate layers, profiles

Errors are :class:`NnfcError`. Importing nnfc is cheap: everything else loads on first use.
"""

from nnfc.errors import NnfcError

__version__ = "0.1.0"
__all__ = ["CompileResult", "NnfcError", "__version__", "compile", "load_factory", "prune"]

_LAZY = {"compile": "nnfc.api", "prune": "nnfc.api", "CompileResult": "nnfc.api",
         "load_factory": "nnfc.factory_info", "Factory": "nnfc.factory_info"}


def __getattr__(name: str):
    """The API's functions, imported on first use (``import nnfc`` loads no onnx or numpy)."""
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nnfc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
