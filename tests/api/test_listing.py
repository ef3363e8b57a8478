"""GET /api/v1/tasks (filters, sort, paging, keyset) and GET /api/v1/tasks/statistics."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Client, expect_error, statistics, submit, submit_batch
from tests.helpers import poll_until

TASKS = "/api/v1/tasks"
STATES = ("pending", "scheduled", "queued", "running", "succeeded", "failed", "cancelled")


async def list_items(client: Client, **params: Any) -> dict[str, Any]:
    resp = await client.get(TASKS, params={k: str(v) for k, v in params.items()})
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def seed(client: Client) -> dict[str, list[str]]:
    """Delayed tasks (they stay scheduled) across types, queues and priorities."""
    specs = [
        {"type": "noop", "queue": "a", "priority": "LOW"},
        {"type": "noop", "queue": "a", "priority": "HIGH"},
        {"type": "dummy", "queue": "b", "priority": "MEDIUM"},
        {"type": "dummy", "queue": "a", "priority": 7},
        {"type": "noop", "queue": "b", "priority": "HIGH"},
    ]
    body = await submit_batch(client, [{**s, "delay_seconds": 60} for s in specs])
    return {"all": body["ids"]}


async def test_list_filters_by_type_queue_priority(client: Client) -> None:
    ids = (await seed(client))["all"]
    by_type = await list_items(client, type="dummy")
    assert {t["id"] for t in by_type["items"]} == {ids[2], ids[3]}
    by_queue = await list_items(client, queue="b")
    assert {t["id"] for t in by_queue["items"]} == {ids[2], ids[4]}
    high = await list_items(client, priority="HIGH")
    assert {t["id"] for t in high["items"]} == {ids[1], ids[4]}
    seven = await list_items(client, priority=7)
    assert [t["id"] for t in seven["items"]] == [ids[3]]
    combined = await list_items(client, type="noop", queue="a", priority="low")
    assert [t["id"] for t in combined["items"]] == [ids[0]]
    assert (await list_items(client, queue="nowhere"))["items"] == []


async def test_list_filters_by_status_comma_list(client: Client) -> None:
    ids = (await seed(client))["all"]
    resp = await client.delete(f"{TASKS}/{ids[0]}")
    assert resp.status == 200
    cancelled = await list_items(client, status="cancelled")
    assert [t["id"] for t in cancelled["items"]] == [ids[0]]
    scheduled = await list_items(client, status="scheduled")
    assert {t["id"] for t in scheduled["items"]} == set(ids[1:])
    both = await list_items(client, status="scheduled, CANCELLED")
    assert {t["id"] for t in both["items"]} == set(ids)
    assert (await list_items(client, status="succeeded"))["items"] == []


async def test_list_sorting(client: Client) -> None:
    ids = (await seed(client))["all"]
    default = await list_items(client)
    assert [t["id"] for t in default["items"]] == ids[::-1]  # newest first
    desc = await list_items(client, sort="created_at,desc")
    assert [t["id"] for t in desc["items"]] == ids[::-1]
    asc = await list_items(client, sort="created_at,asc")
    assert [t["id"] for t in asc["items"]] == ids
    by_priority = await list_items(client, sort="priority,desc")
    priorities = [t["priority"] for t in by_priority["items"]]
    assert priorities == [10, 10, 7, 5, 0]
    by_priority_asc = await list_items(client, sort="priority,asc")
    assert [t["priority"] for t in by_priority_asc["items"]] == [0, 5, 7, 10, 10]


async def test_page_and_size(client: Client) -> None:
    ids = (await seed(client))["all"]
    first = await list_items(client, sort="created_at,asc", size=2)
    assert [t["id"] for t in first["items"]] == ids[:2]
    assert first["has_more"] is True
    assert first["size"] == 2 and first["page"] == 0
    second = await list_items(client, sort="created_at,asc", size=2, page=1)
    assert [t["id"] for t in second["items"]] == ids[2:4]
    last = await list_items(client, sort="created_at,asc", size=2, page=2)
    assert [t["id"] for t in last["items"]] == ids[4:]
    assert last["has_more"] is False
    assert last["next_after"] is None
    beyond = await list_items(client, size=2, page=50)
    assert beyond["items"] == [] and beyond["has_more"] is False


async def test_size_is_capped_at_1000(client: Client) -> None:
    await submit_batch(client, [{"type": "noop", "delay_seconds": 60}] * 1001)
    body = await list_items(client, size=5000)
    assert body["size"] == 1000
    assert len(body["items"]) == 1000
    assert body["has_more"] is True


async def test_keyset_paging_walks_every_task_once(client: Client) -> None:
    body = await submit_batch(client, [{"type": "noop", "delay_seconds": 60}] * 23)
    for sort, expected in (("created_at,asc", body["ids"]), ("created_at,desc", body["ids"][::-1])):
        seen: list[str] = []
        after: str | None = None
        for _ in range(10):
            params: dict[str, Any] = {"sort": sort, "size": 5}
            if after:
                params["after"] = after
            page = await list_items(client, **params)
            seen += [t["id"] for t in page["items"]]
            after = page["next_after"]
            if after is None:
                assert page["has_more"] is False
                break
            assert after == page["items"][-1]["id"]
        assert seen == expected, sort


async def test_bad_list_parameters_are_400_naming_the_parameter(client: Client) -> None:
    cases = [
        ({"status": "done"}, "status"),
        ({"status": "queued,nope"}, "status"),
        ({"priority": "URGENT"}, "priority"),
        ({"priority": "5000"}, "priority"),
        ({"sort": "colour"}, "sort"),
        ({"sort": "created_at,up"}, "sort"),
        ({"page": "-1"}, "page"),
        ({"page": "x"}, "page"),
        ({"size": "0"}, "size"),
        ({"size": "ten"}, "size"),
        ({"after": "not-an-id"}, "after"),
        ({"after": "01a21202-fe7f-7000-b8f0-5ce9cd05ffd5", "sort": "priority,desc"}, "after"),
    ]
    for params, name in cases:
        resp = await client.get(TASKS, params=params)
        error = await expect_error(resp, 400, "bad_parameter")
        assert error["details"] == {"parameter": name}, (params, error)
        assert name in error["message"], (params, error)


async def wait_counts(client: Client, expected: dict[str, int], timeout: float = 5.0) -> dict:
    """Statistics read the record tier, which trails the engine by a flush: poll."""
    return await poll_until(
        lambda: statistics(client),
        lambda stats: all(stats["counts"][k] == v for k, v in expected.items()),
        timeout,
        what=f"counts {expected}",
    )


async def test_statistics_counts_every_state(client: Client) -> None:
    empty = await statistics(client)
    assert list(empty["counts"]) == list(STATES)
    assert all(v == 0 for v in empty["counts"].values())
    assert empty["total"] == 0
    assert empty["mode"] == "embedded"
    assert empty["node"] == "test-node"

    await submit_batch(client, [{"type": "noop"}] * 3)
    delayed = await submit_batch(client, [{"type": "noop", "delay_seconds": 60}] * 4)
    await submit(client, type="dummy", payload={"fail_always": True}, max_retries=0)
    await client.delete(f"{TASKS}/{delayed['ids'][0]}")
    await submit(client, type="noop", depends_on=[delayed["ids"][1]])
    running = await submit(client, type="dummy", payload={"sleep_ms": 10_000})
    stats = await wait_counts(
        client,
        {
            "pending": 1,
            "scheduled": 3,
            "queued": 0,
            "running": 1,
            "succeeded": 3,
            "failed": 1,
            "cancelled": 1,
        },
    )
    assert set(stats["counts"]) == set(STATES)
    assert stats["total"] == 10
    assert stats["memory"]["running"] == 1
    resp = await client.post(f"{TASKS}/{running['id']}/cancel")
    assert resp.status == 200
    await wait_counts(client, {"running": 0, "cancelled": 2})


async def test_search_by_name_prefix_and_payload_fields_says_what_it_looked_at(
    client: Any,
) -> None:
    for name, payload in (
        ("order-1", {"customer_id": 42, "region": "eu"}),
        ("order-2", {"customer_id": 7, "region": "eu"}),
        ("refund-1", {"customer_id": 42}),
    ):
        resp = await client.post(
            "/api/v1/tasks", json={"type": "noop", "name": name, "payload": payload}
        )
        assert resp.status == 201
    resp = await client.get("/api/v1/tasks?payload.customer_id=42&sort=created_at,asc")
    body = await resp.json()
    assert [t["name"] for t in body["items"]] == ["order-1", "refund-1"]
    assert (body["searched"], body["search_capped"]) == (3, False)
    resp = await client.get("/api/v1/tasks?name=order-&payload.region=eu&payload.customer_id=7")
    assert [t["name"] for t in (await resp.json())["items"]] == ["order-2"]
    plain = await (await client.get("/api/v1/tasks")).json()
    assert "searched" not in plain  # not a search: every task is listed
    for query, parameter in (
        ("payload.a;b=1", "payload.a;b"),
        ("payload.=1", "payload."),
        ("payload.a=1&payload.b=1&payload.c=1&payload.d=1&payload.e=1&payload.f=1", "payload"),
    ):
        resp = await client.get(f"/api/v1/tasks?{query}")
        assert resp.status == 400, query
        assert (await resp.json())["error"]["details"]["parameter"] == parameter
