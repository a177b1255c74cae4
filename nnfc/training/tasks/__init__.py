"""Task families for factory training (numpy only: evaluation reuses them without torch)."""

from nnfc.training.tasks.numvqa import NumVQA, load_digit_source

FAMILIES = {"numvqa": NumVQA}

__all__ = ["FAMILIES", "NumVQA", "load_digit_source"]
