"""Run ``tierq serve`` with every garbage-collector pass over 5 ms logged to stderr
(generation, duration), to see whether the collector is what stalls the loop.

    .venv/bin/python loadtest/gc_pauses.py serve --port 18091 2> gc.log
    GC_YOUNG=700 .venv/bin/python loadtest/gc_pauses.py serve ...   # Python's default

``GC_YOUNG`` replaces ``tierq.cli.GC_YOUNG_THRESHOLD``, the young-generation threshold serve
sets, for comparisons.
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


def main() -> int:
    gc.callbacks.append(_log)
    if "GC_YOUNG" in os.environ:
        tierq.cli.GC_YOUNG_THRESHOLD = int(os.environ["GC_YOUNG"])
    sys.argv = ["tierq", *sys.argv[1:]]
    return int(tierq.cli.main() or 0)


if __name__ == "__main__":
    sys.exit(main())
