"""The schedules API on a real server (SQLite): creation with the seed's shapes, every
refusal as a 422 naming the field (nothing saved), reads with next runs, edits, pause,
resume, trigger, history and preview. Firing itself is driven with explicit times."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Client, submit
from tests.helpers import poll_until
from tierq.api.routes import ENGINE

SEED = {
    "name": "sample-task",
    "cron_expression": "*/5 * * * * *",
    "handler": "noop",
    "parameters": {"to": "ops@example.com"},
    "max_retries": 3,
}


async def create(client: Client, **body: Any) -> dict[str, Any]:
    resp = await client.post("/api/v1/schedules", json=body)
    data = await resp.json()
    assert resp.status == 201, data
    return data  # type: ignore[no-any-return]


async def test_seed_schedule_is_accepted_and_shows_its_next_runs(client: Client) -> None:
    body = await create(client, **SEED)
    assert body["cron"] == "*/5 * * * * *" and body["every_seconds"] is None
    assert body["task"]["type"] == "noop" and body["task"]["max_retries"] == 3
    assert body["task"]["payload"] == {"to": "ops@example.com"}
    assert body["state"] == "active" and body["paused"] is False
    utc = [r["utc"] for r in body["next_runs"]]
    assert len(utc) == 5 and utc == sorted(utc)
    assert all(
        r["utc"][17:19] in {"00", "05", "10", "15", "20", "25", "30", "35", "40", "45", "50", "55"}
        for r in body["next_runs"]
    )
    got = await client.get(f"/api/v1/schedules/{body['id']}")
    assert (await got.json())["name"] == "sample-task"


async def test_fixed_rate_in_a_time_zone(client: Client) -> None:
    body = await create(
        client,
        name="every-15-min",
        every_seconds=900,
        timezone="Europe/Berlin",
        task={"type": "noop", "queue": "reports", "priority": "HIGH"},
    )
    first, second = body["next_runs"][:2]
    assert first["at"].endswith(("+01:00", "+02:00"))
    assert body["task"]["queue"] == "reports"
    from datetime import datetime

    gap = datetime.fromisoformat(second["utc"]) - datetime.fromisoformat(first["utc"])
    assert gap.total_seconds() == 900


BAD = [
    ({"cron": "* * * *"}, "$.cron", "expected 5 fields"),
    ({"cron": "61 * * * *"}, "$.cron", "minute"),
    ({"cron": "*/0 * * * *"}, "$.cron", "minute"),
    ({"cron": "0 0 25 * * *"}, "$.cron", "hour"),
    ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "$.timezone", "time zone"),
    ({"every_seconds": 0}, "$.every_seconds", ">= 1"),
    (
        {"every_seconds": 5, "start_at": "2030-01-02T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"},
        "$.end_at",
        "after start_at",
    ),
    ({"cron": "* * * * *", "every_seconds": 5}, "$.every_seconds", "not both"),
    ({}, "$.cron", "every_seconds"),
    ({"every_seconds": 5, "task": {"type": "no-such-type"}}, "$.task.type", "unknown task type"),
    (
        {"every_seconds": 5, "task": {"type": "dummy", "payload": {"sleep_ms": -1}}},
        "$.task.payload.sleep_ms",
        "",
    ),
    ({"every_seconds": 5, "overlap": "sometimes"}, "$.overlap", ""),
    ({"every_seconds": 5, "catchup": "everything"}, "$.catchup", ""),
    ({"every_seconds": 5, "bogus": 1}, "$.bogus", "unknown field"),
    (
        {"every_seconds": 5, "task": {"type": "noop", "run_at": "2030-01-01T00:00:00Z"}},
        "$.task.run_at",
        "unknown field",
    ),
    ({"every_seconds": 5, "handler": "noop"}, "$.handler", "not both"),
]


@pytest.mark.parametrize(("fields", "path", "message"), BAD)
async def test_bad_schedules_are_422_with_the_path_and_nothing_is_saved(
    client: Client, fields: dict[str, Any], path: str, message: str
) -> None:
    body: dict[str, Any] = {"name": "bad", "task": {"type": "noop"}, **fields}
    resp = await client.post("/api/v1/schedules", json=body)
    data = await resp.json()
    assert resp.status == 422, data
    assert data["error"]["details"]["path"] == path
    assert message in data["error"]["message"]
    listed = await (await client.get("/api/v1/schedules")).json()
    assert listed["items"] == []


async def test_names_are_unique(client: Client) -> None:
    await create(client, name="nightly", cron="0 3 * * *", task={"type": "noop"})
    resp = await client.post(
        "/api/v1/schedules", json={"name": "nightly", "every_seconds": 5, "task": {"type": "noop"}}
    )
    assert resp.status == 409
    assert (await resp.json())["error"]["details"]["path"] == "$.name"


async def test_list_filters_and_pages(client: Client) -> None:
    for n in range(5):
        await create(
            client, name=f"job-{n}", every_seconds=60, task={"type": "noop"}, paused=n % 2 == 0
        )
    page = await (await client.get("/api/v1/schedules?size=2")).json()
    assert [s["name"] for s in page["items"]] == ["job-0", "job-1"] and page["has_more"]
    rest = await (await client.get(f"/api/v1/schedules?after={page['next_after']}")).json()
    assert [s["name"] for s in rest["items"]] == ["job-2", "job-3", "job-4"]
    paused = await (await client.get("/api/v1/schedules?paused=true")).json()
    assert [s["name"] for s in paused["items"]] == ["job-0", "job-2", "job-4"]
    assert all(s["state"] == "paused" for s in paused["items"])
    named = await (await client.get("/api/v1/schedules?name=job-3")).json()
    assert [s["name"] for s in named["items"]] == ["job-3"]
    bad = await client.get("/api/v1/schedules?paused=maybe")
    assert bad.status == 400


async def test_patch_pause_resume_delete(client: Client) -> None:
    body = await create(client, name="edit-me", cron="0 3 * * *", task={"type": "noop"})
    sid = body["id"]
    resp = await client.patch(f"/api/v1/schedules/{sid}", json={"every_seconds": 30})
    edited = await resp.json()
    assert resp.status == 200, edited
    assert edited["cron"] is None and edited["every_seconds"] == 30
    assert edited["version"] == 2
    resp = await client.patch(f"/api/v1/schedules/{sid}", json={"cron": "61 * * * *"})
    assert resp.status == 422 and (await resp.json())["error"]["details"]["path"] == "$.cron"
    resp = await client.patch(f"/api/v1/schedules/{sid}", json={"status": "x"})
    assert resp.status == 422
    resp = await client.patch(f"/api/v1/schedules/{sid}", json={"runs": 9})
    assert resp.status == 422 and (await resp.json())["error"]["details"]["path"] == "$.runs"
    resp = await client.patch(
        f"/api/v1/schedules/{sid}", json={"task": {"payload": {"n": 2}}, "description": "d"}
    )
    edited = await resp.json()
    assert edited["task"] == {**body["task"], "payload": {"n": 2}}
    assert edited["description"] == "d" and edited["every_seconds"] == 30
    paused = await (await client.post(f"/api/v1/schedules/{sid}/pause")).json()
    assert paused["paused"] and paused["state"] == "paused"
    resumed = await (await client.post(f"/api/v1/schedules/{sid}/resume")).json()
    assert not resumed["paused"]
    assert (await client.delete(f"/api/v1/schedules/{sid}")).status == 204
    assert (await client.get(f"/api/v1/schedules/{sid}")).status == 404
    assert (await client.delete(f"/api/v1/schedules/{sid}")).status == 404
    assert (await client.get("/api/v1/schedules/not-an-id")).status == 400


async def test_trigger_idempotency_and_runs(client: Client) -> None:
    body = await create(client, name="on-demand", cron="0 3 1 1 *", task={"type": "noop"})
    sid = body["id"]
    first = await client.post(f"/api/v1/schedules/{sid}/trigger", headers={"Idempotency-Key": "a"})
    again = await client.post(f"/api/v1/schedules/{sid}/trigger", headers={"Idempotency-Key": "a"})
    assert first.status == 201 and again.status == 200
    task = await first.json()
    assert (await again.json())["id"] == task["id"]
    assert task["schedule_id"] == sid and task["scheduled_for"] is not None
    for _ in range(2):
        assert (await client.post(f"/api/v1/schedules/{sid}/trigger")).status == 201

    async def runs() -> dict[str, Any]:
        return await (await client.get(f"/api/v1/schedules/{sid}/runs")).json()  # type: ignore[no-any-return]

    history = await poll_until(
        runs, lambda h: [r["status"] for r in h["items"]] == ["succeeded"] * 3, what="3 runs done"
    )
    assert all(r["trigger"] and not r["skipped"] for r in history["items"])
    listed = await (await client.get(f"/api/v1/tasks?schedule_id={sid}")).json()
    assert len(listed["items"]) == 3
    shown = await (await client.get(f"/api/v1/schedules/{sid}")).json()
    assert shown["last_run"]["task_id"] in {t["id"] for t in listed["items"]}
    assert (await client.get("/api/v1/tasks?schedule_id=nope")).status == 400


async def test_ticks_fire_through_the_running_scheduler(client: Client) -> None:
    # The real loop, on real time: a one-second schedule fires its ticks by itself.
    body = await create(client, name="tick", every_seconds=1, task={"type": "noop"})

    async def tasks() -> list[dict[str, Any]]:
        page = await (await client.get(f"/api/v1/tasks?schedule_id={body['id']}")).json()
        return page["items"]  # type: ignore[no-any-return]

    fired = await poll_until(tasks, lambda items: len(items) >= 2, timeout=10, what="2 ticks")
    ticks = sorted(t["scheduled_for"] for t in fired)
    assert len(set(ticks)) == len(ticks)
    engine = client.server.app[ENGINE]
    assert engine.schedules is not None and engine.schedules.scheduler.leading


async def test_preview_validates_and_saves_nothing(client: Client) -> None:
    resp = await client.get(
        "/api/v1/schedules/preview",
        params={
            "cron": "30 2 * * *",
            "timezone": "Europe/Berlin",
            "count": "3",
            "after": "2026-03-28T12:00:00Z",
        },
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert [r["at"] for r in body["next_runs"]] == [
        "2026-03-29T03:00:00.000+02:00",  # the spring-forward gap: the first valid instant
        "2026-03-30T02:30:00.000+02:00",
        "2026-03-31T02:30:00.000+02:00",
    ]
    bad = await client.get("/api/v1/schedules/preview", params={"cron": "* * * *"})
    assert bad.status == 422 and (await bad.json())["error"]["details"]["path"] == "$.cron"
    both = await client.get("/api/v1/schedules/preview", params={"count": "3"})
    assert both.status == 422
    rate = await (
        await client.get("/api/v1/schedules/preview", params={"every_seconds": "10", "count": "2"})
    ).json()
    assert len(rate["next_runs"]) == 2
    assert (await (await client.get("/api/v1/schedules")).json())["items"] == []


async def test_reserved_idempotency_keys_are_refused(client: Client) -> None:
    resp = await client.post(
        "/api/v1/tasks", json={"type": "noop", "idempotency_key": "tierq:schedule:x:tick:1"}
    )
    assert resp.status == 422
    assert (await resp.json())["error"]["details"]["path"] == "$.idempotency_key"
    resp = await client.post(
        "/api/v1/tasks/batch", json=[{"type": "noop", "idempotency_key": "tierq:x"}]
    )
    assert resp.status == 422
    task = await submit(client, type="noop", idempotency_key="mine:1")
    assert task["idempotency_key"] == "mine:1" and task["schedule_id"] is None
