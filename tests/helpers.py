"""Helpers shared by the engine-level test suites (embedded and distributed)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import orjson
import pytest

from tierq.engine.engine import Engine
from tierq.engine.intake import TaskIn, build_task
from tierq.ids import new_id
from tierq.model import Task, TaskState
from tierq.storage.postgres.store import PostgresRecordStore

POSTGRES_URL = os.environ.get(
    "TIERQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TIERQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("TIERQ_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


RECORD_NOW = 1_700_000_000.0
T = TypeVar("T")


def record_task(now: float = RECORD_NOW, **overrides: Any) -> Task:
    """A queued noop task as a store sees it, built directly (no engine), for store-level
    tests, due and created at ``now``; keyword arguments override any field."""
    fields: dict[str, Any] = dict(
        id=new_id(now),
        type="noop",
        queue="default",
        priority=5,
        payload=b"{}",
        state=TaskState.QUEUED,
        run_at=now,
        created_at=now,
        updated_at=now,
        max_retries=3,
        timeout_s=30.0,
    )
    fields.update(overrides)
    return Task(**fields)


def make_task(engine: Engine, type: str = "noop", payload: Any = None, **fields: Any) -> Task:
    """A task built the way the API builds one (validation, id, state, times)."""
    raw = msgspec.Raw(orjson.dumps({} if payload is None else payload))
    spec = TaskIn(type=type, payload=raw, **fields)
    return build_task(spec, "$", engine.settings, engine.registry, engine.clock())


async def submit(engine: Engine, *tasks: Task) -> list[str]:
    results = await engine.submit_many(list(tasks))
    return [r.task.id for r in results]


async def poll_until(
    fetch: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout: float = 10.0,
    every: float = 0.02,
    what: str = "condition",
) -> T:
    """Fetch until ``done(value)``; return that value, or fail showing the last one fetched."""
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not met within {timeout}s; last: {value!r}")
        await asyncio.sleep(every)


async def wait_for(
    condition: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0, every: float = 0.01
) -> None:
    """Poll ``condition`` until true; fail the test if it is still false after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(every)


async def postgres_store_in_fresh_schema() -> AsyncIterator[PostgresRecordStore]:
    """An open PostgreSQL record store in a schema of its own, dropped afterwards."""
    import asyncpg

    schema = f"tierq_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        store = PostgresRecordStore(POSTGRES_URL, schema=schema)
        await store.open()
        try:
            yield store
        finally:
            await store.close()
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


async def purge_redis_prefix(prefix: str) -> None:
    """Delete every key under a dispatch tier's key prefix, on a connection of the test's own."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match="{" + prefix + "*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
    finally:
        await client.aclose()


def engine_with_event_log(settings: Any, event_log: Any) -> Engine:
    """An engine built as the server builds one (``build_engine``), but writing its events to
    ``event_log`` (a log on a server a test controls). Close its registry after stopping it."""
    from tierq.api.app import build_engine
    from tierq.metrics import Metrics

    metrics = Metrics()
    base = build_engine(settings, metrics)
    return Engine(
        settings,
        base.store,
        base.dispatch,
        base.registry,
        metrics,
        "n1",
        event_log=event_log,
        queue_store=base.flow.queue_store,
    )


def id_time(task_id: str) -> float:
    """When an id was minted (its 48-bit millisecond prefix). A process never mints ids back
    in time, so after a test that minted ids ahead of the clock, later ids carry that time."""
    return int(task_id.replace("-", "")[:12], 16) / 1000
