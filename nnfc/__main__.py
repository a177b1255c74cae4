"""``python -m nnfc``: the ``nnfc`` command (same verbs, options and exit codes)."""

from nnfc.cli import main

if __name__ == "__main__":
    main()
