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


def evaluate_artifact(report: Mapping[str, Any], target, artifact: Path, compile_dir: Path,
                      samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED
                      ) -> dict[str, Any]:
    """``{"metric", "value", "task", "samples", "seed"}`` of ``artifact`` compiled by the
    ``nnfc compile`` run that wrote ``report`` into ``compile_dir``."""
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
    names = deployed_output_names(compile_dir, artifact) or \
        [o["name"] for o in bundle.output_spec]
    metric, value = family_metric(bundle, task, target, artifact, names, samples, seed)
    return {"metric": metric, "value": float(value), "task": task, "samples": samples,
            "seed": seed}


def deployed_output_names(compile_dir: Path, artifact: Path) -> list[str] | None:
    """The artifact's outputs in order, from the ONNX model compile lowered it from
    (``model.onnx``; TFLite and TensorRT artifacts keep its outputs and their order)."""
    import onnx
    for path in (compile_dir / "model.onnx", artifact):
        if path.suffix == ".onnx" and path.is_file():
            model = onnx.load(str(path), load_external_data=False)
            return [o.name for o in model.graph.output]
    return None


def family_metric(bundle, task: list[str], target, artifact: Path, output_names: list[str],
                  samples: int, seed: int) -> tuple[str, float]:
    """The bundle's task family's metric for ``task`` with the artifact as the model: the
    family's ``evaluate`` where the artifact returns the network's raw outputs; its optional
    ``evaluate_deployed`` where the artifact returns what the deployed graph adds on top
    (a detection artifact's decoded boxes and scores)."""
    from nnfc.families import family_from_manifest
    family = family_from_manifest(bundle.manifest)
    run = artifact_runner(target, artifact, bundle.input_spec.get("name", "input"),
                          output_names)
    task = family.parse_task(task)
    raw = [o["name"] for o in bundle.output_spec]
    if set(raw) <= set(output_names):
        return family.metric, family.evaluate(task, run, samples, seed)
    deployed = getattr(family, "evaluate_deployed", None)
    if deployed is None:
        raise NnfcError(f"--eval: the artifact outputs {', '.join(output_names)}, while the "
                        f"{family.name} family's metric reads the network's {', '.join(raw)}; "
                        f"evaluate the factory with `nnfc eval` instead")
    return family.metric, deployed(task, run, samples, seed)
