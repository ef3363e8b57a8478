"""``PUT /api/v1/tasks/{id}/status``: an outside worker reports the outcome of a running
``external`` task; fenced by the attempt, refused for anything else."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Client, submit
from tests.helpers import poll_until


async def running(client: Client, task_id: str, attempt: int = 1) -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        body: dict[str, Any] = await (await client.get(f"/api/v1/tasks/{task_id}")).json()
        return body

    return await poll_until(
        fetch, lambda t: t["status"] == "running" and t["attempt"] == attempt, timeout=10
    )


async def put_status(client: Client, task_id: str, query: str, **body: Any) -> tuple[int, Any]:
    resp = await client.put(f"/api/v1/tasks/{task_id}/status?{query}", json=body or None)
    return resp.status, await resp.json()


async def test_a_reported_completion_ends_the_task_with_its_result(client: Client) -> None:
    task = await submit(client, type="external", payload={"job": 7}, timeout_seconds=30)
    await running(client, task["id"])
    status, body = await put_status(client, task["id"], "status=COMPLETED", result={"rows": 3})
    assert status == 200, body
    assert (body["status"], body["result"], body["attempt"]) == ("succeeded", {"rows": 3}, 1)
    again, error = await put_status(client, task["id"], "status=COMPLETED")
    assert (again, error["error"]["code"]) == (409, "conflict")


async def test_a_reported_failure_follows_the_retry_policy(client: Client) -> None:
    task = await submit(client, type="external", max_retries=1, timeout_seconds=30)
    await running(client, task["id"])
    status, body = await put_status(client, task["id"], "status=FAILED&attempt=1", error="disk")
    assert status == 202 and body["status"] in ("scheduled", "queued", "running")
    await running(client, task["id"], attempt=2)
    stale, _ = await put_status(client, task["id"], "status=COMPLETED&attempt=1")
    assert stale == 409  # the fencing token: attempt 1 is over
    status, body = await put_status(client, task["id"], "status=failed&attempt=2", error="disk")
    assert status == 200 and body["status"] == "failed" and "disk" in body["last_error"]


async def test_an_attempt_nobody_reports_times_out(client: Client) -> None:
    task = await submit(client, type="external", max_retries=0, timeout_seconds=0.2)

    async def fetch() -> dict[str, Any]:
        body: dict[str, Any] = await (await client.get(f"/api/v1/tasks/{task['id']}")).json()
        return body

    ended = await poll_until(fetch, lambda t: t["status"] == "failed", timeout=10)
    assert "timed out" in ended["last_error"]


async def test_reports_are_refused_with_the_reason(client: Client) -> None:
    plain = await submit(client, type="dummy", payload={"sleep_ms": 2000})
    await running(client, plain["id"])
    status, body = await put_status(client, plain["id"], "status=COMPLETED")
    assert status == 409 and "external" in body["error"]["message"]
    waiting = await submit(client, type="external", delay_seconds=3600)
    status, body = await put_status(client, waiting["id"], "status=COMPLETED")
    assert status == 409 and "not running" in body["error"]["message"]
    for query, parameter in (("status=DONE", "status"), ("status=FAILED&attempt=x", "attempt")):
        status, body = await put_status(client, waiting["id"], query)
        assert status == 400 and body["error"]["details"]["parameter"] == parameter
    resp = await client.put(f"/api/v1/tasks/{waiting['id']}/status?status=FAILED", json={"oops": 1})
    assert resp.status == 422 and (await resp.json())["error"]["details"]["path"] == "$.oops"
