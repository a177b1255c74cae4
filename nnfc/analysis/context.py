"""What every analysis of one factory shares: the bundle, its task family, the supernet, the
target's predictor and the profile's own measurements — each loaded once, when first needed."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from nnfc.bundle import Bundle, read_bundle
from nnfc.errors import NnfcError


def parse_limits(text: str | None, default: tuple[float, ...]) -> list[float]:
    """``"0.02,0.1,1"`` -> sorted unique fractions in (0, 1]; one clear error otherwise."""
    if not text:
        return list(default)
    try:
        values = sorted({float(x) for x in text.split(",") if x.strip()})
    except ValueError as exc:
        raise NnfcError(f"--limits: {exc} (give fractions such as 0.02,0.1,1)") from exc
    bad = [v for v in values if not 0 < v <= 1]
    if bad or not values:
        raise NnfcError(f"--limits: every limit must lie in (0, 1], got {text!r}")
    return values


@dataclass
class Analysis:
    """One factory (and, for target analyses, one target and its profile)."""

    bundle: Bundle
    target: str = "desktop"
    profile: Path | None = None      # None: the target's default profile of the bundle
    use_cache: bool = True
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, bundle_dir: str | None, target: str = "desktop", profile: str | None = None,
             use_cache: bool = True) -> "Analysis":
        """``bundle_dir``: a bundle directory or a factory name (None: the default factory)."""
        from nnfc.factories import resolve_factory
        from nnfc.targets import TARGETS
        if target not in TARGETS:
            raise NnfcError(f"unknown target {target!r}; known: {', '.join(TARGETS)}")
        bundle = read_bundle(resolve_factory(bundle_dir))
        return cls(bundle, target, Path(profile) if profile else None, use_cache)

    # ---- the factory
    @cached_property
    def family(self):
        from nnfc.evaluation import task_family_of
        return task_family_of(self.bundle)

    @cached_property
    def supernet(self):
        import onnx
        return onnx.load(str(self.bundle.supernet_path))

    @property
    def weights_key(self) -> str:
        """What the supernet's outputs depend on beyond its graph: the sha256 of its weights
        file (and of the graph), as the manifest records them."""
        files = self.bundle.manifest.get("files", {})
        return f"{files.get('supernet.onnx', '')[:16]}:{files.get('supernet.safetensors', '')[:16]}"

    @property
    def gate_names(self) -> list[str]:
        return [f"gate.{g['name']}" for g in self.bundle.gate_layers]

    @cached_property
    def assembler(self):
        from nnfc.compiler.assembler_runtime import Assembler
        return Assembler(self.bundle.assembler_path, self.gate_names)

    def task(self, attributes: list[str]) -> list[str]:
        """A task checked against the factory's vocabulary (one clear error otherwise)."""
        self.bundle.encode_task(list(attributes))
        return list(self.family.parse_task(attributes))

    def gates(self, task: list[str], limits) -> dict[str, np.ndarray]:
        """The assembler's gates for ``task`` at each limit: {gate: [len(limits), size]}."""
        return self.assembler.gates(self.bundle.encode_task(list(task)), limits)

    def all_tasks(self) -> list[tuple[list[str], bool]]:
        """Every (task, seen) of the factory: seen tasks first."""
        return ([(list(t), True) for t in self.bundle.tasks("seen")]
                + [(list(t), False) for t in self.bundle.tasks("unseen")])

    # ---- the target
    @cached_property
    def profile_path(self) -> Path:
        """The profile in use: ``--profile``, else this machine's cached one, else the bundle's."""
        from nnfc.compiler.pipeline import profile_in_use
        return profile_in_use(self.bundle.root, self.target, self.profile)

    @cached_property
    def predictor(self):
        """The target's predictor; without ``--profile`` and without a profile of this factory
        on this machine, the machine is profiled first (like a first ``nnfc compile``)."""
        from nnfc.compiler.pipeline import ProfileMissing, load_predictor_for
        try:
            return load_predictor_for(self.bundle, self.target, self.profile)
        except ProfileMissing as exc:
            from nnfc.compiler.auto_profile import profile_here
            profile_here(self.bundle, self.target, str(exc).split(";")[0])
            self.__dict__.pop("profile_path", None)
            return load_predictor_for(self.bundle, self.target, None)

    def ensure_profiled(self, subnets: int) -> None:
        """Extend this machine's cached profile to at least ``subnets`` measured subnets (resumed
        with the settings a first compile used, then refitted), so the predictor analysis has
        enough to subsample. A profile given with ``--profile`` or shipped in a bundle is never
        changed."""
        from nnfc.compiler.pipeline import default_profile_path
        self.predictor
        rows = len((self.measurements or {}).get("rows", []))
        if (rows >= subnets or self.profile is not None or self.estimated
                or self.profile_path != default_profile_path(self.bundle.root, self.target)):
            return
        from nnfc.compiler.fitting import fit_and_save
        from nnfc.compiler.pipeline import make_target
        from nnfc.compiler.profiler import profile_subnets
        from nnfc.targets import target_class
        options = dict(target_class(self.target).repeatable_options)
        path = self.profile_path
        data = profile_subnets(self.bundle, make_target(self.target, options),
                               path.with_name(path.stem + ".measurements.json"),
                               subnets=subnets, runs=10, warmup=2, rounds=5, resume=True)
        fit_and_save(self.bundle, self.target, data, path, None, target_options=options)
        for name in ("predictor", "measurements"):
            self.__dict__.pop(name, None)

    @property
    def estimated(self) -> bool:
        """Whether the target's latency is the roofline estimate (no measured profile)."""
        return bool(self.predictor.meta.get("estimated"))

    @cached_property
    def measurements(self) -> dict[str, Any] | None:
        """The profile's own measurement file (``<profile stem>.measurements.json`` beside it, or
        where the profile says), when it belongs to this factory; else None."""
        from nnfc.compiler.profiler import read_measurements, same_factory
        self.predictor  # a profile made now changes the path
        candidates = [self.profile_path.with_name(
            self.profile_path.name[: -len(".json")] + ".measurements.json")]
        recorded = (self.predictor.meta.get("profile") or {}).get("measurements")
        if isinstance(recorded, str):
            candidates.append(Path(recorded))
        for path in candidates:
            if path.is_file():
                data = read_measurements(path)
                if same_factory(data.get("bundle", {}), self.bundle):
                    return data
                self.notes.append(f"{path} belongs to another factory: not used")
        return None

    def cache(self, kind: str):
        from nnfc.analysis.cache import ResultCache
        return ResultCache.for_factory(self.bundle.root, kind, self.use_cache)
