"""Calibration data for int8: the factory's own samples for the compiled task, seeded.

The task family draws them (:meth:`TaskFamily.batch`): from its training split where those
samples have the deployed input's shape, else from its test split with a seed the evaluation
never uses (a detection family trains on crops smaller than the deployed input; its procedural
test scenes are drawn fresh for every seed). Nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from nnfc.errors import NnfcError

#: calibration samples per compile and their seed (evaluation uses seed 2024)
DEFAULT_SAMPLES = 64
CALIBRATION_SEED = 7


@dataclass(frozen=True)
class Calibration:
    """Input images ``[N, C, H, W]`` (float32) for ``input_name`` and where they came from."""

    input_name: str
    images: np.ndarray
    source: str

    def feeds(self) -> Iterator[dict[str, np.ndarray]]:
        """One ``{input_name: image[1, C, H, W]}`` per sample."""
        for i in range(len(self.images)):
            yield {self.input_name: self.images[i:i + 1]}

    def describe(self) -> dict:
        return {"samples": int(len(self.images)), "source": self.source,
                "seed": CALIBRATION_SEED}


def calibration_for(bundle, task: Sequence[str], samples: int = DEFAULT_SAMPLES,
                    seed: int = CALIBRATION_SEED) -> Calibration:
    """``samples`` images of ``task`` from the bundle's task family (see the module doc)."""
    from nnfc.evaluation import task_family_of
    family = task_family_of(bundle)
    parsed = family.parse_task(list(task))
    spec = bundle.input_spec
    name = spec.get("name", "input")
    shape = tuple(spec.get("shape", ()))[1:]
    for split in ("train", "test"):
        batch = family.batch([parsed], samples, split, np.random.default_rng(seed))
        images = np.ascontiguousarray(batch["image"], np.float32)
        if not shape or tuple(images.shape[1:]) == shape:
            return Calibration(name, images, f"{family.name} {split} split, task "
                                             f"{','.join(parsed)}")
    raise NnfcError(f"the {family.name} family draws no samples of the deployed input shape "
                    f"{list(shape)} to calibrate int8 with (got {list(images.shape[1:])})")
