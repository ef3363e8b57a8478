"""Flow control across two replicas (one PostgreSQL, one Redis), measured outside tierq by the
HTTP service the tasks call: a cluster-wide max_running and start rate, a pause that reaches
the other replica, and a breaker that one outage opens for both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.distributed.conftest import Cluster
from tests.helpers import poll_until
from tests.receivers import ProbeServer
from tierq.api.app import create_app
from tierq.api.routes import ENGINE

pytestmark = pytest.mark.distributed

Client = TestClient  # type: ignore[type-arg]


async def two_replicas(cluster: Cluster, **overrides: Any) -> list[Client]:
    made: list[Client] = []
    for node in ("a", "b"):
        settings = cluster.settings(node, http_allow_private="127.0.0.1", **overrides)
        client = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        made.append(client)
    return made


@pytest.fixture
async def replicas(cluster: Cluster) -> AsyncIterator[list[Client]]:
    made: list[Client] = []

    async def make(**overrides: Any) -> list[Client]:
        made.extend(await two_replicas(cluster, **overrides))
        return made

    yield make  # type: ignore[misc]
    for client in reversed(made):
        await client.close()


def http_tasks(url: str, n: int, queue: str = "default") -> list[dict[str, Any]]:
    return [{"type": "http", "queue": queue, "payload": {"url": url}} for _ in range(n)]


async def submit_split(clients: list[Client], tasks: list[dict[str, Any]]) -> list[str]:
    """Half the tasks through each replica."""
    ids: list[str] = []
    half = len(tasks) // 2
    for client, part in ((clients[0], tasks[:half]), (clients[1], tasks[half:])):
        for i in range(0, len(part), 500):
            resp = await client.post("/api/v1/tasks/batch", json=part[i : i + 500])
            assert resp.status == 201, await resp.text()
            ids += (await resp.json())["ids"]
    return ids


async def statuses(client: Client, queue: str) -> dict[str, int]:
    resp = await client.get("/api/v1/tasks/statistics")
    assert resp.status == 200
    counts = {}
    queues = (await (await client.get("/api/v1/queues")).json())["items"]
    for q in queues:
        if q["name"] == queue:
            counts = q["counts"]
    return counts


async def finished(client: Client, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        out = []
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            # The list has no id filter: read each (cheap at these sizes, off the hot path).
            for task_id in part:
                out.append(await (await client.get(f"/api/v1/tasks/{task_id}")).json())
        return out

    async def all_done() -> list[dict[str, Any]]:
        live = await statuses(client, "default")
        if any(live.get(s) for s in ("queued", "scheduled", "running", "pending")):
            return []
        return await fetch()

    return await poll_until(all_done, bool, timeout, every=0.25, what="every task finished")


async def test_max_running_is_one_limit_for_both_replicas(replicas: Any) -> None:
    slow = ProbeServer(delay_s=0.1)
    await slow.start()
    try:
        a, b = await replicas(workers=8)
        resp = await a.patch("/api/v1/queues/default", json={"max_running": 3})
        assert resp.status == 200
        ids = await submit_split([a, b], http_tasks(slow.url, 200))
        tasks = await finished(b, ids, 60)
        assert {t["status"] for t in tasks} == {"succeeded"}
        assert slow.max_running == 3
        assert len(slow.calls) == 200
        waited = [
            c.app[ENGINE].metrics.registry.get_sample_value(  # type: ignore[index]
                "tierq_flow_waits_total", {"reason": "limit"}
            )
            for c in (a, b)
        ]
        assert sum(w or 0 for w in waited) > 0  # the limiter's waits are counted
    finally:
        await slow.stop()


async def test_a_rate_is_one_rate_for_both_replicas(replicas: Any) -> None:
    probe = ProbeServer()
    await probe.start()
    try:
        a, b = await replicas(workers=8)
        resp = await b.patch(
            "/api/v1/queues/default", json={"rate": {"limit": 20, "per_seconds": 1}}
        )
        assert resp.status == 200
        ids = await submit_split([a, b], http_tasks(probe.url, 200))
        tasks = await finished(a, ids, 60)
        assert {t["status"] for t in tasks} == {"succeeded"}
        times = sorted(t for t, _ in probe.calls)
        rate = (len(times) - 1) / (times[-1] - times[0])
        assert 18.0 <= rate <= 22.0, rate
    finally:
        await probe.stop()


async def test_a_pause_reaches_the_other_replica_within_a_second(replicas: Any) -> None:
    probe = ProbeServer()
    await probe.start()
    try:
        a, b = await replicas()
        resp = await a.post("/api/v1/queues/default/pause")
        assert resp.status == 200
        await asyncio.sleep(1.0)
        ids = await submit_split([a, b], http_tasks(probe.url, 40))
        await asyncio.sleep(1.0)
        assert probe.calls == []
        queues = {q["name"]: q for q in (await (await b.get("/api/v1/queues")).json())["items"]}
        assert queues["default"]["paused"] is True
        assert queues["default"]["counts"] == {"queued": 40}
        resp = await b.post("/api/v1/queues/default/resume")
        tasks = await finished(a, ids, 30)
        assert {t["status"] for t in tasks} == {"succeeded"}
    finally:
        await probe.stop()


async def test_an_outage_opens_one_breaker_for_both_replicas(replicas: Any) -> None:
    """The issue's measurement: 2,000 http tasks, a service down for 30 s, two replicas."""
    probe = ProbeServer()
    await probe.start()
    try:
        a, b = await replicas(workers=8, breaker_cooldown_s=2.0, breaker_cooldown_max_s=8.0)
        probe.down = True
        ids = await submit_split([a, b], http_tasks(probe.url, 2000))
        await asyncio.sleep(30)
        during = sum(1 for _, down in probe.calls if down)
        probe.down = False
        tasks = await finished(b, ids, 90)
        assert {t["status"] for t in tasks} == {"succeeded"}
        assert max(t["attempt"] for t in tasks) <= 2
        # In flight when it tripped (16 workers) + the window (20) + probes (3 per phase;
        # phases 2, 4, 8, 8, 8 s apart: at most 6 in 30 s).
        assert during <= 16 + 20 + 3 * 6, during
        print(f"calls during the 30 s outage: {during}; after: {len(probe.calls) - during}")
    finally:
        await probe.stop()
