"""The live event stream as a deployment runs it: two ``tierq serve`` replicas on PostgreSQL and
Redis behind nginx (deploy/nginx.conf), fifty SSE clients (some filtered) connected through
nginx while tasks drain. Every client must receive exactly the events of the log that match
its filter, once each, in log order, including a client that is cut off mid-run and resumes
with ``Last-Event-ID``; clients on one replica see the events of tasks run on the other.

The same run at 100,000 tasks is ``loadtest/bench_events.py --streams`` (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.system.cluster import (
    POSTGRES_URL,
    REDIS_URL,
    Nginx,
    Replica,
    delete_prefix,
    drop_schema,
    unique_name,
)

pytestmark = [pytest.mark.slow, pytest.mark.distributed, pytest.mark.timeout(300)]

TASKS = 10_000
RECONNECT_AFTER = 5_000  # frames the cut-off client reads before it drops its connection


class StreamClient:
    """One SSE client: the (cursor, event type) of every frame it received, in order."""

    def __init__(self, base: str, query: dict[str, str], cut_after: int | None = None) -> None:
        self.url = base + "/api/v1/events"
        self.query = query
        self.cut_after = cut_after
        self.received: list[int] = []
        self.connections = 0
        self.live = asyncio.Event()
        self.wanted_last: int | None = None
        self.done = asyncio.Event()

    def _check_done(self) -> None:
        if self.wanted_last is not None and self.received and self.received[-1] >= self.wanted_last:
            self.done.set()

    async def run(self, session: aiohttp.ClientSession) -> None:
        while not self.done.is_set():
            headers = {"Last-Event-ID": str(self.received[-1])} if self.received else {}
            self.connections += 1
            async with session.get(self.url, params=self.query, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                if await self._read(resp):
                    return

    async def _read(self, resp: aiohttp.ClientResponse) -> bool:
        """Read frames until done (True) or until this client cuts its connection (False)."""
        pending = b""
        async for chunk in resp.content.iter_any():
            pending += chunk
            *frames, pending = pending.split(b"\n\n")
            for frame in frames:
                if b"\nid: " not in b"\n" + frame:
                    self.live.set()  # a comment or retry: connected (and listening)
                    continue
                cursor = None
                for line in frame.split(b"\n"):
                    if line.startswith(b"id: "):
                        cursor = int(line[4:])
                assert cursor is not None, frame
                self.received.append(cursor)
                if self.cut_after is not None and len(self.received) >= self.cut_after:
                    self.cut_after = None
                    return False
            self._check_done()
            if self.done.is_set():
                return True
        return False


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[tuple[list[Replica], Nginx]]:
    schema, prefix = unique_name("events"), unique_name("events")
    replicas = [
        Replica(f"r{i}", POSTGRES_URL, schema, REDIS_URL, prefix, tmp_path) for i in range(2)
    ]
    nginx = Nginx(tmp_path, [r.port for r in replicas])
    try:
        async with aiohttp.ClientSession() as session:
            for replica in replicas:
                replica.start()
            for replica in replicas:
                await replica.wait_ready(session)
        nginx.start()
        yield replicas, nginx
    finally:
        nginx.kill()
        for replica in replicas:
            replica.kill()
        await drop_schema(POSTGRES_URL, schema)
        await delete_prefix(REDIS_URL, prefix)


async def read_log(session: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "1000", **({"after": cursor} if cursor else {})}
        async with session.get(
            base + "/api/v1/events", params=params, headers={"Accept": "application/json"}
        ) as resp:
            body = await resp.json()
        if not body["items"]:
            return items
        assert body["reset"] is None
        items += body["items"]
        cursor = body["next_cursor"]


def matches(item: dict[str, Any], query: dict[str, str]) -> bool:
    if "queue" in query and item["queue"] != query["queue"]:
        return False
    return not ("event" in query and item["event"] not in query["event"].split(","))


async def test_fifty_streams_through_nginx_see_every_event_once_in_order(
    deployment: tuple[list[Replica], Nginx],
) -> None:
    replicas, nginx = deployment
    queries = [{}] * 30 + [{"queue": "q1"}] * 10 + [{"event": "succeeded,failed"}] * 10
    clients = [StreamClient(nginx.base, q) for q in queries]
    clients[0].cut_after = RECONNECT_AFTER
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        readers = [asyncio.create_task(c.run(session)) for c in clients]
        try:
            async with asyncio.timeout(20):
                await asyncio.gather(*(c.live.wait() for c in clients))
            # nginx spread the streams: both replicas serve some (least_conn).
            listening = [await r.metric(session, "tierq_event_listeners") for r in replicas]
            assert all(n > 0 for n in listening) and sum(listening) == 50, listening

            started = time.monotonic()
            batch: list[dict[str, Any]] = []
            for i in range(TASKS):
                task: dict[str, Any] = {"type": "noop", "queue": "q1" if i % 2 else "q2"}
                if i % 100 == 0:  # a few dead letters too
                    task = {"type": "dummy", "payload": {"fail_always": True}, "max_retries": 0}
                batch.append(task)
                if len(batch) == 1000:
                    async with session.post(nginx.base + "/api/v1/tasks/batch", json=batch) as r:
                        assert r.status == 201, await r.text()
                    batch = []

            async def drained() -> bool:
                async with session.get(nginx.base + "/api/v1/tasks/statistics") as r:
                    counts = (await r.json())["counts"]
                return bool(counts["succeeded"] + counts["failed"] == TASKS)

            while not await drained():
                assert time.monotonic() - started < 120, "tasks did not drain"
                await asyncio.sleep(0.2)
            log = await read_log(session, nginx.base)
            assert len(log) == TASKS * 3
            for client in clients:
                expected = [int(i["cursor"]) for i in log if matches(i, client.query)]
                client.wanted_last = expected[-1]
                client._check_done()
            async with asyncio.timeout(60):
                await asyncio.gather(*(c.done.wait() for c in clients))
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    for client in clients:
        expected = [int(i["cursor"]) for i in log if matches(i, client.query)]
        assert client.received == expected, (client.query, len(client.received), len(expected))
    assert clients[0].connections == 2  # cut off once, resumed without a gap or a repeat
    # Tasks ran on both replicas, and every client saw both replicas' events.
    assert {i["node"] for i in log if i["event"] == "succeeded"} == {"r0", "r1"}
