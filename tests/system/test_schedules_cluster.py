"""Exactly one task per tick across replicas, with real processes: three ``tierq serve``
replicas on shared PostgreSQL and Redis, 50 schedules every second and 20 of
``*/2 * * * * *`` (seconds first), the leader SIGKILLed twice within a minute. For every
schedule: one task per tick of the window (none doubled, none missing: catch-up ``all``),
ticks fired within 10 s even across a leader's death, and ``/runs`` agrees with the tasks."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.system.cluster import (
    POSTGRES_URL,
    REDIS_URL,
    Replica,
    delete_prefix,
    drop_schema,
    unique_name,
)

pytestmark = [pytest.mark.slow, pytest.mark.distributed, pytest.mark.timeout(300)]

FIXED, CRON = 50, 20
TICKS = """
    SELECT schedule_id, extract(epoch FROM scheduled_for)::float8 AS tick,
           extract(epoch FROM created_at)::float8 AS created
    FROM tasks WHERE schedule_id IS NOT NULL
"""


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[list[Replica]]:
    schema, prefix = unique_name("schema"), unique_name("prefix")
    started = [
        Replica(f"sched-{i}", POSTGRES_URL, schema, REDIS_URL, prefix, tmp_path) for i in range(3)
    ]
    try:
        yield started
    finally:
        for replica in started:
            replica.kill()
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await drop_schema(POSTGRES_URL, schema)
        with contextlib.suppress(OSError, ConnectionError):
            await delete_prefix(REDIS_URL, prefix)


async def leader_of(session: aiohttp.ClientSession, alive: list[Replica]) -> Replica | None:
    for replica in alive:
        with contextlib.suppress(aiohttp.ClientError, AssertionError, TimeoutError):
            if await replica.metric(session, "tierq_schedule_leader") == 1:
                return replica
    return None


async def wait_leader(session: aiohttp.ClientSession, alive: list[Replica]) -> Replica:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        leader = await leader_of(session, alive)
        if leader is not None:
            return leader
        await asyncio.sleep(0.2)
    pytest.fail("no replica leads the scheduler")


async def test_one_task_per_tick_while_the_leader_is_killed_twice(
    replicas: list[Replica], tmp_path: Path
) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for replica in replicas:
            replica.env.update(TIERQ_SCHEDULE_LEADER_TTL_S="5", TIERQ_LOG_LEVEL="INFO")
            replica.start()
        for replica in replicas:
            await replica.wait_ready(session)
        entry = replicas[0]
        ids: dict[str, str] = {}  # schedule id -> kind
        start_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))
        for n in range(FIXED + CRON):
            body: dict[str, Any] = {
                "name": f"s{n}",
                "catchup": "all",
                "task": {"type": "noop", "queue": f"q{n % 5}"},
            }
            if n < FIXED:
                body.update(every_seconds=1, start_at=start_at)
            else:
                body["cron"] = "*/2 * * * * *"
            async with session.post(entry.base + "/api/v1/schedules", json=body) as resp:
                created = await resp.json()
                assert resp.status == 201, created
                ids[created["id"]] = "fixed" if n < FIXED else "cron"
        created_at = time.time()
        alive = list(replicas)
        kills: list[float] = []
        for _ in range(2):
            await asyncio.sleep(18)
            leader = await wait_leader(session, alive)
            leader.signal(signal.SIGKILL)
            kills.append(time.time())
            alive.remove(leader)
        await asyncio.sleep(20)
        ended = time.time()
        survivor = await wait_leader(session, alive)

        conn = await asyncpg.connect(
            POSTGRES_URL, server_settings={"search_path": replicas[0].env["TIERQ_DATABASE_SCHEMA"]}
        )
        try:
            rows = await conn.fetch(TICKS)
        finally:
            await conn.close()
        by_schedule: dict[str, list[float]] = {}
        lags: list[float] = []
        for row in rows:
            by_schedule.setdefault(row["schedule_id"], []).append(row["tick"])
            lags.append(row["created"] - row["tick"])
        assert set(by_schedule) == set(ids)
        # The window: from a few seconds after creation to a few seconds before the end, so
        # every tick in it was due while the test watched.
        low, high = created_at + 5, ended - 3
        for schedule_id, kind in ids.items():
            ticks = by_schedule[schedule_id]
            doubled = [t for t, n in Counter(ticks).items() if n > 1]
            assert not doubled, (schedule_id, doubled)
            step = 1 if kind == "fixed" else 2
            seen = sorted(t for t in ticks if low <= t <= high)
            assert seen, schedule_id
            expected = [seen[0] + step * k for k in range(int((seen[-1] - seen[0]) / step) + 1)]
            assert seen == expected, (schedule_id, sorted(set(expected) - set(seen)))
            assert seen[0] <= low + step and seen[-1] >= high - step
        # A leader's death costs at most the lease (5 s) and a renewal: ticks fire within 10 s.
        assert max(lags) <= 10.0, max(lags)
        assert sorted(lags)[len(lags) // 2] <= 0.5
        # The history says the same as the tasks (up to the snapshot: the schedules go on).
        for schedule_id in list(ids)[::7]:
            cut = max(by_schedule[schedule_id])
            history = await survivor.get_json(
                session, f"/api/v1/schedules/{schedule_id}/runs?limit=1000"
            )
            fired = sorted(
                datetime.fromisoformat(r["tick"]).timestamp()
                for r in history["items"]
                if not r["skipped"] and datetime.fromisoformat(r["tick"]).timestamp() <= cut
            )
            assert not [r for r in history["items"] if r["skipped"]]
            assert fired == sorted(by_schedule[schedule_id])
        assert len(kills) == 2
