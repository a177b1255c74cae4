"""Options shared by the verbs, so one concept has one name everywhere (README, "Using it"):
``--target`` with its choices, ``-o/--output``, ``--lat``/``--mem`` budgets. Old spellings stay
as hidden aliases (accepted, not shown in ``--help``)."""

from __future__ import annotations

import click


class AliasedOption(click.Option):
    """A click option whose ``hidden_aliases`` work but are not shown in ``--help``."""

    def __init__(self, *args, hidden_aliases: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.hidden_aliases = tuple(hidden_aliases)

    def get_help_record(self, ctx: click.Context):
        shown = self.opts
        self.opts = [o for o in shown if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def target_choice() -> click.Choice:
    """The registered targets as a click choice (``--target {desktop,android,jetson}``)."""
    from nnfc.targets import TARGETS
    return click.Choice(list(TARGETS))


def target_option(default: str | None = "desktop", help: str = "Deployment target.", **kw):
    return click.option("--target", default=default, type=target_choice(),
                        show_default=default is not None, help=help, **kw)
