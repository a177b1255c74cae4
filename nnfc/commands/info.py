"""``nnfc info [BUNDLE]``: what a factory knows and which profiles this machine can use."""

from __future__ import annotations

import click


@click.command("info", epilog="""\b
Examples:
  nnfc info                        # the default factory
  nnfc info factories/numvqa-vit   # a bundle directory
  nnfc info attrod-mobilenet --json""")
@click.argument("bundle", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def info(bundle, as_json):
    """Attributes, seen/unseen tasks, gate layers, full supernet size, profiles (target,
    precision, host, accuracy, full-supernet latency) and training recipe of BUNDLE (a bundle
    directory or a factory name from `nnfc factory list`; default: $NNFC_FACTORY, else the
    default factory)."""
    from nnfc.factory_info import describe, load_factory, to_json

    data = load_factory(bundle).info()
    click.echo(to_json(data) if as_json else describe(data))
