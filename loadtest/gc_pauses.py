"""Run ``tierq serve`` with every garbage-collector pass over 5 ms logged to stderr
(generation, duration), to see whether the collector is what stalls the loop.

    .venv/bin/python loadtest/gc_pauses.py serve --port 18091 2> gc.log
    GC_YOUNG=700 GC_MIDDLE=10 .venv/bin/python loadtest/gc_pauses.py serve ...   # Python's

``GC_YOUNG`` and ``GC_MIDDLE`` replace ``tierq.cli.GC_YOUNG_THRESHOLD`` and
``GC_MIDDLE_THRESHOLD``, the thresholds serve sets, for comparisons. On exit (SIGTERM) it
prints what each generation's passes collected (``gc.get_stats()``): how much cyclic garbage
the run made.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable

import tierq.cli


def log_passes(min_ms: float, write: Callable[[str], object]) -> Callable[..., None]:
    """A ``gc.callbacks`` entry that writes one line per collector pass over ``min_ms``."""
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took_ms = (time.perf_counter() - started[0]) * 1000
        if took_ms > min_ms:
            write(f"GC gen{info['generation']} {took_ms:.1f} ms at {time.time():.3f}\n")

    return on_gc


def _to_stderr(line: str) -> None:
    sys.stderr.write(line)
    sys.stderr.flush()


def thresholds_from_env() -> None:
    """GC_YOUNG and GC_MIDDLE, when set, replace the thresholds serve will set."""
    if "GC_YOUNG" in os.environ:
        tierq.cli.GC_YOUNG_THRESHOLD = int(os.environ["GC_YOUNG"])
    if "GC_MIDDLE" in os.environ:
        tierq.cli.GC_MIDDLE_THRESHOLD = int(os.environ["GC_MIDDLE"])


def main() -> int:
    gc.callbacks.append(log_passes(5, _to_stderr))
    thresholds_from_env()
    sys.argv = ["tierq", *sys.argv[1:]]
    try:
        return int(tierq.cli.main() or 0)
    finally:
        for generation, stats in enumerate(gc.get_stats()):
            print(f"GC gen{generation} totals: {stats}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
