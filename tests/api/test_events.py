"""GET /api/v1/events (SSE and JSON pages) and GET /api/v1/tasks/{id}?wait_seconds=N, over
real HTTP against a real embedded server."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer

from tests.helpers import engine_with_event_log, poll_until
from tests.system.cluster import RedisServer
from tierq.api.app import create_app
from tierq.api.routes import ENGINE
from tierq.config import from_mapping
from tierq.storage.redis.events import RedisEventLog

from .conftest import BASE_SETTINGS, Client, MakeClient, submit, submit_batch, wait_status

JSON = {"Accept": "application/json"}


async def page(client: Client, **params: Any) -> dict[str, Any]:
    resp = await client.get("/api/v1/events", params=params, headers=JSON)
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def all_pages(client: Client, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = dict(params, limit=7, **({"after": cursor} if cursor else {}))
        body = await page(client, **query)
        if not body["items"]:
            return items
        items += body["items"]
        cursor = body["next_cursor"]


async def published(client: Client, task_id: str, kind: str = "succeeded") -> None:
    """Until the task's ``kind`` event is in the log (a task shows succeeded as soon as its
    handler returns; its event follows the flush that makes it durable)."""
    await poll_until(
        lambda: all_pages(client, task_id=task_id),
        lambda items: kind in [e["event"] for e in items],
        what=f"a {kind} event of {task_id}",
    )


class SSE:
    """Reads frames off a live response: (id, event, data) per frame, comments skipped."""

    def __init__(self, resp: Any) -> None:
        self.resp = resp
        self.comments = 0

    async def next(self, timeout: float = 10.0) -> tuple[str | None, str, dict[str, Any]]:
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.resp.content.readline()).decode().rstrip("\n")
                if line == "" and fields and "data" not in fields:
                    fields = {}  # a block of fields without data (retry:) is no event
                    continue
                if line == "" and fields:
                    return (
                        fields.get("id"),
                        fields.get("event", "message"),
                        orjson.loads(fields["data"]),
                    )
                if line.startswith(":"):
                    self.comments += 1
                elif line:
                    name, _, value = line.partition(": ")
                    fields[name] = value

    async def until(self, task_id: str, kind: str) -> list[tuple[str | None, str, dict[str, Any]]]:
        frames = []
        while True:
            frame = await self.next()
            frames.append(frame)
            if frame[2].get("task_id") == task_id and frame[1] == kind:
                return frames


async def test_json_pages_from_the_oldest_event_with_filters(client: Client) -> None:
    first = await submit(client, type="noop")
    failing = await submit(
        client, type="dummy", payload={"fail_always": True}, max_retries=0, queue="q2"
    )
    await published(client, first["id"])
    await published(client, failing["id"], "failed")
    items = await all_pages(client)
    by_task: dict[str, list[str]] = {}
    for item in items:
        by_task.setdefault(item["task_id"], []).append(item["event"])
    assert by_task == {
        first["id"]: ["submitted", "started", "succeeded"],
        failing["id"]: ["submitted", "started", "failed"],
    }
    cursors = [int(i["cursor"]) for i in items]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    done = next(i for i in items if i["event"] == "failed")
    assert done["error"].startswith("TaskError") and done["queue"] == "q2"
    assert done["at"].endswith("Z") and done["node"] == "test-node" and done["attempt"] == 1
    assert "payload" not in done and "result" not in done
    # Filters.
    only = await all_pages(client, task_id=first["id"])
    assert [i["event"] for i in only] == ["submitted", "started", "succeeded"]
    assert [i["task_id"] for i in await all_pages(client, event="failed,succeeded")] == [
        first["id"],
        failing["id"],
    ]
    assert {i["task_id"] for i in await all_pages(client, queue="q2")} == {failing["id"]}
    assert {i["task_id"] for i in await all_pages(client, type="noop")} == {first["id"]}


async def test_a_page_of_the_newest_events(client: Client) -> None:
    tasks = [await submit(client, type="noop") for _ in range(4)]
    for task in tasks:
        await published(client, task["id"])
    everything = await all_pages(client)
    resp = await client.get("/api/v1/events", params={"last": "3", "limit": "100"}, headers=JSON)
    newest = (await resp.json())["items"]
    assert [e["cursor"] for e in newest] == [e["cursor"] for e in everything[-3:]]
    resp = await client.get(
        "/api/v1/events", params={"last": "3", "task_id": tasks[-1]["id"]}, headers=JSON
    )
    last_three = [e["event"] for e in everything[-3:] if e["task_id"] == tasks[-1]["id"]]
    assert last_three and [e["event"] for e in (await resp.json())["items"]] == last_three


async def test_bad_event_parameters_are_400_with_the_parameter(client: Client) -> None:
    for params, name in (
        ({"event": "finished"}, "event"),
        ({"task_id": "nope"}, "task_id"),
        ({"after": "abc"}, "after"),
        ({"limit": "0"}, "limit"),
        ({"limit": "5000"}, "limit"),
        ({"last": "0"}, "last"),
        ({"last": "x"}, "last"),
        ({"last": "5", "after": "1"}, "last"),
    ):
        resp = await client.get("/api/v1/events", params=params, headers=JSON)
        body = await resp.json()
        assert resp.status == 400, (params, body)
        assert body["error"]["details"] == {"parameter": name}
    resp = await client.get("/api/v1/events", headers={"Last-Event-ID": "x1"})
    assert resp.status == 400
    assert (await resp.json())["error"]["details"] == {"parameter": "Last-Event-ID"}


async def test_a_stream_starts_live_and_sends_ids_types_and_data(client: Client) -> None:
    old = await submit(client, type="noop")
    await published(client, old["id"])
    async with client.get("/api/v1/events") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["X-Accel-Buffering"] == "no"
        assert resp.headers["Cache-Control"] == "no-cache"
        sse = SSE(resp)
        task = await submit(client, type="dummy", payload={"sleep_ms": 20})
        frames = await sse.until(task["id"], "succeeded")
    # Nothing from before the connection; the new task's events in order, ids growing.
    assert all(f[2]["task_id"] == task["id"] for f in frames)
    assert [f[1] for f in frames] == ["submitted", "started", "succeeded"]
    assert [f[2]["event"] for f in frames] == [f[1] for f in frames]
    ids = [int(f[0] or 0) for f in frames]
    assert ids == sorted(ids) and [f[2]["cursor"] for f in frames] == [f[0] for f in frames]
    assert frames[2][2]["duration_seconds"] >= 0.015


async def test_reconnecting_with_last_event_id_misses_nothing_and_repeats_nothing(
    client: Client,
) -> None:
    tasks = await submit_batch(client, [{"type": "noop"} for _ in range(30)])
    for task_id in tasks["ids"]:
        await published(client, task_id)
    everything = await all_pages(client)
    assert len(everything) == 90
    cut = everything[40]["cursor"]
    async with client.get("/api/v1/events", headers={"Last-Event-ID": cut}) as resp:
        sse = SSE(resp)
        got = [await sse.next() for _ in range(49)]
        late = await submit(client, type="noop")  # and then live, seamlessly
        got += await sse.until(late["id"], "succeeded")
    assert [f[0] for f in got[:49]] == [e["cursor"] for e in everything[41:]]
    assert [f[2]["task_id"] for f in got[49:]] == [late["id"]] * 3
    cursors = [int(f[0] or 0) for f in got]
    assert cursors == list(range(cursors[0], cursors[0] + len(cursors)))
    # ?after= works the same.
    async with client.get("/api/v1/events", params={"after": everything[88]["cursor"]}) as resp:
        frame = await SSE(resp).next()
    assert frame[0] == everything[89]["cursor"]


async def test_a_cursor_older_than_the_retention_gets_a_reset(make_client: MakeClient) -> None:
    client = await make_client(event_retention_count=10)
    for _ in range(10):  # one task at a time: small published batches (of one or two events)
        await published(client, (await submit(client, type="noop"))["id"])
    everything = await all_pages(client)
    assert len(everything) == 30
    engine = client.server.app[ENGINE]
    assert engine.trimmer is not None
    await engine.trimmer.run_once()
    kept = await all_pages(client)
    # Trimmed a whole batch at a time: the newest 10 events and at most the rest of their
    # oldest batch.
    assert 10 <= len(kept) <= 11
    assert [e["cursor"] for e in kept] == [e["cursor"] for e in everything[-len(kept) :]]
    async with client.get(
        "/api/v1/events", headers={"Last-Event-ID": everything[3]["cursor"]}
    ) as r:
        sse = SSE(r)
        reset = await sse.next()
        following = await sse.next()
    assert reset[1] == "reset" and reset[2] == {"oldest_cursor": kept[0]["cursor"]}
    assert int(reset[0] or 0) == int(kept[0]["cursor"]) - 1
    assert following[0] == kept[0]["cursor"]
    body = await page(client, after=everything[3]["cursor"])
    assert body["reset"] == {"oldest_cursor": kept[0]["cursor"]}
    assert body["items"][0]["cursor"] == kept[0]["cursor"]


async def test_a_stalled_client_is_disconnected_with_bounded_memory(
    make_client: MakeClient,
) -> None:
    client = await make_client(event_client_buffer=100)
    engine = client.server.app[ENGINE]
    # A raw connection that never reads, with a tiny receive window.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (client.host, client.port))
    await loop.sock_sendall(sock, b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        deadline = time.monotonic() + 5
        while engine.feed.listeners == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        for _ in range(20):
            await submit_batch(client, [{"type": "noop"} for _ in range(500)])
            if engine.feed.listeners == 0:
                break
        deadline = time.monotonic() + 10
        while engine.feed.listeners:
            assert time.monotonic() < deadline, "the stalled client was never dropped"
            await asyncio.sleep(0.05)
    finally:
        sock.close()
    # A client that reads keeps its stream.
    async with client.get("/api/v1/events") as resp:
        sse = SSE(resp)
        task = await submit(client, type="noop")
        await sse.until(task["id"], "succeeded")


async def test_wait_seconds_answers_when_the_task_ends(client: Client) -> None:
    task = await submit(client, type="dummy", payload={"sleep_ms": 300})
    started = time.monotonic()
    resp = await client.get(f"/api/v1/tasks/{task['id']}", params={"wait_seconds": "10"})
    body = await resp.json()
    took = time.monotonic() - started
    assert resp.status == 200 and body["status"] == "succeeded"
    assert took < 5
    # Not finishing in time: its state after the wait.
    later = await submit(client, type="noop", delay_seconds=3600)
    started = time.monotonic()
    resp = await client.get(f"/api/v1/tasks/{later['id']}", params={"wait_seconds": "0.3"})
    assert (await resp.json())["status"] == "scheduled"
    assert time.monotonic() - started >= 0.29
    # Already finished: at once.
    resp = await client.get(f"/api/v1/tasks/{task['id']}", params={"wait_seconds": "60"})
    assert (await resp.json())["status"] == "succeeded"
    for bad in ("61", "-1", "soon", "nan"):
        resp = await client.get(f"/api/v1/tasks/{task['id']}", params={"wait_seconds": bad})
        assert resp.status == 400, bad
        assert (await resp.json())["error"]["details"] == {"parameter": "wait_seconds"}


async def test_with_the_log_off_events_are_404_and_waits_still_work(
    make_client: MakeClient,
) -> None:
    client = await make_client(event_log=False)
    resp = await client.get("/api/v1/events", headers=JSON)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "event_log_off"
    task = await submit(client, type="dummy", payload={"sleep_ms": 100})
    resp = await client.get(f"/api/v1/tasks/{task['id']}", params={"wait_seconds": "10"})
    assert (await resp.json())["status"] == "succeeded"


async def test_streams_while_the_event_log_is_down_and_after_it_lost_its_data(
    tmp_path: Path,
) -> None:
    """The event log is a real redis-server, killed and restarted empty: while it is down a
    new stream is refused with 503 (before any header is sent) and tasks go on; a stream open
    across the loss is ended, and reconnecting with its last cursor gets an explicit reset."""
    server = RedisServer(tmp_path)
    server.start()
    settings = from_mapping(
        {**BASE_SETTINGS, "database_url": "sqlite:///" + str(tmp_path / "t.db")}
    )
    engine = engine_with_event_log(settings, RedisEventLog(server.url, "t"))
    client = TestClient(TestServer(create_app(settings, engine=engine)))
    await client.start_server()
    try:
        for _ in range(3):
            await published(client, (await submit(client, type="noop"))["id"])
        async with client.get("/api/v1/events", headers={"Last-Event-ID": "0"}) as live:
            sse = SSE(live)
            frames = [await sse.next() for _ in range(9)]
            last = frames[-1][0]
            assert last == "9"
            server.kill()
            resp = await client.get("/api/v1/events")
            assert resp.status == 503 and resp.headers["Retry-After"]
            during = await submit(client, type="noop")  # tasks do not wait for the log
            await wait_status(client, during["id"], "succeeded")
            server.start_on_same_port()  # empty: the log numbers from 1 again
            # The open stream ends (its cursor now names other events).
            async with asyncio.timeout(15):
                while await live.content.readline():
                    pass
        async with client.get("/api/v1/events", headers={"Last-Event-ID": last}) as resp:
            reset = await SSE(resp).next()
        assert reset[1] == "reset"
    finally:
        await client.close()
        server.kill()
