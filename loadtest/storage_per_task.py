"""The storage a task costs in each record tier: N noop tasks, each finished (one coalesced
start-and-succeed transition, so one execution row), written through the record store as the
engine writes them; then the bytes on disk per task.

    .venv/bin/python loadtest/storage_per_task.py --n 1000000
    .venv/bin/python loadtest/storage_per_task.py --n 1000000 --postgres-url postgresql://...

SQLite: the database file after a checkpoint (the WAL folded in), with and without a VACUUM.
PostgreSQL: pg_total_relation_size (heap, TOAST, indexes) of tasks, task_executions and
task_state_counts after a VACUUM, in a schema of its own (dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import tempfile
import time
import uuid

from tierq.ids import new_id
from tierq.model import Outcome, Task, TaskState, Transition
from tierq.storage.base import RecordStore

BATCH = 1000
PAYLOAD = b'{"n": 1}'


def tasks(n: int, now: float) -> list[Task]:
    return [
        Task(new_id(now), "noop", "default", 0, PAYLOAD, TaskState.QUEUED, now, now, now, 3, 300.0)
        for _ in range(n)
    ]


async def fill(store: RecordStore, n: int) -> float:
    started = time.monotonic()
    now = time.time()
    for done in range(0, n, BATCH):
        batch = tasks(min(BATCH, n - done), now)
        await store.task_insert_many(batch)
        await store.task_transition_many(
            [
                Transition(
                    t.id,
                    1,
                    TaskState.SUCCEEDED,
                    now + 0.002,
                    started_at=now + 0.001,
                    finished_at=now + 0.002,
                    outcome=Outcome.SUCCEEDED,
                    worker="w1",
                    lease_owner=None,
                )
                for t in batch
            ]
        )
    return time.monotonic() - started


async def sqlite_bytes(n: int) -> dict[str, object]:
    from tierq.storage.sqlite.store import SQLiteRecordStore

    folder = tempfile.mkdtemp(prefix="tierq-storage-")
    path = os.path.join(folder, "tq.db")
    store = SQLiteRecordStore(path, synchronous="NORMAL")
    await store.open()
    try:
        seconds = await fill(store, n)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = os.path.getsize(path)
    conn.execute("VACUUM")
    conn.close()
    vacuumed = os.path.getsize(path)
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "tier": "sqlite",
        "n": n,
        "fill_seconds": round(seconds, 1),
        "bytes": size,
        "bytes_per_task": round(size / n),
        "bytes_per_task_vacuumed": round(vacuumed / n),
    }


async def postgres_bytes(n: int, url: str) -> dict[str, object]:
    import asyncpg

    from tierq.storage.postgres.store import PostgresRecordStore

    schema = f"storage_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(url)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        store = PostgresRecordStore(url, schema=schema)
        await store.open()
        try:
            seconds = await fill(store, n)
        finally:
            await store.close()
        sizes = {}
        for table in ("tasks", "task_executions", "task_state_counts", "task_dependencies"):
            await conn.execute(f'VACUUM "{schema}"."{table}"')
            sizes[table] = await conn.fetchval(
                "SELECT pg_total_relation_size($1::regclass)", f'"{schema}"."{table}"'
            )
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
    total = sum(sizes.values())
    return {
        "tier": "postgresql",
        "n": n,
        "fill_seconds": round(seconds, 1),
        "bytes": total,
        "bytes_per_task": round(total / n),
        "by_table": sizes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--postgres-url", help="measure PostgreSQL too")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(sqlite_bytes(args.n))), flush=True)
    if args.postgres_url:
        print(json.dumps(asyncio.run(postgres_bytes(args.n, args.postgres_url))), flush=True)


if __name__ == "__main__":
    main()
