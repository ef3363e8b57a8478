"""depends_on: waiting in pending, release on success, 422 on unknown ids, cancel cascade."""

from __future__ import annotations

import uuid

from tests.api.conftest import Client, expect_error, get_task, submit, submit_batch, wait_status

TASKS = "/api/v1/tasks"


async def test_dependent_stays_pending_until_dependency_succeeds(client: Client) -> None:
    dep = await submit(client, type="noop", delay_seconds=1)
    child = await submit(client, type="dummy", payload={"result": "child"}, depends_on=[dep["id"]])
    assert child["status"] == "pending"
    assert child["depends_on"] == [dep["id"]]
    # Well before the dependency is due, the child is still waiting.
    assert (await get_task(client, child["id"]))["status"] == "pending"
    done_dep = await wait_status(client, dep["id"], "succeeded", timeout=4)
    done = await wait_status(client, child["id"], "succeeded", timeout=4)
    assert done["result"] == "child"
    assert done["started_at"] >= done_dep["finished_at"]


async def test_dependency_on_succeeded_task_runs_at_once(client: Client) -> None:
    dep = await submit(client, type="noop")
    await wait_status(client, dep["id"], "succeeded")
    child = await submit(client, type="noop", depends_on=[dep["id"]])
    assert child["status"] != "pending"
    await wait_status(client, child["id"], "succeeded")


async def test_dependency_within_one_batch(client: Client) -> None:
    first = await submit(client, type="noop", delay_seconds=60)
    body = await submit_batch(
        client,
        [{"type": "noop", "depends_on": [first["id"]]}, {"type": "noop"}],
    )
    assert (await get_task(client, body["ids"][0]))["status"] == "pending"
    await wait_status(client, body["ids"][1], "succeeded")


async def test_unknown_dependency_is_422_with_path(client: Client) -> None:
    known = await submit(client, type="noop", delay_seconds=60)
    unknown = str(uuid.UUID(int=12345))
    resp = await client.post(
        f"{TASKS}/batch",
        json=[
            {"type": "noop"},
            {"type": "noop", "depends_on": [known["id"], unknown]},
        ],
    )
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"]["path"] == "$[1].depends_on[1]"
    assert error["details"]["index"] == 1
    assert error["details"]["field"] == "depends_on[1]"
    resp = await client.get(TASKS)
    assert [t["id"] for t in (await resp.json())["items"]] == [known["id"]]
    resp = await client.post(TASKS, json={"type": "noop", "depends_on": ["not-an-id"]})
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"]["path"] == "$.depends_on[0]"


async def test_cancelled_dependency_cancels_its_dependent(client: Client) -> None:
    dep = await submit(client, type="noop", delay_seconds=60)
    child = await submit(client, type="noop", depends_on=[dep["id"]])
    grandchild = await submit(client, type="noop", depends_on=[child["id"]])
    assert child["status"] == "pending"
    resp = await client.post(f"{TASKS}/{dep['id']}/cancel")
    assert resp.status == 200
    await wait_status(client, child["id"], "cancelled", timeout=3)
    await wait_status(client, grandchild["id"], "cancelled", timeout=3)


async def test_pending_task_can_be_cancelled(client: Client) -> None:
    dep = await submit(client, type="noop", delay_seconds=60)
    child = await submit(client, type="noop", depends_on=[dep["id"]])
    resp = await client.delete(f"{TASKS}/{child['id']}")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "cancelled"
    assert (await get_task(client, dep["id"]))["status"] == "scheduled"


async def test_unknown_dependency_in_single_submit_has_single_path(client: Client) -> None:
    # A single submission's paths have no index ($.priority, $.payload.x): so does this one.
    resp = await client.post(TASKS, json={"type": "noop", "depends_on": [str(uuid.UUID(int=99))]})
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"] == {"path": "$.depends_on[0]", "field": "depends_on[0]"}


async def test_unknown_dependency_path_counts_repeated_ids(client: Client) -> None:
    known = await submit(client, type="noop", delay_seconds=60)
    unknown = str(uuid.UUID(int=77))
    resp = await client.post(
        f"{TASKS}/batch",
        json=[
            {"type": "noop"},
            {"type": "noop", "depends_on": [known["id"], known["id"], unknown]},
        ],
    )
    error = await expect_error(resp, 422, "validation_error")
    # The path points at the element of the request, not of a de-duplicated copy.
    assert error["details"]["path"] == "$[1].depends_on[2]"


async def test_failed_dependency_cancels_its_dependent(client: Client) -> None:
    dep = await submit(
        client, type="dummy", payload={"fail_always": True, "sleep_ms": 100}, max_retries=0
    )
    child = await submit(client, type="noop", depends_on=[dep["id"]])
    assert child["status"] == "pending"
    await wait_status(client, dep["id"], "failed")
    cancelled = await wait_status(client, child["id"], "cancelled", timeout=3)
    assert dep["id"] in cancelled["last_error"]
    assert cancelled["started_at"] is None


async def test_a_tasks_children_are_listed_by_depends_on(client: Client) -> None:
    parent = await submit(client, type="dummy", payload={"sleep_ms": 50})
    other = await submit(client, type="noop")
    kids = [
        await submit(client, type="noop", name=f"kid-{n}", depends_on=[parent["id"]])
        for n in range(2)
    ]
    await submit(client, type="noop", depends_on=[other["id"]])
    resp = await client.get(f"/api/v1/tasks?depends_on={parent['id']}&sort=created_at,asc")
    assert [t["id"] for t in (await resp.json())["items"]] == [k["id"] for k in kids]
    bad = await client.get("/api/v1/tasks?depends_on=nope")
    assert bad.status == 400
    assert (await bad.json())["error"]["details"]["parameter"] == "depends_on"
