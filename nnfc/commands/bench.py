"""``nnfc bench``: measure an artifact's latency and peak memory on a target; exit 1 over budget.

Made for CI gates: ``nnfc bench out/ --lat-budget 20ms --mem-budget 300MB`` exits 0 within the
budgets, 1 when one is exceeded and 2 on bad input (unknown target, unreadable file, missing
runtime).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import click

from nnfc.errors import NnfcError

#: artifact suffix -> the target that runs it when --target is not given
SUFFIX_TARGETS = {".tflite": "android", ".engine": "jetson", ".plan": "jetson", ".onnx": "desktop"}


def resolve_artifact(path: Path, target: str | None) -> tuple[Path, str]:
    """The artifact file and target name for ``path``: a file, or a ``nnfc compile`` output
    directory (its report.json names the artifact and the target)."""
    if not path.exists():
        raise NnfcError(f"{path} does not exist")
    if path.is_dir():
        report_path = path / "report.json"
        if not report_path.is_file():
            raise NnfcError(f"{path} is a directory without report.json: give an artifact file "
                            f"(.onnx, .tflite, .engine) or a `nnfc compile` output directory")
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
            artifact = path / report["artifact"]
            compiled_for = report["request"]["target"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise NnfcError(f"{report_path} has no artifact/request.target: {exc}") from exc
        if (not isinstance(report["artifact"], str) or Path(report["artifact"]).name
                != report["artifact"] or path.resolve() not in artifact.resolve().parents):
            raise NnfcError(f"{report_path}: artifact {report['artifact']!r} must be a file "
                            f"name inside {path}")
        return artifact, target or compiled_for
    if target is None:
        target = SUFFIX_TARGETS.get(path.suffix.lower())
        if target is None:
            raise NnfcError(f"cannot tell the target of {path.name} from its suffix; "
                            f"give --target (desktop, android, jetson)")
    return path, target


def within_budgets(result, lat_ms: float | None, mem_mb: float | None, stat: str
                   ) -> list[str]:
    """Budget violations as human lines (empty: within budget)."""
    from nnfc.units import format_mb, format_ms
    violations = []
    latency = result.median_ms if stat == "median" else result.p90_ms
    if lat_ms is not None and latency > lat_ms:
        violations.append(f"latency {stat} {format_ms(latency)} > budget {format_ms(lat_ms)}")
    if mem_mb is not None and result.peak_memory_mb > mem_mb:
        violations.append(f"peak memory {format_mb(result.peak_memory_mb)} > budget "
                          f"{format_mb(mem_mb)}")
    return violations


@click.command("bench")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--target", default=None,
              help="desktop, android or jetson (default: from the suffix: .onnx desktop, "
                   ".tflite android, .engine jetson; or the target a compile output was built "
                   "for). An .onnx file given for android is converted first.")
@click.option("--runs", default=50, show_default=True, type=click.IntRange(1, None),
              help="Timed runs (batch 1).")
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(0, None),
              help="Untimed warm-up runs.")
@click.option("--threads", default=None, type=click.IntRange(1, None),
              help="CPU threads (desktop: default ORT's choice; android: default "
                   "min(4, cores)).")
@click.option("--device", default=None, metavar="SERIAL",
              help="android: benchmark on this adb device with TFLite's benchmark_model "
                   "(see nnfc/targets/adb.py) instead of LiteRT on this machine.")
@click.option("--lat-budget", default=None, metavar="LATENCY",
              help="Fail (exit 1) when the latency exceeds this, e.g. 20ms, 0.5s.")
@click.option("--lat-stat", type=click.Choice(["median", "p90"]), default="median",
              show_default=True, help="Which latency the budget applies to.")
@click.option("--mem-budget", default=None, metavar="MEMORY",
              help="Fail (exit 1) when the peak memory exceeds this, e.g. 300MB, 1.2GiB.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def bench(artifact: Path, target: str | None, runs: int, warmup: int, threads: int | None,
          device: str | None, lat_budget: str | None, lat_stat: str, mem_budget: str | None, as_json: bool) -> None:
    """Measure ARTIFACT's median/p90 latency and peak memory on a target.

    ARTIFACT is a file nnfc emitted (model.ort.onnx, model.tflite, model.engine), any ONNX or
    TFLite file, or a `nnfc compile` output directory. Exits 1 when a budget is exceeded, so CI
    can gate on it.
    """
    from nnfc.targets import TARGETS, get_target
    from nnfc.units import format_mb, format_ms, parse_latency_ms, parse_memory_mb

    lat_ms = parse_latency_ms(lat_budget) if lat_budget is not None else None
    mem_mb = parse_memory_mb(mem_budget) if mem_budget is not None else None
    path, target_name = resolve_artifact(artifact, target)
    if target_name not in TARGETS:
        raise NnfcError(f"unknown target {target_name!r}; known: {', '.join(sorted(TARGETS))}")
    if not path.is_file():
        raise NnfcError(f"artifact {path} does not exist")
    options = {"threads": threads} if threads and target_name in ("desktop", "android") else {}
    if device:
        if target_name != "android":
            raise NnfcError("--device (an adb serial) applies to the android target only")
        options["device"] = device
    tgt = get_target(target_name, **options)

    with tempfile.TemporaryDirectory(prefix="nnfc-bench-") as tmp:
        measured = path
        suffix = path.suffix.lower()
        if suffix == ".tflite" and target_name != "android":
            raise NnfcError(f"{path.name} is a TFLite model: bench it with --target android")
        if suffix in (".engine", ".plan") and target_name != "jetson":
            raise NnfcError(f"{path.name} is a TensorRT engine: bench it with --target jetson")
        if suffix == ".onnx" and target_name == "android":
            if not as_json:
                click.echo(f"converting {path.name} to TFLite for the android target...",
                           err=True)
            measured = tgt.lower(path, tmp)
        result = tgt.benchmark(measured, runs=runs, warmup=warmup)

    violations = within_budgets(result, lat_ms, mem_mb, lat_stat)
    if as_json:
        click.echo(json.dumps({
            "artifact": str(path), "target": target_name, **result.to_json(),
            "budget": {"latency_ms": lat_ms, "latency_stat": lat_stat, "memory_mb": mem_mb},
            "within_budget": not violations, "violations": violations}, indent=1))
    else:
        details = result.details
        click.echo(f"artifact  {path} ({target_name}, {details.get('runtime', tgt.name)})")
        click.echo(f"latency   median {format_ms(result.median_ms)}, p90 "
                   f"{format_ms(result.p90_ms)} ({result.runs} runs, batch 1)")
        click.echo(f"memory    {format_mb(result.peak_memory_mb)} "
                   f"({details.get('memory', 'peak')})")
        if details.get("layout"):
            click.echo(f"layout    {details['layout']}")
        if lat_ms is not None or mem_mb is not None:
            click.echo("budget    " + ("OK" if not violations else
                                       "EXCEEDED: " + "; ".join(violations)))
    if violations:
        sys.exit(1)
