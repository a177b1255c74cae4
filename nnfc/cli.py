"""``nnfc`` command line: one click group; each verb lives in ``nnfc/commands/<verb>.py``.

Verbs are imported lazily so that ``nnfc compile`` never imports torch. To add a verb, add one
line to ``COMMANDS`` (verb -> "module:click object", one-line help). Library code reports
through :mod:`logging` (logger ``nnfc``); ``--verbose``/``--quiet`` decide what is shown.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util  # `import importlib` alone does not load it (a wheel install crashed)
import logging
import os
import sys

import click

from nnfc import __version__
from nnfc.errors import EXIT_ERROR, EXIT_INTERRUPTED, NnfcError

# verb -> ("module:object" of a click.Command or click.Group, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "compile": ("nnfc.commands.compile:compile_",
                "Build the model for a task within a latency/memory budget on a target."),
    "run": ("nnfc.commands.run:run",
            "Compile and benchmark every scenario of a pipeline file (TOML), e.g. in CI."),
    "bench": ("nnfc.commands.bench:bench",
              "Measure artifacts; compare with a baseline; fail on a regression or over budget."),
    "info": ("nnfc.commands.info:info",
             "What a factory knows: attributes, tasks, gate layers, size, profiles, recipe."),
    "factory": ("nnfc.commands.factory:factory", "List the factories nnfc can find."),
    "profile": ("nnfc.commands.profile:profile",
                "Profile random subnets on a target and fit its latency/memory predictor."),
    "prune": ("nnfc.commands.prune:prune",
              "Fold gates into an ONNX supernet and physically remove gated-off channels."),
    "demo": ("nnfc.commands.demo:demo", "End-to-end demo on the shipped default factory."),
    "eval": ("nnfc.commands.eval:eval_",
             "Accuracy and activation ratio of a factory's pruned models per task and limit."),
    "train": ("nnfc.commands.train:train",
              "Train a model factory (gated supernet + assembler) and write a bundle."),
    "export": ("nnfc.commands.export:export",
               "Export a gated supernet preset to ONNX with one gate input per layer."),
    "baseline": ("nnfc.commands.baseline:baseline",
                 "The paper's baselines for one task (Retrain, Prune&Tune), measured like "
                 "compile."),
    "analyze": ("nnfc.commands.analyze:analyze",
                "The paper's analyses as pictures (frontier, activation, gates, ...) + report."),
}

#: optional modules -> (extra, how to install it): a verb that needs one says so in one line
EXTRAS: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("torch", "torch_pruning", "onnxscript", "timm"), (
        "train", 'pip install torch==2.13.0 && pip install "nnfc[train]" (torch first: the CPU '
                 'build)')),
    **dict.fromkeys(("tensorflow", "ai_edge_litert", "onnx2tf", "tf_keras", "onnxsim",
                     "onnx_graphsurgeon", "sng4onnx"), (
        "android", 'pip install "nnfc[android]" && pip install --no-deps onnx2tf==1.29.24 '
                   "tf-keras==2.21.0 (or make install-android)")),
    "matplotlib": ("plot", "pip install matplotlib (a dependency of nnfc: reinstall nnfc)"),
    **dict.fromkeys(("tensorrt", "cuda"), (
        "jetson", 'pip install "nnfc[jetson]" and TensorRT (JetPack on a Jetson)')),
}

#: examples shown under a verb's --help where its module gives none
EXAMPLES: dict[str, str] = {
    "bench": """nnfc bench out/red-car --lat 5ms --mem 20MB
  nnfc bench out/a out/b --eval --save main.json
  nnfc bench out/a out/b --baseline main.json --junit junit.xml --markdown -
  nnfc bench --trend run1.json run2.json --plot trend.png""",
    "profile": """nnfc profile --target desktop --subnets 300
  nnfc profile --bundle attrod-mobilenet --target android --subnets 60 -o android.json
  nnfc profile --target jetson --device-dir jetson-subnets/      # measure on the device""",
    "prune": """nnfc prune supernet.onnx --gates out/red-car/gates.json -o small.onnx""",
    "demo": """nnfc demo
  nnfc demo --target desktop --target jetson -o out/demo""",
    "eval": """nnfc eval --task red,car --limit 0.05,0.25,1
  nnfc eval --bundle factories/numvqa-resnet --json""",
    "train": """nnfc train --config configs/attrod-resnet.toml -o factories/mine
  nnfc train --config configs/attrod-resnet.toml -o factories/mine --resume""",
    "export": """nnfc export --preset resnet18 -o r18.onnx
  nnfc export --checkpoint factories/mine.ckpt -o factories/mine""",
    "baseline": """nnfc baseline retrain --task red,car --target desktop -o out/retrain
  nnfc baseline prune-tune --task red,car --lat 3ms -o out/prune-tune""",
}

#: hidden old spellings of verbs -> the verb
ALIASES: dict[str, str] = {"factories": "factory"}

EPILOG = """\b
Examples:
  nnfc compile --task "red cars" --target desktop --lat 5ms -o out/red-car
  nnfc info                       # the default factory: attributes, tasks, profiles
  nnfc run pipeline.toml          # every scenario of a pipeline file, benchmarked
  nnfc COMMAND --help             # each command's options and examples


Shell completion (bash; zsh/fish: _NNFC_COMPLETE=zsh_source / fish_source):
  eval "$(_NNFC_COMPLETE=bash_source nnfc)"
"""


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (target, _) in COMMANDS.items() if _module_exists(target)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        name = ALIASES.get(name, name)
        target = COMMANDS.get(name, (None, ""))[0]
        if target is None or not _module_exists(target):
            return None
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        if not command.epilog and name in EXAMPLES:
            command.epilog = "\b\nExamples:\n  " + EXAMPLES[name]
        return command

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, [*self.list_commands(ctx), *ALIASES], n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise click.UsageError(f"no command {name!r}{hint}", ctx)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_exists(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


class _EchoHandler(logging.Handler):
    """Log records as plain lines on the current standard error (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "nnfc: warning: " if record.levelno >= logging.WARNING else ""
        click.echo(prefix + self.format(record), err=True)


_tqdm_disabled_here = False


def setup_logging(verbosity: int) -> None:
    """``nnfc`` logger: INFO by default, DEBUG with --verbose, warnings only with --quiet."""
    logger = logging.getLogger("nnfc")
    if not any(isinstance(h, _EchoHandler) for h in logger.handlers):
        logger.addHandler(_EchoHandler())
        logger.propagate = False
    logger.setLevel({-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG))
    global _tqdm_disabled_here
    if verbosity < 0 and not os.environ.get("TQDM_DISABLE"):
        os.environ["TQDM_DISABLE"] = "1"  # progress bars are information too
        _tqdm_disabled_here = True
    elif verbosity >= 0 and _tqdm_disabled_here:  # an earlier -q in this process (tests)
        os.environ.pop("TQDM_DISABLE", None)
        _tqdm_disabled_here = False


@click.group(cls=LazyGroup, epilog=EPILOG,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="nnfc")
@click.option("-v", "--verbose", count=True, help="More detail (debug messages).")
@click.option("-q", "--quiet", is_flag=True,
              help="Only results, warnings and errors (no progress bars).")
def cli(verbose: int, quiet: bool) -> None:
    """nnfc — NN-Factory compiler: one model factory, many customized edge models."""
    setup_logging(-1 if quiet else verbose)


def _error(message: str) -> None:
    for line in message.splitlines() or ["error"]:
        click.echo(f"nnfc: error: {line}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Console entry point. Every error is ``nnfc: error: <one line>`` on stderr: bad usage
    (exit 2, with the command to get help), an NnfcError (one line per problem, exit 2), an OS
    error nnfc did not anticipate (full disk, permissions; exit 2)."""
    if not sys.stderr.isatty():  # logs, CI: progress bars update once a second, not 10 times
        os.environ.setdefault("TQDM_MININTERVAL", "1")
    setup_logging(0)
    try:
        cli.main(args=argv, prog_name="nnfc", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "nnfc"
        _error(f"{exc.format_message()} (see {where} --help)")
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _error(exc.format_message())
        sys.exit(exc.exit_code)
    except NnfcError as exc:
        _error(str(exc) or type(exc).__name__)
        sys.exit(EXIT_ERROR)
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        verb = next((a for a in (argv if argv is not None else sys.argv[1:])
                     if a in COMMANDS), "this command")
        _error(f"nnfc {verb} needs {exc.name}, from the '{extra[0]}' extra: {extra[1]}")
        sys.exit(EXIT_ERROR)
    except OSError as exc:
        from nnfc.outputs import os_error_text
        _error(os_error_text(exc))
        sys.exit(EXIT_ERROR)
    except SystemExit:
        raise
    except Exception as exc:
        if not getattr(exc, "nnfc_user_error", False):  # e.g. the passes' PruneError
            raise
        _error(str(exc))
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
