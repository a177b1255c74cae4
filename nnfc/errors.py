"""The one error type the CLI turns into a one-line message and a non-zero exit."""


class NnfcError(Exception):
    """A user-facing error: bad input, infeasible request, broken bundle. Message is one line."""


#: exit codes of the ``nnfc`` command (README, "Exit codes")
EXIT_OK = 0
EXIT_BENCH_OVER_BUDGET = 1   # nnfc bench: the artifact exceeds a budget
EXIT_ERROR = 2               # bad input or any other error: one ``nnfc: error:`` line per problem
EXIT_OVER_BUDGET = 3         # nnfc compile: output written, but the measured artifact misses its budget
EXIT_INTERRUPTED = 130       # Ctrl-C
