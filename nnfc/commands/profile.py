"""``nnfc profile``: measure random subnets of a factory on a target and fit its predictor;
``nnfc profile fit``: fit a predictor from measurements made elsewhere (e.g. on a Jetson)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from nnfc.commands.options import target_choice

from nnfc.outputs import nonempty_path

from nnfc.errors import NnfcError
from nnfc.targets import DEFAULT_TARGET, TARGETS


def measurement_options(target: str, threads: int | None) -> dict:
    """Options for measuring on ``target``: its repeatable settings, ``--threads`` where it
    takes threads (0: the runtime's default)."""
    from nnfc.targets import supported_options, target_class
    options = dict(target_class(target).repeatable_options)
    if threads is not None:
        options.pop("threads", None)
        options.update(supported_options(target, {"threads": threads or None}))
    return options


def _paths(bundle_root: Path, target: str, out: str | None,
           precision: str = "fp32") -> tuple[Path, Path, Path]:
    from nnfc.compiler.pipeline import default_profile_path
    predictor = Path(out) if out else default_profile_path(bundle_root, target, precision)
    stem = predictor.with_suffix("")
    return (predictor, stem.with_name(stem.name + ".measurements.json"),
            stem.with_name(stem.name + ".png"))


#: what marks each file of a profile output as nnfc's (the plot: its PNG Software text)
PREDICTOR_MARKER = b'"format": "nnfc-predictor"'
MEASUREMENTS_MARKER = b'"format": "nnfc-profile-measurements"'
PLOT_MARKER = b"nnfc profile"


def check_profile_outputs(paths: tuple[Path, Path, Path], inputs=(),
                          measurements: bool = True, fresh: bool = True) -> None:
    """The no-clobber rule for the predictor and the files derived from its name: each is
    missing or nnfc's; the measurements and plot also count as nnfc's beside an nnfc
    predictor (profiles written before the plot carried a marker). Without ``fresh`` the
    measurements are resumed from, and their reader refuses a foreign file. Run before any
    work."""
    from nnfc.outputs import check_output_file
    predictor, meas_path, png = paths
    if str(predictor) == "-":
        raise NnfcError("-o needs a file: a profile is the predictor JSON plus its "
                        "measurements and plot beside it")
    check_output_file(predictor, PREDICTOR_MARKER, "predictor", inputs=inputs)
    ours = predictor.is_file()
    derived = [(png, PLOT_MARKER, "profile plot")]
    if measurements:  # `fit` reads measurements, it does not write them
        derived.append((meas_path, MEASUREMENTS_MARKER if fresh else b"", "measurement file"))
    for path, marker, what in derived:
        check_output_file(path, marker if not ours or not path.is_file() else b"",
                          what, inputs=inputs)


def _print_accuracy(predictor, path: Path, png: Path | None, as_json: bool) -> None:
    acc = predictor.meta["accuracy"]
    if as_json:
        click.echo(json.dumps({"predictor": str(path), "plot": str(png) if png else None,
                               "accuracy": acc}, indent=1))
        return
    for key in ("latency", "memory"):
        a = acc[key]
        click.echo(f"{key:8s} accuracy {a['accuracy']:.2%} (1 - MAPE, {a['n_test']} held-out "
                   f"subnets; p90 error {a['p90_rel_error']:.1%}, max {a['max_rel_error']:.1%})")
        cv = acc.get(f"{key}_cv")
        if cv:
            click.echo(f"{'':8s} {cv['folds']}-fold CV: 1 - MAPE {cv['accuracy']:.2%}, within "
                       f"±5% {cv['within_5']:.1%}, within ±10% {cv['within_10']:.1%}")
    model, margin = acc.get("latency_model"), predictor.meta.get("margin")
    if model and margin:
        click.echo(f"latency model {model['feature_set']} (ridge {model['ridge']:g}, chosen by "
                   f"CV); safety margin {margin['latency']:.1%}")
    click.echo(f"predictor: {path}" + (f"\nplot:      {png}" if png else ""))


@click.group(invoke_without_command=True)
@click.option("--bundle", "bundle_path", type=click.Path(), default=None,
              help="Factory bundle directory (default: the shipped default factory).")
@click.option("--target", default=DEFAULT_TARGET, show_default=True, type=target_choice(),
              help=f"Target to profile ({', '.join(TARGETS)}).")
@click.option("--subnets", default=300, show_default=True, type=click.IntRange(10, None),
              help="Random subnets to measure (the paper: 200-1000 are enough).")
@click.option("-o", "--output", default=None, callback=nonempty_path,
              help="Predictor JSON (default: the user's cache, keyed by factory, target and "
                   "this machine; see nnfc info); measurements go "
                   "beside it as <name>.measurements.json, the plot as <name>.png.")
@click.option("--runs", default=10, show_default=True, type=click.IntRange(1, None),
              help="Timed runs per round (each round's median is taken).")
@click.option("--rounds", default=10, show_default=True, type=click.IntRange(1, None),
              help="Measurement rounds per subnet: against the reference subnet (desktop) half "
                   "as many rounds of --runs pairs, median of the rounds' ratios; on other "
                   "targets the smallest round median.")
@click.option("--warmup", default=3, show_default=True, type=click.IntRange(0, None),
              help="Untimed warm-up runs per subnet.")
@click.option("--threads", default=None, type=click.IntRange(0, None),
              help="Runtime threads, for targets that take them (0: the runtime's default; "
                   "default: the target's repeatable setting, 1 on desktop: one thread gives "
                   "repeatable latencies on a shared machine). Compile reuses the setting.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random gate vectors.")
@click.option("--device-dir", type=click.Path(), default=None, callback=nonempty_path,
              help="Instead of measuring here, write the pruned subnets, their plan and the "
                   "target's device-side profiling script into this directory (e.g. for a "
                   "Jetson); measure there, then run `nnfc profile ... fit`.")
@click.option("--fresh", is_flag=True, help="Start over instead of resuming earlier measurements.")
@click.option("--force", is_flag=True,
              help="--device-dir: also write into a non-empty directory that is not an nnfc "
                   "device profile (never deletes or overwrites files nnfc did not write).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32",
              show_default=True,
              help="Measure the subnets built in this precision (as `nnfc compile --precision` "
                   "builds them; int8 calibrated on the factory's first seen task): a profile "
                   "per target and precision, which compile uses for that precision's budget.")
@click.option("--json", "as_json", is_flag=True, help="Print the accuracy as JSON.")
@click.pass_context
def profile(ctx, bundle_path, target, subnets, output, runs, rounds, warmup, threads, seed,
            device_dir, fresh, force, precision, as_json):
    """Profile random subnets of a factory on a target and fit its latency/memory predictor.

    Resumable: rerunning continues from the measurements already on disk.
    """
    ctx.ensure_object(dict)
    ctx.obj.update(bundle_path=bundle_path, target=target, output=output, as_json=as_json)
    if ctx.invoked_subcommand is not None:
        return
    from nnfc.bundle import read_bundle
    from nnfc.factories import resolve_factory
    from nnfc.compiler.fitting import fit_and_save
    from nnfc.compiler.profiler import profile_subnets
    from nnfc.compiler.pipeline import make_target

    bundle = read_bundle(resolve_factory(bundle_path))
    if device_dir:
        from nnfc.compiler.profiler import export_device_subnets
        from nnfc.outputs import output_dir
        tgt = make_target(target)
        with output_dir(device_dir, "device-profile", force=force, inputs=[bundle.root],
                        option="--device-dir") as tmp:
            script = Path(device_dir) / export_device_subnets(
                bundle, tgt, tmp, subnets, seed, progress=not as_json).name
        pred_path = _paths(bundle.root, target, output)[0]
        click.echo(f"wrote {subnets} subnets and {script}.\nCopy {device_dir} to the device, "
                   f"run `bash {script.name}` there, copy its log back next to plan.json, "
                   "then:\n"
                   f"  nnfc profile --bundle {bundle.root} --target {target} -o {pred_path} fit "
                   f"--measurements {Path(device_dir) / '<log>'}")
        return
    options = measurement_options(target, threads)
    from nnfc.precision.stage import check as check_precision
    from nnfc.precision.target import LATENCY_CALIBRATION_SAMPLES, precision_target
    tgt = make_target(target, options)
    check_precision(precision, tgt)
    tgt = precision_target(tgt, precision, bundle, keep_float_lowering=False,
                           samples=LATENCY_CALIBRATION_SAMPLES)
    pred_path, meas_path, png_path = _paths(bundle.root, target, output, precision)
    check_profile_outputs((pred_path, meas_path, png_path), inputs=[bundle.root], fresh=fresh)
    data = profile_subnets(bundle, tgt, meas_path, subnets=subnets, runs=runs, warmup=warmup,
                           rounds=rounds,
                           seed=seed, resume=not fresh, progress=not as_json)
    data["_path"] = str(meas_path)
    data["rows"] = data["rows"][:subnets]
    predictor, png = fit_and_save(bundle, target, data, pred_path, png_path,
                                  target_options=options, precision=precision)
    _print_accuracy(predictor, pred_path, png, as_json)


@profile.command("fit")
@click.option("--measurements", required=True, type=click.Path(),
              help="Measurement JSON ({'rows': [{'gates': ..., 'latency_ms': ...}, ...]}), "
                   "e.g. parsed from a device-side profiling run.")
@click.option("--plan", type=click.Path(), default=None,
              help="plan.json of the exported subnets (default: beside the measurements).")
@click.option("--local", is_flag=True,
              help="The measurements were made on this machine (compile then checks the host).")
@click.pass_context
def fit(ctx, measurements, plan, local):
    """Fit a predictor from measurements made elsewhere (nnfc profile's options apply:
    --bundle, --target, -o go before `fit`)."""
    from nnfc.bundle import read_bundle
    from nnfc.factories import resolve_factory
    from nnfc.compiler.fitting import fit_and_save
    from nnfc.compiler.pipeline import make_target
    from nnfc.compiler.profiler import read_device_measurements, read_measurements

    opts = ctx.obj
    bundle = read_bundle(resolve_factory(opts["bundle_path"]))
    if plan or not str(measurements).endswith(".json"):
        data = read_device_measurements(measurements, make_target(opts["target"]), plan)
    else:
        data = read_measurements(measurements)
    if data.get("target") not in (None, opts["target"]):
        raise NnfcError(f"{measurements} holds measurements for target {data['target']!r}, "
                        f"not {opts['target']!r} (pass --target {data['target']})")
    data["_path"] = str(measurements)
    paths = _paths(bundle.root, opts["target"], opts["output"])
    check_profile_outputs(paths, inputs=[measurements, plan], measurements=False)
    pred_path, _, png_path = paths
    predictor, png = fit_and_save(bundle, opts["target"], data, pred_path, png_path,
                                  measured_locally=local)
    _print_accuracy(predictor, pred_path, png, opts["as_json"])
