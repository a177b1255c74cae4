"""``nnfc`` command line: one click group; each verb lives in ``nnfc/commands/<verb>.py``.

Verbs are imported lazily so that ``nnfc compile`` never imports torch.
"""

from __future__ import annotations

import importlib
import importlib.util  # not loaded by `import importlib` alone (a wheel install has no hook that loads it)
import os
import sys

import click

from nnfc import __version__
from nnfc.errors import EXIT_ERROR, EXIT_INTERRUPTED, NnfcError

# verb -> "module:function" (a click.Command)
COMMANDS: dict[str, str] = {
    "prune": "nnfc.commands.prune:prune",
    "bench": "nnfc.commands.bench:bench",
    "train": "nnfc.commands.train:train",
    "eval": "nnfc.commands.eval:eval_",
    "profile": "nnfc.commands.profile:profile",
    "compile": "nnfc.commands.compile:compile_",
    "demo": "nnfc.commands.demo:demo",
    "export": "nnfc.commands.export:export",
    "baseline": "nnfc.commands.baseline:baseline",
}

HELP = {
    "prune": "Fold gates into an ONNX supernet and physically remove gated-off channels.",
    "bench": "Measure artifacts; compare with a baseline; fail on a regression or over budget.",
    "train": "Train a model factory (gated supernet + assembler) and write a bundle.",
    "eval": "Accuracy and activation ratio of a factory's pruned models per task and limit.",
    "profile": "Profile random subnets on a target and fit its latency/memory predictor.",
    "compile": "Build the model for a task within a latency/memory budget on a target.",
    "demo": "End-to-end demo on the shipped default factory.",
    "export": "Export a gated supernet preset to ONNX with one gate input per layer.",
    "baseline": "The paper's baselines for one task (Retrain, Prune&Tune), measured like compile.",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, target in COMMANDS.items() if _module_exists(target))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None or not _module_exists(target):
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, HELP.get(name, "")) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_exists(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nnfc")
def cli() -> None:
    """nnfc — NN-Factory compiler: one model factory, many customized edge models."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: NnfcError becomes one ``nnfc: error:`` line per problem on stderr
    and exit code 2 (so does an OS error nnfc did not anticipate: full disk, permissions)."""
    if not sys.stderr.isatty():  # logs, CI: progress bars update once a second, not 10 times
        os.environ.setdefault("TQDM_MININTERVAL", "1")
    try:
        cli.main(args=argv, prog_name="nnfc", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except NnfcError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            click.echo(f"nnfc: error: {line}", err=True)
        sys.exit(EXIT_ERROR)
    except OSError as exc:
        from nnfc.outputs import os_error_text
        click.echo(f"nnfc: error: {os_error_text(exc)}", err=True)
        sys.exit(EXIT_ERROR)
    except SystemExit:
        raise
    except Exception as exc:
        if not getattr(exc, "nnfc_user_error", False):  # e.g. the passes' PruneError
            raise
        click.echo(f"nnfc: error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
