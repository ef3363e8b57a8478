"""Micro-benchmark of the PostgreSQL record store's batch writes.

Times ``task_insert_many`` and ``task_transition_many`` (running, then succeeded with an
execution row) for BATCHES batches of SIZE tasks in a scratch schema that is dropped after.

    .venv/bin/python loadtest/bench_postgres_store.py [--batches 50] [--size 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import record_task
from tierq.model import Outcome, Task, TaskState, Transition
from tierq.storage.postgres.store import PostgresRecordStore

DSN = os.environ.get("TIERQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PAYLOAD = b'{"url": "https://example.com/hook", "attempts": 3, "tags": ["a", "b"]}'


def make_batch(size: int, now: float) -> list[Task]:
    return [record_task(now, payload=PAYLOAD) for _ in range(size)]


def report(label: str, seconds: list[float], size: int) -> None:
    total = sum(seconds)
    per_task = total / (len(seconds) * size) * 1e6
    best = min(seconds) / size * 1e6
    print(f"{label:<34} {per_task:7.2f} us/task (best batch {best:6.2f})  {1e6 / per_task:9.0f}/s")


async def main(batches: int, size: int) -> None:
    schema = f"tierq_bench_{uuid.uuid4().hex[:8]}"
    store = PostgresRecordStore(DSN, schema=schema)
    await store.open()
    try:
        now = time.time()
        inserted: list[list[Task]] = []
        t_insert: list[float] = []
        for _ in range(batches):
            batch = make_batch(size, now)
            start = time.perf_counter()
            await store.task_insert_many(batch)
            t_insert.append(time.perf_counter() - start)
            inserted.append(batch)
        t_run: list[float] = []
        t_done: list[float] = []
        for batch in inserted:
            running = [
                Transition(
                    t.id,
                    1,
                    TaskState.RUNNING,
                    now,
                    started_at=now,
                    lease_owner="bench",
                    worker="bench-1",
                )
                for t in batch
            ]
            start = time.perf_counter()
            await store.task_transition_many(running)
            t_run.append(time.perf_counter() - start)
            done = [
                Transition(
                    t.id,
                    1,
                    TaskState.SUCCEEDED,
                    now,
                    finished_at=now,
                    result=b'{"ok": true}',
                    outcome=Outcome.SUCCEEDED,
                )
                for t in batch
            ]
            start = time.perf_counter()
            await store.task_transition_many(done)
            t_done.append(time.perf_counter() - start)
        counts = await store.task_counts()
        assert counts[TaskState.SUCCEEDED] == batches * size, counts
        print(f"{batches} batches of {size}")
        report("task_insert_many", t_insert, size)
        report("task_transition_many (running)", t_run, size)
        report("task_transition_many (succeeded)", t_done, size)
    finally:
        await store.close()
        conn = await asyncpg.connect(DSN)
        try:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--size", type=int, default=1000)
    ns = parser.parse_args()
    asyncio.run(main(ns.batches, ns.size))
