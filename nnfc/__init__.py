"""nnfc: an ONNX-centric NN-Factory compiler.

One trained model factory (gated supernet + assembler) becomes customized, physically pruned
edge models: ``nnfc compile --task red,car --target desktop --lat 20ms --mem 300MB``.
"""

__version__ = "0.1.0"
