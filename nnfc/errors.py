"""The one error type the CLI turns into a one-line message and a non-zero exit."""


class NnfcError(Exception):
    """A user-facing error: bad input, infeasible request, broken bundle. Message is one line."""
