"""Run the ``nnfc`` console entry point in-process from tests."""

from nnfc.cli import main


def run_cli(args, capsys):
    """Run `nnfc ARGS` in-process; return (exit code, stdout, stderr)."""
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err
