"""Smoke checks of the HTTP API with two replicas (two apps, one record tier, one dispatch
tier): what one replica accepts, the other can read, cancel, retry and list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.distributed.conftest import Cluster
from tests.helpers import poll_until
from tierq.api.app import create_app

pytestmark = pytest.mark.distributed

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
async def clients(cluster: Cluster) -> AsyncIterator[tuple[Client, Client]]:
    made: list[Client] = []
    try:
        for node in ("a", "b"):
            client = TestClient(TestServer(create_app(cluster.settings(node, workers=2))))
            await client.start_server()
            made.append(client)
        yield made[0], made[1]
    finally:
        for client in reversed(made):
            await client.close()


async def call(client: Client, method: str, path: str, status: int, **kw: Any) -> Any:
    resp = await client.request(method, path, **kw)
    body = await resp.json()
    assert resp.status == status, body
    return body


async def wait_status(client: Client, task_id: str, status: str, timeout: float = 10) -> Any:
    return await poll_until(
        lambda: call(client, "GET", f"/api/v1/tasks/{task_id}", 200),
        lambda task: task["status"] == status,
        timeout,
        what=f"task {task_id} {status}",
    )


async def test_http_api_across_two_replicas(clients: tuple[Client, Client]) -> None:
    a, b = clients
    spec = {"type": "dummy", "payload": {"sleep_ms": 1, "result": {"n": 1}}}
    created = await call(a, "POST", "/api/v1/tasks", 201, json=spec)
    batch = await call(a, "POST", "/api/v1/tasks/batch", 201, json=[spec] * 5)
    batch_ids = batch["ids"]
    assert len(set(batch_ids)) == 5 and batch["existing"] == []

    done = await wait_status(b, created["id"], "succeeded")
    assert done["result"] == {"n": 1} and done["attempt"] == 1
    for task_id in batch_ids:
        await wait_status(b, task_id, "succeeded")
    executions = await call(b, "GET", f"/api/v1/tasks/{created['id']}/executions", 200)
    runs = executions["items"]
    assert [(e["attempt"], e["outcome"]) for e in runs] == [(1, "succeeded")]
    assert runs[0]["worker"].split("/")[0] in ("a", "b")

    # Cancel on B a task A accepted (waiting in the shared delayed set), then retry it on A.
    later = await call(a, "POST", "/api/v1/tasks", 201, json={**spec, "delay_seconds": 60})
    cancelled = await call(b, "POST", f"/api/v1/tasks/{later['id']}/cancel", 200)
    assert cancelled["status"] == "cancelled"
    seen_on_a = await wait_status(a, later["id"], "cancelled")
    # A sees B's cancel as B made it: ended now, never started, no lease left.
    assert seen_on_a["finished_at"] is not None and seen_on_a["started_at"] is None
    assert seen_on_a["attempt"] == 0 and seen_on_a["lease_owner"] is None
    await call(a, "POST", f"/api/v1/tasks/{later['id']}/retry", 200)
    await wait_status(b, later["id"], "succeeded")

    listing = await call(b, "GET", "/api/v1/tasks?status=succeeded&size=100", 200)
    listed = {t["id"] for t in listing["items"]}
    assert {created["id"], later["id"], *batch_ids} <= listed, listing
    stats_a = await call(a, "GET", "/api/v1/tasks/statistics", 200)
    stats_b = await call(b, "GET", "/api/v1/tasks/statistics", 200)
    assert stats_a["counts"] == stats_b["counts"]
    assert stats_a["counts"]["succeeded"] == 7 and stats_a["total"] == 7
    assert stats_a["mode"] == "distributed" and {stats_a["node"], stats_b["node"]} == {"a", "b"}

    workers = await call(a, "GET", "/health/workers", 200)
    assert [r["node"] for r in workers["replicas"]] == ["a", "b"]
    health = await call(b, "GET", "/health", 200)
    assert health["checks"] == {"record_store": "ok", "dispatch": "ok"}
