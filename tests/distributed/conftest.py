"""Several real engines in one process, sharing one PostgreSQL schema and one Redis key prefix
(distributed mode), both unique per test and removed afterwards.

``cluster.engine("a", **overrides)`` builds and starts a replica; every replica is stopped at
teardown even when the test froze some of its services. ``wait_for`` polls a condition within a
bounded time: no test asserts on a bare sleep.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from redis import asyncio as aioredis

# Re-exported: the tests import them from here.
from tests.helpers import POSTGRES_URL, REDIS_URL, submit, wait_for  # noqa: F401
from tests.helpers import make_task as _make_task
from tierq.api.app import build_engine
from tierq.config import Settings, from_mapping
from tierq.engine.engine import Engine
from tierq.engine.handlers import close_registry
from tierq.metrics import Metrics
from tierq.model import Task

# Fast liveness (a silent replica is dead after 1 s), fast retries and flushes, and no grace
# period, so a stop never waits for long-sleeping dummies.
BASE: dict[str, Any] = {
    "heartbeat_s": 0.2,
    "heartbeat_ttl_s": 1.0,
    "retry_base_ms": 10,
    "retry_max_ms": 20,
    "flush_interval_ms": 5,
    "commit_window_ms": 1,
    "shutdown_grace_s": 0,
    "workers": 4,
}


@dataclass
class Cluster:
    schema: str
    prefix: str
    redis: Any
    engines: list[Engine] = field(default_factory=list)

    def settings(self, node_id: str, **overrides: Any) -> Settings:
        return from_mapping(
            {
                **BASE,
                "database_url": POSTGRES_URL,
                "redis_url": REDIS_URL,
                "redis_prefix": self.prefix,
                "database_schema": self.schema,
                "node_id": node_id,
                **overrides,
            }
        )

    async def engine(self, node_id: str, **overrides: Any) -> Engine:
        engine = build_engine(self.settings(node_id, **overrides), Metrics())
        self.engines.append(engine)
        await engine.start()
        return engine

    async def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """Read the record tier directly (``{s}`` is the test's schema)."""
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            return list(await conn.fetch(query.format(s=f'"{self.schema}"'), *args))
        finally:
            await conn.close()

    async def executions(self) -> dict[str, list[asyncpg.Record]]:
        """Every execution row, by task id, in attempt order."""
        rows = await self.sql(
            "SELECT task_id::text AS task_id, attempt, outcome, worker, started_at, finished_at"
            " FROM {s}.task_executions ORDER BY task_id, attempt"
        )
        out: dict[str, list[asyncpg.Record]] = {}
        for row in rows:
            out.setdefault(row["task_id"], []).append(row)
        return out

    async def redis_keys(self) -> list[bytes]:
        return [k async for k in self.redis.scan_iter(match=f"*{self.prefix}*", count=1000)]

    async def wipe_redis(self) -> int:
        """What a Redis restart without persistence looks like to tierq: every key gone."""
        keys = await self.redis_keys()
        if keys:
            await self.redis.delete(*keys)
        return len(keys)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    token = uuid.uuid4().hex[:12]
    schema = f"tierq_dist_{token}"
    conn = await asyncpg.connect(POSTGRES_URL)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    redis = aioredis.from_url(REDIS_URL)
    c = Cluster(schema=schema, prefix=f"tqd_{token}", redis=redis)
    try:
        yield c
    finally:
        try:
            for engine in reversed(c.engines):
                try:
                    await asyncio.wait_for(engine.stop(), 20)
                finally:
                    await close_registry(engine.registry)
        finally:
            await c.wipe_redis()
            await redis.aclose()
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()


def make_task(engine: Engine, type: str = "dummy", payload: Any = None, **fields: Any) -> Task:
    """Distributed tests default to ``dummy`` tasks (they take a sleep)."""
    return _make_task(engine, type, payload, **fields)


def counter_value(engine: Engine, name: str, **labels: str) -> float:
    """A sample read from the replica's own Prometheus registry (0 when never recorded)."""
    value = engine.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


def freeze(engine: Engine) -> None:
    """Stop everything a frozen process would stop doing, without any graceful step: no
    heartbeat, no flush, no claims, no rescues. Its workers keep running their handlers
    (they are what wakes up later)."""
    for service in (engine.heartbeat, engine.flusher, engine.pager, engine.watcher):
        service.request_stop()
    engine.rescuer.request_stop()
