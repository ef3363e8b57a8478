"""Flow control through the HTTP API, embedded: circuit breakers against a real failing HTTP
service, queue pause and resume, max_running and the start rate (measured outside tierq, by
the service the tasks call), bulk cancel and retry with Idempotency-Key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api.conftest import (
    Client,
    MakeClient,
    auth,
    expect_error,
    new_key,
    submit,
    submit_batch,
    wait_status,
)
from tests.helpers import poll_until
from tests.receivers import ProbeServer
from tierq.api.routes import ENGINE

BREAKER = {
    "http_allow_private": "127.0.0.1",
    "breaker_min_calls": 5,
    "breaker_window_size": 10,
    "breaker_cooldown_s": 0.3,
    "breaker_cooldown_max_s": 0.6,
    "breaker_probes": 2,
}


@pytest.fixture
async def probe() -> AsyncIterator[ProbeServer]:
    server = ProbeServer()
    await server.start()
    yield server
    await server.stop()


def http_tasks(url: str, n: int, queue: str = "default", **more: Any) -> list[dict[str, Any]]:
    return [
        {"type": "http", "queue": queue, "payload": {"url": url}, "max_retries": 3, **more}
        for _ in range(n)
    ]


async def all_finished(client: Client, ids: list[str], timeout: float = 20.0) -> list[Any]:
    async def fetch() -> list[Any]:
        return [await (await client.get(f"/api/v1/tasks/{i}")).json() for i in ids]

    return await poll_until(
        fetch,
        lambda tasks: all(t["status"] in ("succeeded", "failed", "cancelled") for t in tasks),
        timeout,
        every=0.1,
        what="every task finished",
    )


async def test_an_outage_opens_the_breaker_and_no_task_is_dead_lettered(
    make_client: MakeClient, probe: ProbeServer
) -> None:
    client = await make_client(**BREAKER)
    probe.down = True
    ids = (await submit_batch(client, http_tasks(probe.url, 200)))["ids"]
    # The breaker opens within the first calls and holds the rest back.
    breakers = await poll_until(
        lambda: client.get("/api/v1/breakers").__aenter__(),
        lambda resp: resp.status == 200,
        what="breakers listed",
    )
    body = await poll_until(
        lambda: _breakers(client),
        lambda b: any(i["state"] == "open" for i in b["items"]),
        what="breaker open",
    )
    assert breakers.status == 200
    (item,) = body["items"]
    assert item["key"].startswith("http:127.0.0.1:")
    await asyncio.sleep(1.5)  # the outage goes on: only probes reach the service now
    during = sum(1 for _, down in probe.calls if down)
    probe.down = False
    tasks = await all_finished(client, ids)
    assert [t["status"] for t in tasks] == ["succeeded"] * len(ids)
    # In flight when it tripped (4 workers) + the threshold window + probes (2 per phase;
    # phases every 0.3-0.6 s over 1.5 s: at most 6): far below the 400 a retry loop makes.
    assert during <= 4 + 10 + 2 * 6, during
    # Attempts spent: at most one on the outage (in flight as it tripped, or a probe), one
    # that succeeds.
    assert max(t["attempt"] for t in tasks) <= 2
    listed = await _breakers(client)
    assert [i["state"] for i in listed["items"]] == ["closed"]
    # Every change of state was an event on the seam (the log serves them).
    resp = await client.get(
        "/api/v1/events?event=breaker_opened,breaker_half_open,breaker_closed",
        headers={"Accept": "application/json"},
    )
    events = (await resp.json())["items"]
    assert events[0]["event"] == "breaker_opened"
    assert events[-1]["event"] == "breaker_closed"
    assert {e["breaker"] for e in events} == {item["key"]}


async def _breakers(client: Client) -> Any:
    resp = await client.get("/api/v1/breakers")
    assert resp.status == 200
    return await resp.json()


async def test_operators_force_open_and_reset_a_breaker(
    make_client: MakeClient, probe: ProbeServer
) -> None:
    client = await make_client(**BREAKER)
    key = "http:" + probe.url.split("/")[2]
    resp = await client.post(f"/api/v1/breakers/{key}/open")
    assert resp.status == 200
    assert (await resp.json())["state"] == "open"
    ids = (await submit_batch(client, http_tasks(probe.url, 5)))["ids"]
    await asyncio.sleep(0.5)
    assert probe.calls == []  # forced open: not even probes
    task = await (await client.get(f"/api/v1/tasks/{ids[0]}")).json()
    assert task["status"] == "scheduled" and task["attempt"] == 0
    resp = await client.post(f"/api/v1/breakers/{key}/reset")
    assert (await resp.json())["state"] == "closed"
    tasks = await all_finished(client, ids)
    assert {t["status"] for t in tasks} == {"succeeded"}


async def test_pause_holds_a_queue_and_resume_runs_it(
    make_client: MakeClient, probe: ProbeServer
) -> None:
    client = await make_client(http_allow_private="127.0.0.1")
    # Any name, also a queue with no tasks yet.
    resp = await client.post("/api/v1/queues/mail/pause")
    assert resp.status == 200 and (await resp.json())["paused"] is True
    ids = (await submit_batch(client, http_tasks(probe.url, 20, "mail")))["ids"]
    other = (await submit_batch(client, http_tasks(probe.url, 3, "other")))["ids"]
    for task_id in other:
        await wait_status(client, task_id, "succeeded")
    assert len(probe.calls) == 3  # the paused queue started nothing
    queues = {q["name"]: q for q in (await (await client.get("/api/v1/queues")).json())["items"]}
    assert queues["mail"]["paused"] is True
    assert queues["mail"]["counts"]["queued"] == 20
    assert queues["mail"]["oldest_pending_age_seconds"] >= 0
    assert queues["other"]["finished_last_minute"] == 3
    resp = await client.post("/api/v1/queues/mail/resume")
    assert (await resp.json())["paused"] is False
    tasks = await all_finished(client, ids)
    assert {t["status"] for t in tasks} == {"succeeded"}
    resp = await client.get(
        "/api/v1/events?event=queue_paused,queue_resumed", headers={"Accept": "application/json"}
    )
    events = [(e["event"], e["queue"]) for e in (await resp.json())["items"]]
    assert events == [("queue_paused", "mail"), ("queue_resumed", "mail")]


async def test_a_pause_survives_a_restart(make_client: MakeClient, tmp_path: Any) -> None:
    url = "sqlite:///" + str(tmp_path / "kept.db")
    first = await make_client(database_url=url)
    await first.post("/api/v1/queues/mail/pause")
    await first.patch("/api/v1/queues/mail", json={"max_running": 2})
    await first.close()
    second = await make_client(database_url=url)
    queues = {q["name"]: q for q in (await (await second.get("/api/v1/queues")).json())["items"]}
    assert queues["mail"]["paused"] is True
    assert queues["mail"]["limits"] == {"max_running": 2, "rate": None}


async def test_max_running_and_rate_are_obeyed(make_client: MakeClient) -> None:
    slow = ProbeServer(delay_s=0.1)
    await slow.start()
    try:
        client = await make_client(http_allow_private="127.0.0.1", workers=8)
        resp = await client.patch("/api/v1/queues/capped", json={"max_running": 3})
        assert (await resp.json())["max_running"] == 3
        ids = (await submit_batch(client, http_tasks(slow.url, 30, "capped")))["ids"]
        tasks = await all_finished(client, ids)
        assert {t["status"] for t in tasks} == {"succeeded"}
        assert slow.max_running == 3
        # A rate: 20 starts per second, no cap (PATCH keeps what it does not name).
        body = await (
            await client.patch(
                "/api/v1/queues/capped",
                json={"max_running": None, "rate": {"limit": 20, "per_seconds": 1}},
            )
        ).json()
        assert body["rate"] == {"limit": 20, "per_seconds": 1.0}
        slow.calls.clear()
        ids = (await submit_batch(client, http_tasks(slow.url, 40, "capped")))["ids"]
        await all_finished(client, ids)
        times = sorted(t for t, _ in slow.calls)
        rate = (len(times) - 1) / (times[-1] - times[0])
        assert 18.0 <= rate <= 22.0, rate
    finally:
        await slow.stop()


async def test_bad_limits_are_refused_with_the_field_path(client: Client) -> None:
    for body, path in (
        ({"max_running": 0}, "$.max_running"),
        ({"rate": {"limit": 1}}, "$.rate"),
        ({"rate": {"limit": 0, "per_seconds": 1}}, "$.rate.limit"),
        ({"speed": 1}, "$.speed"),
    ):
        resp = await client.patch("/api/v1/queues/q", json=body)
        error = await expect_error(resp, 422, "validation_error")
        assert error["details"]["path"] == path
    resp = await client.patch(
        "/api/v1/queues/q", data=b"{", headers={"Content-Type": "application/json"}
    )
    await expect_error(resp, 400)


async def test_bulk_retry_and_cancel_by_filter_once_per_key(
    make_client: MakeClient, probe: ProbeServer
) -> None:
    client = await make_client(http_allow_private="127.0.0.1", breakers=False)
    probe.down = True
    bad = (await submit_batch(client, http_tasks(probe.url, 12, max_retries=0)))["ids"]
    await all_finished(client, bad)
    probe.down = False
    headers = {"Idempotency-Key": "replay-1"}
    resp = await client.post("/api/v1/tasks/retry?status=failed&type=http", headers=headers)
    assert resp.status == 200
    assert await resp.json() == {"action": "retry", "changed": 12}
    tasks = await all_finished(client, bad)
    assert {t["status"] for t in tasks} == {"succeeded"}
    # The same key again: the first answer, nothing done again.
    again = await client.post("/api/v1/tasks/retry?status=failed&type=http", headers=headers)
    assert await again.json() == {"action": "retry", "changed": 12}
    assert again.headers["Idempotent-Replay"] == "true"
    # A retry while the first call still runs (its mark stored, no answer yet) is told so.
    queue_store = client.app[ENGINE].flow.queue_store  # type: ignore[index]
    await queue_store.begin_operation("*", "retry:busy", time.time())
    busy = await client.post("/api/v1/tasks/retry", headers={"Idempotency-Key": "busy"})
    await expect_error(busy, 409, "in_progress")
    # Cancel by filter: paused tasks of one queue.
    await client.post("/api/v1/queues/later/pause")
    held = (await submit_batch(client, http_tasks(probe.url, 7, "later")))["ids"]
    resp = await client.post("/api/v1/tasks/cancel?queue=later")
    assert await resp.json() == {"action": "cancel", "changed": 7}
    tasks = await all_finished(client, held)
    assert {t["status"] for t in tasks} == {"cancelled"}


async def test_only_a_platform_admin_changes_flow_controls(client: Client) -> None:
    tenant_admin = await new_key(client, "admin", tenant="acme")
    operator = await new_key(client, "operator", tenant="*")
    default_admin = await new_key(client, "admin", tenant="default")
    resp = await client.post("/api/v1/queues/q/pause", headers=auth(default_admin))
    assert resp.status == 200
    resp = await client.post("/api/v1/queues/q/pause", headers=auth(tenant_admin))
    await expect_error(resp, 403)
    resp = await client.post("/api/v1/breakers/x/open", headers=auth(operator))
    await expect_error(resp, 403)
    viewer = await new_key(client, "viewer", tenant="acme")
    resp = await client.get("/api/v1/queues", headers=auth(viewer))
    assert resp.status == 200


async def test_a_task_answers_to_the_breaker_it_names(
    make_client: MakeClient, probe: ProbeServer
) -> None:
    client = await make_client(**BREAKER)
    resp = await client.post("/api/v1/breakers/payments-api/open")
    assert resp.status == 200
    named = await submit(client, type="http", payload={"url": probe.url}, breaker="payments-api")
    assert named["breaker"] == "payments-api"
    plain = await submit(client, type="http", payload={"url": probe.url})
    assert plain["breaker"] is None
    await wait_status(client, plain["id"], "succeeded")
    assert len(probe.calls) == 1  # the plain task's host breaker is closed; payments-api not
    held = await wait_status(client, named["id"], "scheduled")
    assert held["attempt"] == 0
    await client.post("/api/v1/breakers/payments-api/reset")
    await wait_status(client, named["id"], "succeeded", timeout=10)
    resp = await client.post("/api/v1/tasks", json={"type": "noop", "breaker": "no spaces"})
    error = await expect_error(resp, 422)
    assert error["details"]["path"] == "$.breaker"


async def test_odd_requests_get_a_4xx_with_the_error_shape(client: Client) -> None:
    json_headers = {"Content-Type": "application/json"}
    for body, status in ((b"null", 422), (b"[1]", 422), (b'"x"', 422), (b"{}", 200)):
        resp = await client.patch("/api/v1/queues/q", data=body, headers=json_headers)
        if status == 200:
            assert resp.status == 200
        else:
            await expect_error(resp, status)
    await expect_error(await client.post("/api/v1/queues/" + "q" * 201 + "/pause"), 400)
    await expect_error(await client.post("/api/v1/tasks/cancel?status=nope"), 400)
    await expect_error(await client.post("/api/v1/tasks/retry?since=yesterday"), 400)
    resp = await client.post("/api/v1/tasks/retry", headers={"Idempotency-Key": "k" * 201})
    await expect_error(resp, 400)
    resp = await client.get("/api/v1/breakers")
    assert (await resp.json()) == {"enabled": True, "items": []}


async def test_the_submitting_request_id_goes_with_the_task(
    make_client: MakeClient, probe: ProbeServer
) -> None:
    client = await make_client(http_allow_private="127.0.0.1")
    resp = await client.post(
        "/api/v1/tasks",
        json={"type": "http", "payload": {"url": probe.url}},
        headers={"X-Request-ID": "req-42"},
    )
    task = await resp.json()
    assert task["request_id"] == "req-42"
    await wait_status(client, task["id"], "succeeded")
    assert probe.request_ids == ["req-42"]  # sent on the task's own call
    batch = await client.post("/api/v1/tasks/batch", json=[{"type": "noop"}] * 2)
    generated = batch.headers["X-Request-ID"]
    for task_id in (await batch.json())["ids"]:
        assert (await (await client.get(f"/api/v1/tasks/{task_id}")).json())[
            "request_id"
        ] == generated
