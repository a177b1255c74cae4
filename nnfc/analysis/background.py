"""A background tenant for ``nnfc analyze environments``: runs one artifact on a target in a
loop until its stdin closes (``python -m nnfc.analysis.background TARGET ARTIFACT``). Prints
``ready`` once the first inference has run."""

from __future__ import annotations

import sys
import threading


def main(argv: list[str]) -> int:
    from nnfc.compiler.measure import runner
    from nnfc.compiler.pipeline import make_target

    target_name, artifact = argv[0], argv[1]
    run = runner(make_target(target_name, {"threads": 1}), artifact)
    run()
    print("ready", flush=True)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.is_set():
        run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
