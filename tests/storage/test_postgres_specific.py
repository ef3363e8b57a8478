"""PostgreSQL record store behaviour that needs the server itself: several stores (replicas)
sharing one schema, the advisory-locked migrations, the trigger-maintained counters, and
connection failures surfacing as StoreUnavailable."""

from __future__ import annotations

import asyncio
import random
import socket
import uuid
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

from tests.helpers import POSTGRES_URL
from tests.helpers import record_task as make_task
from tierq.model import Outcome, Task, TaskState, Transition
from tierq.storage.base import StoreUnavailable
from tierq.storage.postgres import queries
from tierq.storage.postgres.store import PostgresRecordStore

pytestmark = pytest.mark.distributed

NOW = 1_800_000_000.0


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """A fresh, not yet created schema name; dropped afterwards."""
    name = f"tierq_pgspec_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def two_stores(schema: str) -> AsyncIterator[tuple[PostgresRecordStore, PostgresRecordStore]]:
    a = PostgresRecordStore(POSTGRES_URL, schema=schema, min_size=1, max_size=4)
    b = PostgresRecordStore(POSTGRES_URL, schema=schema, min_size=1, max_size=4)
    await asyncio.gather(a.open(), b.open())
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def actual_counts(schema: str) -> dict[TaskState, int]:
    conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
    try:
        rows = await conn.fetch("SELECT state, count(*) FROM tasks GROUP BY state")
    finally:
        await conn.close()
    counts = {state: 0 for state in TaskState}
    counts.update({TaskState(r[0]): r[1] for r in rows})
    return counts


async def test_concurrent_claims_never_lease_a_task_twice(
    two_stores: tuple[PostgresRecordStore, PostgresRecordStore],
) -> None:
    a, b = two_stores
    tasks = [make_task(priority=random.randint(0, 10)) for _ in range(600)]
    await a.task_insert_many(tasks)

    async def drain(store: PostgresRecordStore, owner: str) -> list[Task]:
        got: list[Task] = []
        while True:
            batch = await store.task_claim(owner, 17, NOW)
            if not batch:
                return got
            got.extend(batch)
            await asyncio.sleep(0)

    claimed = await asyncio.gather(
        drain(a, "replica-a"), drain(b, "replica-b"), drain(a, "replica-a2"), drain(b, "replica-b2")
    )
    ids = [t.id for batch in claimed for t in batch]
    assert len(ids) == len(set(ids)), "a task was leased twice"
    assert set(ids) == {t.id for t in tasks}
    assert all(len(batch) > 0 for batch in claimed[:2]), "both replicas should get work"
    stored = {t.id: t.lease_owner for t in await a.task_get_many([t.id for t in tasks])}
    for owner, batch in zip(["replica-a", "replica-b", "replica-a2", "replica-b2"], claimed):
        assert all(stored[t.id] == owner and t.lease_owner == owner for t in batch)


async def test_migrations_applied_once_when_stores_open_together(schema: str) -> None:
    stores = [PostgresRecordStore(POSTGRES_URL, schema=schema, min_size=1) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        finally:
            await conn.close()
        assert sorted(versions) == [m.version for m in queries.MIGRATIONS]
        assert await stores[0].migrate() == []
        assert (await stores[1].task_counts())[TaskState.QUEUED] == 0
    finally:
        for s in stores:
            await s.close()


async def test_counters_match_table_under_concurrent_transition_batches(
    schema: str, two_stores: tuple[PostgresRecordStore, PostgresRecordStore]
) -> None:
    a, b = two_stores
    rng = random.Random(7)
    tasks = [make_task() for _ in range(400)]
    await a.task_insert_many(tasks)
    targets = [
        TaskState.RUNNING,
        TaskState.SCHEDULED,
        TaskState.QUEUED,
        TaskState.SUCCEEDED,
        TaskState.FAILED,
        TaskState.CANCELLED,
    ]

    def random_batch() -> list[Transition]:
        # Overlapping tasks, repeats within a batch, stale attempts: all must keep counts exact.
        return [
            Transition(
                t.id,
                rng.randint(0, 3),
                rng.choice(targets),
                NOW + 1,
                outcome=Outcome.FAILED if rng.random() < 0.3 else None,
            )
            for t in rng.choices(tasks, k=150)
        ]

    async def hammer(store: PostgresRecordStore) -> int:
        refused = 0
        for _ in range(12):
            refused += len(await store.task_transition_many(random_batch()))
        return refused

    refused = await asyncio.gather(hammer(a), hammer(b), hammer(a), hammer(b))
    assert sum(refused) > 0, "the random batches should include refused transitions"
    expected = await actual_counts(schema)
    assert sum(expected.values()) == len(tasks)
    assert await a.task_counts() == expected
    assert await b.task_counts() == expected


async def test_repeated_task_in_one_batch_applies_in_order(
    two_stores: tuple[PostgresRecordStore, PostgresRecordStore],
) -> None:
    a, _ = two_stores
    task = make_task()
    await a.task_insert_many([task])
    refused = await a.task_transition_many(
        [
            Transition(
                task.id,
                1,
                TaskState.RUNNING,
                NOW + 1,
                started_at=NOW + 1,
                lease_owner="w",
                worker="w-1",
            ),
            Transition(
                task.id,
                1,
                TaskState.SUCCEEDED,
                NOW + 2,
                finished_at=NOW + 2,
                result=b'{"ok": true}',
                outcome=Outcome.SUCCEEDED,
            ),
            Transition(task.id, 1, TaskState.RUNNING, NOW + 3),  # after terminal: refused
        ]
    )
    assert refused == [task.id]
    stored = await a.task_get(task.id)
    assert stored is not None
    assert (stored.state, stored.started_at, stored.finished_at) == (
        TaskState.SUCCEEDED,
        NOW + 1,
        NOW + 2,
    )
    assert stored.lease_owner is None
    [execution] = await a.execution_list(task.id)
    assert (execution.started_at, execution.finished_at, execution.outcome, execution.worker) == (
        NOW + 1,
        NOW + 2,
        Outcome.SUCCEEDED,
        "w-1",
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_open_on_closed_port_raises_store_unavailable() -> None:
    store = PostgresRecordStore(f"postgresql://postgres@127.0.0.1:{closed_port()}/test")
    with pytest.raises(StoreUnavailable):
        await store.open()
    with pytest.raises(StoreUnavailable):
        await store.ping()


async def test_payload_bytes_survive_unnormalised(
    two_stores: tuple[PostgresRecordStore, PostgresRecordStore],
) -> None:
    a, b = two_stores
    # jsonb would hand this back as {"b": 1, "a": [1, 2]}; the payload column must not.
    task = make_task(payload=b'{"b":1,  "a":[1,2]}', result=b'{"z":1,"y":2}')
    await a.task_insert_many([task])
    got = await b.task_get(task.id)
    assert got is not None
    assert got.payload == task.payload
    assert got.result is not None and orjson.loads(got.result) == {"z": 1, "y": 2}
