"""The engine alone, in process: submit N noop tasks in batches of 1,000 straight to
``Engine.submit`` (no HTTP, no load generator competing for the CPU) on an embedded SQLite
store, wait until the record tier shows all of them succeeded, print the rate and CPU time.

    PYTHONPATH=<tree> .venv/bin/python loadtest/engine_inprocess.py [N]

It sets the interpreter up as ``tierq serve`` does (GC thresholds and freeze, switch
interval), so the figure is the engine's, with less noise than ``bench_e2e.py``. With
``PYTHONPATH`` pointing at another checkout it measures that one: code from before the engine
built tasks itself (``tierq.api.schemas.to_tasks``) is driven the way its API drove it.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from tierq.api.app import build_engine
from tierq.config import from_mapping
from tierq.metrics import Metrics
from tierq.model import TaskState

BATCH = 1000

try:
    from tierq.engine.intake import TaskIn

    def submitter(engine: Any) -> Callable[[list[Any]], Awaitable[Any]]:
        return lambda specs: engine.submit(specs, batch=True)

except ImportError:  # a checkout from before the engine built tasks itself
    from tierq.api.schemas import TaskIn, to_tasks  # type: ignore[attr-defined,no-redef]

    def submitter(engine: Any) -> Callable[[list[Any]], Awaitable[Any]]:
        return lambda specs: engine.submit_many(
            to_tasks(specs, engine.settings, engine.registry, engine.clock())
        )


async def main(n: int) -> None:
    sys.setswitchinterval(0.0005)
    gc.freeze()
    gc.set_threshold(20_000, 1_000, 10)
    workdir = tempfile.mkdtemp(prefix="tierq-inprocess-")
    engine = build_engine(
        from_mapping({"database_url": f"sqlite:///{workdir}/bench.db"}), Metrics()
    )
    await engine.start()
    submit = submitter(engine)
    started, cpu_started = time.perf_counter(), time.process_time()

    async def stream(first: int) -> None:
        for _ in range(first, n // BATCH, 2):
            await submit([TaskIn(type="noop") for _ in range(BATCH)])

    await asyncio.gather(stream(0), stream(1))
    submitted = time.perf_counter()
    while (await engine.store.task_counts())[TaskState.SUCCEEDED] < n:
        await asyncio.sleep(0.01)
    done = time.perf_counter()
    print(
        f"submit {submitted - started:.2f}s total {done - started:.2f}s "
        f"rate {n / (done - started):.0f}/s cpu {time.process_time() - cpu_started:.2f}s "
        f"flushes {engine.flusher.flushes} commits {engine.committer.commits} "
        f"claimed {engine.pager.claimed}"
    )
    await engine.stop()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000))
