"""Reading a task, running it to the end, dead letter, retry, cancel, execution history."""

from __future__ import annotations

import time
import uuid

from tests.api.conftest import (
    Client,
    MakeClient,
    expect_error,
    get_task,
    submit,
    submit_batch,
    wait_status,
)
from tests.helpers import poll_until

TASKS = "/api/v1/tasks"


async def test_get_task_found_unknown_and_malformed(client: Client) -> None:
    task = await submit(client, type="noop", name="find-me")
    got = await get_task(client, task["id"])
    assert got["id"] == task["id"]
    assert got["name"] == "find-me"
    # Upper-case ids are the same id.
    resp = await client.get(f"{TASKS}/{task['id'].upper()}")
    assert resp.status == 200
    assert (await resp.json())["id"] == task["id"]
    unknown = str(uuid.UUID(int=uuid.UUID(task["id"]).int + 1))
    resp = await client.get(f"{TASKS}/{unknown}")
    await expect_error(resp, 404, "not_found")
    resp = await client.get(f"{TASKS}/not-a-uuid")
    error = await expect_error(resp, 400, "bad_id")
    assert error["details"]["id"] == "not-a-uuid"


async def test_task_runs_to_succeeded_with_result(client: Client) -> None:
    task = await submit(client, type="dummy", payload={"result": {"answer": 42, "xs": [1]}})
    done = await wait_status(client, task["id"], "succeeded")
    assert done["result"] == {"answer": 42, "xs": [1]}
    assert done["attempt"] == 1
    assert done["started_at"] is not None
    assert done["finished_at"] is not None
    assert done["finished_at"] >= done["started_at"]
    assert done["last_error"] is None
    noop = await submit(client, type="noop")
    assert (await wait_status(client, noop["id"], "succeeded"))["result"] is None


async def test_fail_always_is_dead_lettered_then_retried(client: Client) -> None:
    task = await submit(client, type="dummy", payload={"fail_always": True}, max_retries=1)
    failed = await wait_status(client, task["id"], "failed")
    assert failed["attempt"] == 2  # first run + one retry
    assert failed["attempts_left"] == 0
    assert "fail_always" in failed["last_error"]

    # The dead letter shows up in the list once the final transition is recorded.
    async def dead_letters() -> list[str]:
        resp = await client.get(TASKS, params={"status": "failed"})
        assert resp.status == 200
        return [t["id"] for t in (await resp.json())["items"]]

    ids = await poll_until(dead_letters, lambda ids: task["id"] in ids, 3)
    assert ids == [task["id"]]

    resp = await client.post(f"{TASKS}/{task['id']}/retry")
    assert resp.status == 200, await resp.text()
    retried = await resp.json()
    # The replay is queued with a fresh budget; a worker may already have taken it by the
    # time it is read back, and each later state says how far its attempts got.
    expected_attempt = {"queued": 2, "running": 3, "scheduled": 3, "failed": 4}
    assert retried["status"] in expected_attempt, retried
    assert retried["attempt"] == expected_attempt[retried["status"]], retried
    # A replay gets a fresh budget: two more attempts, then dead-lettered again.
    again = await wait_status(client, task["id"], "failed")
    assert again["attempt"] == 4


async def test_retry_of_succeeded_task_is_409(client: Client) -> None:
    task = await submit(client, type="noop")
    await wait_status(client, task["id"], "succeeded")
    resp = await client.post(f"{TASKS}/{task['id']}/retry")
    error = await expect_error(resp, 409, "conflict")
    assert error["details"]["status"] == "succeeded"


async def test_retry_of_unknown_task_is_404(client: Client) -> None:
    resp = await client.post(f"{TASKS}/{uuid.UUID(int=7)}/retry")
    await expect_error(resp, 404, "not_found")


async def test_cancel_and_delete_scheduled_tasks(client: Client) -> None:
    first = await submit(client, type="noop", delay_seconds=60)
    second = await submit(client, type="noop", delay_seconds=60)
    resp = await client.post(f"{TASKS}/{first['id']}/cancel")
    assert resp.status == 200
    assert (await resp.json())["status"] == "cancelled"
    resp = await client.delete(f"{TASKS}/{second['id']}")
    assert resp.status == 200
    assert (await resp.json())["status"] == "cancelled"
    for task in (first, second):
        assert (await get_task(client, task["id"]))["status"] == "cancelled"
    # Cancelling twice is a conflict: cancelled is terminal.
    resp = await client.post(f"{TASKS}/{first['id']}/cancel")
    error = await expect_error(resp, 409, "conflict")
    assert error["details"]["status"] == "cancelled"


async def test_cancelled_task_can_be_retried(client: Client) -> None:
    task = await submit(client, type="noop", delay_seconds=60)
    resp = await client.delete(f"{TASKS}/{task['id']}")
    assert resp.status == 200
    resp = await client.post(f"{TASKS}/{task['id']}/retry")
    assert resp.status == 200, await resp.text()
    await wait_status(client, task["id"], "succeeded")


async def test_cancel_of_succeeded_task_is_409(client: Client) -> None:
    task = await submit(client, type="noop")
    await wait_status(client, task["id"], "succeeded")
    for resp in (
        await client.post(f"{TASKS}/{task['id']}/cancel"),
        await client.delete(f"{TASKS}/{task['id']}"),
    ):
        error = await expect_error(resp, 409, "conflict")
        assert error["details"]["status"] == "succeeded"


async def test_cancel_unknown_or_malformed_id(client: Client) -> None:
    await expect_error(await client.post(f"{TASKS}/{uuid.UUID(int=9)}/cancel"), 404, "not_found")
    await expect_error(await client.delete(f"{TASKS}/zzz"), 400, "bad_id")


async def test_cancel_of_running_task_ends_cancelled_quickly(client: Client) -> None:
    task = await submit(client, type="dummy", payload={"sleep_ms": 10_000})
    await wait_status(client, task["id"], "running", timeout=3)
    started = time.monotonic()
    resp = await client.post(f"{TASKS}/{task['id']}/cancel")
    assert resp.status == 200, await resp.text()
    done = await wait_status(client, task["id"], "cancelled", timeout=2)
    assert time.monotonic() - started < 2
    assert done["finished_at"] is not None
    resp = await client.get(f"{TASKS}/{task['id']}/executions")
    items = (await resp.json())["items"]
    assert [e["outcome"] for e in items] == ["cancelled"]


async def test_executions_one_row_per_attempt(client: Client) -> None:
    task = await submit(client, type="dummy", payload={"fail_times": 2}, max_retries=3)
    done = await wait_status(client, task["id"], "succeeded")
    assert done["attempt"] == 3
    resp = await client.get(f"{TASKS}/{task['id']}/executions")
    assert resp.status == 200
    body = await resp.json()
    assert body["task_id"] == task["id"]
    items = body["items"]
    assert [e["attempt"] for e in items] == [1, 2, 3]
    assert [e["outcome"] for e in items] == ["failed", "failed", "succeeded"]
    assert "attempt 1 of 2" in items[0]["error"]
    assert "attempt 2 of 2" in items[1]["error"]
    assert items[2]["error"] is None
    for row in items:
        assert row["worker"].startswith("test-node/w"), row
        assert row["started_at"] is not None and row["finished_at"] is not None
        assert row["duration_seconds"] >= 0


async def test_executions_of_unknown_task_is_404(client: Client) -> None:
    await expect_error(
        await client.get(f"{TASKS}/{uuid.UUID(int=11)}/executions"), 404, "not_found"
    )
    await expect_error(await client.get(f"{TASKS}/nope/executions"), 400, "bad_id")


async def test_cancel_during_retry_backoff_keeps_the_failed_attempt(
    make_client: MakeClient,
) -> None:
    # Long backoff: after its first failure the task waits (scheduled) for its retry.
    client = await make_client(retry_base_ms=5000, retry_max_ms=5000)
    task = await submit(client, type="dummy", payload={"fail_always": True})
    waiting = await wait_status(client, task["id"], "scheduled")
    assert waiting["attempt"] == 1
    # Cancel at once, before the failed attempt's report has been flushed on its own.
    resp = await client.post(f"{TASKS}/{task['id']}/cancel")
    assert resp.status == 200
    assert (await resp.json())["status"] == "cancelled"
    resp = await client.get(f"{TASKS}/{task['id']}/executions")
    items = (await resp.json())["items"]
    assert [(e["attempt"], e["outcome"]) for e in items] == [(1, "failed")]
    assert "fail_always" in items[0]["error"]


async def test_timeout_is_recorded_as_timed_out(client: Client) -> None:
    task = await submit(
        client, type="dummy", payload={"sleep_ms": 5000}, timeout_seconds=0.1, max_retries=0
    )
    failed = await wait_status(client, task["id"], "failed")
    assert "timed out" in failed["last_error"]
    resp = await client.get(f"{TASKS}/{task['id']}/executions")
    items = (await resp.json())["items"]
    assert [e["outcome"] for e in items] == ["timed_out"]
    assert 0.09 <= items[0]["duration_seconds"] < 1


async def test_executions_show_a_running_attempt(client: Client) -> None:
    task = await submit(client, type="dummy", payload={"sleep_ms": 5000})
    await wait_status(client, task["id"], "running")
    resp = await client.get(f"{TASKS}/{task['id']}/executions")
    items = (await resp.json())["items"]
    assert len(items) == 1
    assert items[0]["outcome"] is None
    assert items[0]["finished_at"] is None
    assert items[0]["started_at"] is not None


async def test_every_attempt_is_recorded_with_many_fast_retries(client: Client) -> None:
    # Many tasks retrying at once keep the flusher's batches large, so a retry is often
    # promoted before its failed attempt's report is written: that report must survive.
    body = await submit_batch(client, [{"type": "dummy", "payload": {"fail_times": 2}}] * 60)
    for task_id in body["ids"]:
        await wait_status(client, task_id, "succeeded")
    for task_id in body["ids"]:
        resp = await client.get(f"{TASKS}/{task_id}/executions")
        items = (await resp.json())["items"]
        assert [(e["attempt"], e["outcome"]) for e in items] == [
            (1, "failed"),
            (2, "failed"),
            (3, "succeeded"),
        ], task_id
