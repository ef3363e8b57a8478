"""End-to-end noop throughput across restarts of one embedded server on one database: three
rounds, each a fresh process (SIGTERM between them) running two e2e batches of 100,000
tasks. Before the SQLite store stopped keeping planner statistics, every round after the
first fell to a fifth of the first (BENCHMARKS.md, "Schedules").

    .venv/bin/python loadtest/restart_e2e.py
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time

import aiohttp
import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_schedules import spawn, stop, wait_ready


async def succeeded(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(f"{url}/api/v1/tasks/statistics") as resp:
        return int((await resp.json())["counts"]["succeeded"])


async def e2e(session: aiohttp.ClientSession, url: str, n: int) -> float:
    """Tasks per second: n noop tasks in batches of 1,000 (4 in flight) until all succeeded."""
    base = await succeeded(session, url)
    body = orjson.dumps([{"type": "noop"}] * 1000)
    left = n // 1000

    async def submitter() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with session.post(
                f"{url}/api/v1/tasks/batch", data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                assert resp.status == 201, await resp.text()

    start = time.monotonic()
    await asyncio.gather(*(submitter() for _ in range(4)))
    while await succeeded(session, url) - base < n:
        await asyncio.sleep(0.2)
    return n / (time.monotonic() - start)


async def main() -> None:
    workdir = tempfile.mkdtemp(prefix="tierq-restart-")
    db = f"{workdir}/bench.db"
    try:
        for round_ in range(3):
            proc, url = spawn(db, workdir)
            try:
                async with aiohttp.ClientSession() as session:
                    await wait_ready(session, url)
                    rates = [round(await e2e(session, url, 100_000)) for _ in range(2)]
                    print(f"round {round_}: {rates[0]} and {rates[1]} tasks/s", flush=True)
            finally:
                stop(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
