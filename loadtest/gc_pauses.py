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

import tierq.cli

_started: list[float] = []


def _log(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _started[:] = [time.perf_counter()]
        return
    took_ms = (time.perf_counter() - _started[0]) * 1000 if _started else 0.0
    if took_ms > 5:
        print(f"GC gen{info['generation']} {took_ms:.1f} ms", file=sys.stderr, flush=True)


def thresholds_from_env() -> None:
    """GC_YOUNG and GC_MIDDLE, when set, replace the thresholds serve will set."""
    if "GC_YOUNG" in os.environ:
        tierq.cli.GC_YOUNG_THRESHOLD = int(os.environ["GC_YOUNG"])
    if "GC_MIDDLE" in os.environ:
        tierq.cli.GC_MIDDLE_THRESHOLD = int(os.environ["GC_MIDDLE"])


def main() -> int:
    gc.callbacks.append(_log)
    thresholds_from_env()
    sys.argv = ["tierq", *sys.argv[1:]]
    try:
        return int(tierq.cli.main() or 0)
    finally:
        for generation, stats in enumerate(gc.get_stats()):
            print(f"GC gen{generation} totals: {stats}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
