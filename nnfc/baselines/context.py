"""What every baseline run starts from: the bundle, its training recipe and task family, the
task, the target's predictor and the target configured as the profile measured it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from nnfc.baselines import task_data
from nnfc.bundle import Bundle, read_bundle
from nnfc.factories import resolve_factory
from nnfc.compiler.pipeline import ScenarioRequest
from nnfc.compiler.predictor import Predictor
from nnfc.errors import NnfcError


@dataclass
class BaselineRequest(ScenarioRequest):
    """What every baseline command takes (the method's own knobs are in its subclass)."""

    epochs: int | None = None          # training / fine-tuning epochs (None: the method's default)
    checkpoint: Path | None = None     # None: <out>.ckpt
    resume: bool = False
    progress: bool = True
    stop_after: int | None = None      # stop after this many epochs (checkpoint only)


@dataclass
class BaselineContext:
    bundle: Bundle
    cfg: Any                      # the factory's FactoryConfig
    family: Any
    task: tuple[str, ...]
    target_name: str
    target: Any
    predictor: Predictor
    profile_dir: Path             # where the profile (and its reference subnet) lives

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.family.image_shape)

    @property
    def supernet_sha256(self) -> str | None:
        return self.bundle.manifest.get("files", {}).get("supernet.onnx")

    def request(self, lat_ms: float | None, mem_mb: float | None) -> dict[str, Any]:
        return {"task": list(self.task), "target": self.target_name, "lat_ms": lat_ms,
                "mem_mb": mem_mb}


def open_context(bundle_path: str | Path | None, task: Sequence[str], target: str,
                 profile: str | Path | None = None, out: str | Path | None = None
                 ) -> BaselineContext:
    """Validate everything cheap before any training: the output path, the target name, the
    bundle, the task's attributes, the predictor profile (missing: the error gives the
    ``nnfc profile`` command)."""
    from nnfc.compiler.pipeline import load_predictor_for, make_target, profile_in_use
    from nnfc.targets import get_target

    if not task:
        raise NnfcError("--task needs at least one attribute, e.g. --task red,car")
    get_target(target)  # an unknown target is the first error
    bundle = read_bundle(resolve_factory(bundle_path))
    if out is not None:  # a bad -o fails before any training
        from nnfc.outputs import check_output_dir
        check_output_dir(out, "baseline", inputs=[bundle.root])
    bundle.encode_task(list(task))  # unknown attributes: one line naming the vocabulary
    cfg = task_data.recipe_of(bundle)
    family = task_data.family_of(cfg)
    parsed = task_data.parse_task(bundle, family, task)
    predictor = load_predictor_for(bundle, target, profile)
    profile_dir = profile_in_use(bundle.root, target, profile).parent
    return BaselineContext(bundle, cfg, family, parsed, target,
                           make_target(target, predictor.meta.get("target_options")), predictor,
                           profile_dir)


def default_checkpoint(out: str | Path) -> Path:
    """``<out>.ckpt`` beside the output directory (like ``nnfc train``)."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")
