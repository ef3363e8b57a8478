"""Fixtures for the HTTP API suite: a real aiohttp server around a real engine (SQLite record
tier in tmp_path, in-process dispatch). Start-up runs the engine; clean-up stops it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.helpers import poll_until
from tierq.api.app import create_app
from tierq.api.auth.access import ACCESS
from tierq.api.auth.manage import create_key
from tierq.config import from_mapping

Client = TestClient  # type: ignore[type-arg]
MakeClient = Callable[..., Awaitable[Client]]

# Fast retries and flushes so whole lifecycles fit in well under a second; no shutdown grace
# so long-sleeping dummies never hold up clean-up.
BASE_SETTINGS: dict[str, Any] = {
    "workers": 4,
    "retry_base_ms": 10,
    "retry_max_ms": 20,
    "flush_interval_ms": 5,
    "commit_window_ms": 1,
    "shutdown_grace_s": 0,
    "node_id": "test-node",
}


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    async def make(**overrides: Any) -> Client:
        db = tmp_path / f"t{len(clients)}.db"
        settings = from_mapping(
            {**BASE_SETTINGS, "database_url": "sqlite:///" + str(db), **overrides}
        )
        client = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        await client.close()


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    return await make_client()


def auth(key: str) -> dict[str, str]:
    """The header that presents an API key."""
    return {"X-API-Key": key}


async def new_key(client: Client, role: str = "admin", tenant: str = "default", **more: Any) -> str:
    """A key made on the server's own key store (as ``tierq keys create`` does); its secret.
    From now on this server requires credentials (auth ``auto``)."""
    access = client.app[ACCESS]  # type: ignore[index]
    _, secret = await create_key(
        access.keys, name=f"{role}-{tenant}", role=role, tenant=tenant, now=time.time(), **more
    )
    access.authenticator.forget([])
    return secret


async def submit(client: Client, **task: Any) -> dict[str, Any]:
    resp = await client.post("/api/v1/tasks", json=task)
    body = await resp.json()
    assert resp.status == 201, body
    return body


async def submit_batch(client: Client, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    resp = await client.post("/api/v1/tasks/batch", json=tasks)
    body = await resp.json()
    assert resp.status == 201, body
    return body


async def get_task(client: Client, task_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/tasks/{task_id}")
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def wait_status(
    client: Client, task_id: str, *statuses: str, timeout: float = 5.0
) -> dict[str, Any]:
    """Poll until the task is in one of ``statuses``; fail with its last state otherwise."""
    return await poll_until(
        lambda: get_task(client, task_id),
        lambda task: task["status"] in statuses,
        timeout,
        what=f"task {task_id} {statuses}",
    )


async def statistics(client: Client) -> dict[str, Any]:
    resp = await client.get("/api/v1/tasks/statistics")
    assert resp.status == 200
    return await resp.json()


async def expect_error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert the error envelope and return its ``error`` object."""
    text = await resp.text()
    assert resp.status == status, text
    assert "Traceback" not in text
    assert resp.content_type == "application/json", text
    body = orjson.loads(text)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if code is not None:
        assert error["code"] == code, error
    return error
