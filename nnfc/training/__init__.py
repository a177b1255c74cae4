"""Training side of nnfc (needs torch): gated backbones, assembler, trainer, export."""
