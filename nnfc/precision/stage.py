"""The precision stage of ``nnfc compile``: the kept subnet's float artifact, then (``--precision
int8|fp16|auto``) its quantized artifact, accuracy-controlled and measured beside it.

Files in the output directory: ``model.onnx`` and the float artifact as for fp32, the quantized
ONNX model (``model.int8.onnx``: QDQ, what TensorRT and other QDQ runtimes take) and the
target's artifact of it with the precision in its name (``model.int8.ort.onnx``,
``model.int8.tflite``...). The report's ``artifact`` is the one the precision chose; its
``precision`` section holds both metrics, both latencies, the layers kept float and every
attempt.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

import onnx

from nnfc.errors import NnfcError
from nnfc.precision import DEFAULT_MAX_DROP, check_precision, memory_mb
from nnfc.precision.accuracy import DEFAULT_MAX_REVERTS, Controlled, control, drop_points


def supported(target) -> tuple[str, ...]:
    """The precisions ``target`` builds (fp32 only for a target that declares none)."""
    return tuple(getattr(type(target), "precisions", ("fp32",)))


def check(precision: str, target) -> str:
    """``precision`` when the target builds it (``auto`` always), else one clear error."""
    return check_precision(precision, target.name, supported(target),
                           getattr(type(target), "precision_refusals", {}))


def precision_name(name: str, precision: str) -> str:
    """``model.ort.onnx`` -> ``model.int8.ort.onnx``; other names get the precision first."""
    stem, dot, rest = name.partition(".")
    return f"{stem}.{precision}.{rest}" if stem == "model" and dot else f"{precision}.{name}"


class PrecisionStage:
    """Builds, checks and measures the quantized artifacts of one compile's kept round."""

    def __init__(self, bundle, task: list[str], target, meter, out: Path,
                 max_drop: float = DEFAULT_MAX_DROP, samples: int | None = None,
                 progress: Callable[[str], None] = lambda msg: None):
        from nnfc.benchmarking.evaluate import DEFAULT_SAMPLES
        self.bundle, self.task, self.target, self.meter = bundle, task, target, meter
        self.out, self.max_drop, self.progress = out, max_drop, progress
        self.samples = samples or DEFAULT_SAMPLES
        self._metrics: dict[Path, float] = {}

    # ---- metric ---------------------------------------------------------------------------
    def metric(self, artifact: Path, outputs: list[str]) -> float:
        """The family's metric of ``artifact`` on the target's runtime (as ``nnfc bench
        --eval`` measures it: same samples, same seed)."""
        from nnfc.benchmarking.evaluate import DEFAULT_SEED, family_metric
        if artifact not in self._metrics:
            _, value = family_metric(self.bundle, self.task, self.target, artifact, outputs,
                                     self.samples, DEFAULT_SEED)
            self._metrics[artifact] = float(value)
        return self._metrics[artifact]

    # ---- reduced precisions ----------------------------------------------------------------
    def build(self, precision: str, float_model: bytes, float_artifact: Path,
              reuse: Path | None = None) -> tuple[Controlled, dict]:
        """The ``precision`` artifact of ``float_model`` (the deployable float graph the float
        artifact was lowered from), accuracy-controlled where it is int8; ``reuse``: that
        artifact as a measured round already built it (taken where the target builds it
        itself, e.g. a TFLite conversion of minutes)."""
        from nnfc.precision import ort_quantize as oq
        from nnfc.precision.calibration import calibration_for
        model = oq.prepared(onnx.load_from_string(float_model))
        outputs = [o.name for o in model.graph.output]
        raw = [o["name"] for o in self.bundle.output_spec]
        own = getattr(self.target, "lower_precision", None)  # a target's own path (TFLite)
        float_metric = self.metric(float_artifact, outputs)
        if precision == "fp16":
            work = self._work()
            art = reuse or Path(own(model, "fp16", work) if own else
                                self.target.lower_fp16(model.SerializeToString(), work))
            result = control(lambda kept: art, lambda a: self.metric(a, outputs), float_metric,
                             None, self.max_drop)
            return self._finish(result, "fp16"), {}
        calibration = calibration_for(self.bundle, self.task)
        # the layers that write the network's outputs stay float: their quantization coarsens
        # the scores the metric ranks (red,car: mAP@0.5 0.905 with them int8, 0.926 float)
        heads = oq.output_producers(model, raw)
        nodes = [n for n in oq.network_nodes(model, raw) if n not in heads]
        symmetric = bool(getattr(type(self.target), "int8_symmetric", False))
        built: dict[tuple[str, ...], onnx.ModelProto] = {}

        def build(kept: list[str]) -> Path:
            self.progress(f"int8: calibrating on {len(calibration.images)} samples"
                          + (f", {len(kept)} layer(s) float" if kept else ""))
            if own is not None and reuse is not None and not kept:
                return reuse
            work = self._work()
            if own is not None:
                return Path(own(model, "int8", work, calibration=calibration,
                                raw_outputs=raw, keep_float=kept))
            q = oq.quantize_qdq(model, calibration, nodes, kept, symmetric=symmetric)
            built[tuple(kept)] = q
            return Path(self.target.lower(q.SerializeToString(), work))

        # layer by layer: ranked by nnfc where it quantizes (onnxruntime QDQ), else by the
        # target's own quantizer at build time (TFLite: the n-th attempt keeps n of its
        # noisiest layers float)
        rank = ((lambda: oq.sensitivity(model, built[()], calibration, nodes)) if own is None
                else (lambda: [((f"noisiest layer {i + 1}",), 0.0)
                               for i in range(DEFAULT_MAX_REVERTS)]))
        result = control(build, lambda a: self.metric(a, outputs), float_metric, rank,
                         self.max_drop, progress=self.progress)
        info: dict[str, Any] = {"calibration": calibration.describe()}
        if built:
            qdq = built[tuple(result.best.kept_float)]
            onnx.save(qdq, str(self.out / "model.int8.onnx"))
            info.update(qdq_model="model.int8.onnx", qdq_param_bytes=_param_bytes(qdq))
        return self._finish(result, "int8"), info

    def _work(self) -> Path:
        n = sum(1 for d in self.out.iterdir() if d.name.startswith(".precision-"))
        work = self.out / f".precision-{n + 1}"
        work.mkdir()
        return work

    def _finish(self, result: Controlled, precision: str) -> Controlled:
        best = result.best
        final = self._settle(best.artifact, precision)
        self._metrics[final] = best.metric
        best.artifact = final
        for d in self.out.iterdir():
            if d.is_dir() and d.name.startswith(".precision-"):
                shutil.rmtree(d, ignore_errors=True)
        return result

    def _settle(self, artifact: Path, precision: str) -> Path:
        """Move the artifact's directory's files to the output with the precision in their
        names (a TFLite sidecar follows its model; a build recipe, e.g. jetson's
        ``build_engine.sh``, is rewritten to name the renamed files and its engine)."""
        files = [f for f in sorted(artifact.parent.iterdir()) if f.is_file()]
        renamed = {f.name: precision_name(f.name, precision) for f in files}
        if artifact.suffix != ".engine":
            renamed.setdefault("model.engine", precision_name("model.engine", precision))
        final = None
        for f in files:
            dest = self.out / renamed[f.name]
            if f.suffix == ".sh":
                text = f.read_text(encoding="utf-8")
                for old, new in renamed.items():
                    text = text.replace(old, new)
                f.write_text(text, encoding="utf-8")
            os.replace(f, dest)
            if f.name == artifact.name:
                final = dest
        if final is None:
            raise NnfcError(f"the {precision} lowering wrote no {artifact.name}")
        return final


def _param_bytes(model: onnx.ModelProto) -> int:
    from nnfc.compiler.graph_stats import _ELEM_BYTES
    total = 0
    for init in model.graph.initializer:
        n = 1
        for d in init.dims:
            n *= d
        total += n * _ELEM_BYTES.get(init.data_type, 4)
    return total


def run_stage(req, bundle, target, meter, kept, tmp: Path, stats,
              progress: Callable[[str], None] = lambda msg: None,
              verify: Callable | None = None) -> dict[str, Any]:
    """Quantize ``kept`` (the measured float round) as ``req.precision`` asks; update
    ``kept.artifact``/``kept.bench`` to the chosen artifact; return the report's
    ``precision`` section. Where the rounds were built in the precision (``target`` a
    :class:`~nnfc.precision.target.PrecisionTarget`), the float artifact of the kept subnet is
    lowered here, verified with ``verify`` and measured beside it."""
    inner = getattr(target, "inner", target)
    rounds_target, reuse = target, None
    if inner is not target:
        reuse = _set_aside(kept.artifact, tmp)
        kept.artifact = Path(inner.lower(kept.model, tmp))
        if verify is not None:
            verify(kept)
        kept.bench = meter(kept.artifact)
    target = inner
    precision = check(req.precision, target)
    float_ms = kept.latency_ms
    section: dict[str, Any] = {"requested": precision, "built": "fp32",
                               "max_drop_points": req.max_drop,
                               "float_artifact": kept.artifact.name,
                               "float_latency_ms": float_ms}
    if precision == "fp32":
        return section
    options = [p for p in ("int8", "fp16") if p in supported(target)] \
        if precision == "auto" else [precision]
    stage = PrecisionStage(bundle, list(req.task), target, meter, tmp, req.max_drop,
                           progress=progress)
    tried = []
    for p in options:
        result, info = stage.build(p, kept.model, kept.artifact,
                                   reuse if p == getattr(rounds_target, "precision", None)
                                   else None)
        best = result.best
        bench = meter(best.artifact)
        ms = bench.latency_ms if not isinstance(bench, str) else None
        entry = {"precision": p, "artifact": best.artifact.name, "latency_ms": ms,
                 "metric": {"name": bundle_metric(bundle), "float": result.float_metric,
                            "quantized": best.metric,
                            "drop_points": round(drop_points(result.float_metric,
                                                             best.metric), 2)},
                 "within_max_drop": result.within(),
                 "kept_float": best.kept_float,
                 "attempts": [a.entry(result.float_metric) for a in result.attempts],
                 "speedup_vs_float": (float_ms / ms) if ms and float_ms else None,
                 "memory_mb": memory_mb(stats.param_bytes, stats.peak_tensor_bytes, p),
                 **info}
        tried.append(entry)
        faster = ms is None or float_ms is None or ms < float_ms
        if precision != "auto" or (result.within() and faster):
            kept.artifact, kept.bench = best.artifact, bench
            section.update(entry, built=p)
            break
    section["tried"] = tried
    return section


def _set_aside(artifact: Path, out: Path) -> Path:
    """Move the artifact's files (all but ``model.onnx``) from ``out`` into a work directory
    beside the others (removed with them); return the artifact's new path."""
    pre = out / ".precision-0"
    pre.mkdir()
    for f in list(out.iterdir()):
        if f.is_file() and f.name != "model.onnx":
            os.replace(f, pre / f.name)
    return pre / artifact.name


def bundle_metric(bundle) -> str:
    from nnfc.evaluation import task_family_of
    return task_family_of(bundle).metric
