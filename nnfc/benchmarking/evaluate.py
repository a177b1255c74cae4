"""The factory's metric (accuracy, mAP...) of an emitted artifact on its task's test split.

The artifact itself runs on its target (``target.run``: ORT, LiteRT...), so a lowering that
changes the numbers shows up here. The task and the factory come from the compile output's
``report.json``; the bundle's task family supplies the test data and the metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from nnfc.errors import NnfcError

DEFAULT_SAMPLES = 200
DEFAULT_SEED = 2024


def artifact_runner(target, artifact: Path, input_name: str, output_names: list[str]):
    """``images [B,C,H,W] -> {output name: array}`` running ``artifact`` on ``target``; whole
    batches where the artifact takes them, one image at a time where its batch is fixed to 1."""
    state = {"batched": True}

    def run(images: np.ndarray) -> Mapping[str, np.ndarray]:
        images = np.ascontiguousarray(images, np.float32)
        if state["batched"] and len(images) > 1:
            try:
                outs = target.run(artifact, {input_name: images})
                if len(outs[0]) == len(images):
                    return dict(zip(output_names, outs))
            except Exception:  # noqa: BLE001 - a runtime's own error for a static batch of 1
                pass
            state["batched"] = False
        rows = [target.run(artifact, {input_name: images[i:i + 1]}) for i in range(len(images))]
        return {name: np.concatenate([r[j] for r in rows]) for j, name in enumerate(output_names)}

    return run


def evaluate_artifact(report: Mapping[str, Any], target, artifact: Path,
                      samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED
                      ) -> dict[str, Any]:
    """``{"metric", "value", "task", "samples", "seed"}`` of ``artifact`` compiled by the
    ``nnfc compile`` run that wrote ``report``."""
    from nnfc.bundle import read_bundle
    try:
        task = list(report["request"]["task"])
        bundle_path = report["bundle"]["path"]
    except (KeyError, TypeError) as exc:
        raise NnfcError(f"report.json names no task/bundle ({exc}); --eval needs the output "
                        "directory of `nnfc compile`") from exc
    if not Path(bundle_path).is_dir():
        raise NnfcError(f"--eval needs the factory the artifact was compiled from: "
                        f"{bundle_path} (from report.json) is not there")
    bundle = read_bundle(bundle_path, verify_hashes=False)
    metric, value = family_metric(bundle, task, target, artifact, samples, seed)
    return {"metric": metric, "value": float(value), "task": task, "samples": samples,
            "seed": seed}


def family_metric(bundle, task: list[str], target, artifact: Path, samples: int, seed: int
                  ) -> tuple[str, float]:
    """The bundle's task family's metric for ``task`` with the artifact as the model."""
    from nnfc.families import family_from_manifest
    family = family_from_manifest(bundle.manifest)
    names = [o["name"] for o in bundle.output_spec]
    run = artifact_runner(target, artifact, bundle.input_spec.get("name", "input"), names)
    return family.metric, family.evaluate(family.parse_task(task), run, samples, seed)

