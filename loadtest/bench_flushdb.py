"""Tasks run twice when the dispatch tier loses its data: FLUSHDB while one replica drains.

    cd loadtest && ../.venv/bin/python bench_flushdb.py --tasks 20000 --sleep-ms 20

One replica (distributed: PostgreSQL + Redis, in this process, a fresh schema) with
``--workers`` workers drains ``--tasks`` tasks that each sleep ``--sleep-ms``; when a quarter
have run, FLUSHDB empties the Redis database (``--redis-url``: use a database of its own,
15 by default). Printed: runs in all, tasks run more than once, how long the drain took. A
replica that is still alive knows what it holds and what it has finished but not flushed;
nothing it held should run again (engine/repair.py, reclaim).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import time
import uuid
from typing import Any

import asyncpg
from redis import asyncio as aioredis

from tierq.api.app import build_engine
from tierq.config import from_mapping
from tierq.engine.handlers import close_registry
from tierq.engine.handlers.base import Handler, TaskContext
from tierq.engine.intake import TaskIn, build_tasks
from tierq.metrics import Metrics


async def main(args: argparse.Namespace) -> None:
    schema = f"bench_flushdb_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(args.postgres_url)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    redis = aioredis.from_url(args.redis_url)
    await redis.flushdb()
    settings = from_mapping(
        {
            "database_url": args.postgres_url,
            "database_schema": schema,
            "redis_url": args.redis_url,
            "workers": args.workers,
            "node_id": "bench-a",
        }
    )
    engine = build_engine(settings, Metrics())
    runs: collections.Counter[str] = collections.Counter()

    async def counted(ctx: TaskContext) -> Any:
        await asyncio.sleep(args.sleep_ms / 1000)
        runs[ctx.task_id] += 1
        return None

    engine.registry.add(Handler(name="counted", run=counted))
    await engine.start()
    try:
        started = time.perf_counter()
        for i in range(0, args.tasks, 1000):
            specs = [TaskIn(type="counted") for _ in range(min(1000, args.tasks - i))]
            tasks = build_tasks(specs, settings, engine.registry, engine.clock())
            await engine.submit_many(tasks)
        while len(runs) < args.tasks // 4:
            await asyncio.sleep(0.01)
        await redis.flushdb()
        flushed_at = len(runs)
        while True:
            done = await conn.fetchval(
                f"SELECT count(*) FROM \"{schema}\".tasks WHERE state = 'succeeded'"
            )
            if done >= args.tasks:
                break
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        twice = sum(1 for n in runs.values() if n > 1)
        print(
            f"tasks {args.tasks}, FLUSHDB after {flushed_at} had run: runs {sum(runs.values())}, "
            f"tasks run more than once {twice}, drain {elapsed:.1f} s"
        )
    finally:
        await engine.stop()
        await close_registry(engine.registry)
        await redis.flushdb()
        await redis.aclose()
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--sleep-ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    asyncio.run(main(parser.parse_args()))
