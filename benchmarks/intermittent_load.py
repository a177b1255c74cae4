"""An intermittent CPU-bound load: busy worker processes that switch on for ``--on`` seconds and
off for ``--off`` seconds, for at most ``--max-seconds``, optionally around a command (the load
stops when the command ends, and the command's exit status is returned).

    .venv/bin/python benchmarks/intermittent_load.py --on 3 --off 3 --max-seconds 1800 -- \
        .venv/bin/python benchmarks/predictor_accuracy.py --bundle B --out profiles/loaded

Each switch is logged (time, state, 1-minute load average) to ``--log`` when given.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time


def _burn(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        for _ in range(100_000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--on", type=float, default=3.0, help="seconds on per cycle")
    ap.add_argument("--off", type=float, default=3.0, help="seconds off per cycle")
    ap.add_argument("--workers", type=int, default=1, help="busy processes while on")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="stop after this long")
    ap.add_argument("--log", default=None, help="append each switch to this file")
    args = ap.parse_args(argv)
    end = time.time() + args.max_seconds
    child = subprocess.Popen(command) if command else None
    log = open(args.log, "a", encoding="utf-8") if args.log else None
    cycles = 0
    try:
        while time.time() < end and (child is None or child.poll() is None):
            stop_at = min(end, time.time() + args.on)
            if log:
                log.write(f"{time.time():.1f} on  load={os.getloadavg()[0]:.2f}\n")
                log.flush()
            procs = [mp.Process(target=_burn, args=(stop_at,), daemon=True)
                     for _ in range(args.workers)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            if log:
                log.write(f"{time.time():.1f} off load={os.getloadavg()[0]:.2f}\n")
                log.flush()
            cycles += 1
            off_end = min(end, time.time() + args.off)
            while time.time() < off_end and (child is None or child.poll() is None):
                time.sleep(0.1)
    finally:
        if log:
            log.close()
    if child is None:
        print(f"{cycles} on/off cycles")
        return 0
    if child.poll() is None:
        print(f"load generator: --max-seconds {args.max_seconds:g} reached; the command "
              "goes on without the load", file=sys.stderr)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
