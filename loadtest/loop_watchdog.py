"""Run ``tierq serve`` with a watchdog on its event loop: whenever a 5 ms beat comes more
than ``STALL_MS`` (default 25) late, a thread samples the loop thread's stack every 2 ms
until it beats again, and the stall is logged with the stacks it was in; collector passes
over 3 ms are logged too, so a stall can be matched with a GC pass.

    STALL_LOG=/tmp/stalls.log .venv/bin/python loadtest/loop_watchdog.py serve --port 18091

py-spy cannot tell one long loop iteration from many short ones (a select with a zero
timeout does not show as idle), nor show a collector pass; this can. It found the middle
generation's passes (35-100 ms) behind every stall over 30 ms in a distributed drain
(BENCHMARKS.md, fifth session). ``GC_YOUNG`` and ``GC_MIDDLE`` replace the thresholds serve
sets, as in gc_pauses.py.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Coroutine
from typing import Any

import uvloop
from gc_pauses import log_passes, thresholds_from_env

import tierq.cli

BEAT_S = 0.005
SAMPLE_S = 0.002
STALL_S = float(os.environ.get("STALL_MS", "25")) / 1000
log = open(os.environ.get("STALL_LOG", "stalls.log"), "w")  # noqa: SIM115 - process lifetime
last_beat = [time.perf_counter()]
original_run = uvloop.run


def write_log(line: str) -> None:
    log.write(line)
    log.flush()


def watch(loop_thread: int) -> None:
    while True:
        time.sleep(SAMPLE_S)
        late = time.perf_counter() - last_beat[0] - BEAT_S  # past when the beat was due
        if late <= STALL_S:
            continue
        stacks: Counter[str] = Counter()
        beat_seen = last_beat[0]
        while last_beat[0] == beat_seen:  # until the loop beats again
            frame = sys._current_frames().get(loop_thread)
            if frame is not None:
                inner = reversed(traceback.extract_stack(frame)[-6:])
                stacks[" <- ".join(f"{f.name}:{f.lineno}" for f in inner)] += 1
            late = max(late, time.perf_counter() - beat_seen - BEAT_S)
            time.sleep(SAMPLE_S)
        lines = [f"STALL {late * 1000:.0f} ms late at {time.time():.3f}\n"]
        for stack, n in stacks.most_common(6):
            lines.append(f"  {n * SAMPLE_S * 1000:5.0f} ms  {stack}\n")
        write_log("".join(lines))


async def beat() -> None:
    while True:
        last_beat[0] = time.perf_counter()
        await asyncio.sleep(BEAT_S)


def run_with_beat(coro: Coroutine[Any, Any, Any], **kwargs: Any) -> Any:
    async def main() -> Any:
        beating = asyncio.get_running_loop().create_task(beat())
        try:
            return await coro
        finally:
            beating.cancel()

    return original_run(main(), **kwargs)


def main() -> int:
    gc.callbacks.append(log_passes(3, write_log))
    thresholds_from_env()
    threading.Thread(target=watch, args=(threading.get_ident(),), daemon=True).start()
    uvloop.run = run_with_beat  # tierq.cli runs the server with uvloop.run
    sys.argv = ["tierq", *sys.argv[1:]]
    return int(tierq.cli.main() or 0)


if __name__ == "__main__":
    sys.exit(main())
