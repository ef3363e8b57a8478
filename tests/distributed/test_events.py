"""Events in distributed mode: one Redis Stream that every replica appends to, so a reader on
one replica sees what ran on another; a dead replica's leases come back as ``released``."""

from __future__ import annotations

import pytest

from tests.distributed.conftest import Cluster, freeze, make_task, submit, wait_for
from tierq.engine.engine import Engine
from tierq.model import Event

pytestmark = pytest.mark.distributed


async def all_events(engine: Engine) -> list[Event]:
    assert engine.bus.log is not None
    events: list[Event] = []
    cursor: str | None = None
    while True:
        page = await engine.bus.log.read_after(cursor, 1000)
        if not page.events:
            return events
        events += page.events
        cursor = page.next_cursor


def kinds_by_task(events: list[Event]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for event in events:
        out.setdefault(event.task_id, []).append(event.event)
    return out


async def test_a_reader_on_one_replica_sees_every_replicas_events(cluster: Cluster) -> None:
    # A small memory tier on a: most of what it is given waits in Redis, where b claims it.
    a = await cluster.engine("a", workers=2, memory_limit=2)
    b = await cluster.engine("b", workers=2, memory_limit=2)
    ids = await submit(a, *(make_task(a, payload={"sleep_ms": 30}) for _ in range(40)))

    async def finished() -> bool:
        seen = kinds_by_task(await all_events(a))
        return all(seen.get(i, [])[-1:] == ["succeeded"] for i in ids)

    await wait_for(finished, timeout=20)
    events = await all_events(a)
    assert kinds_by_task(events) == {i: ["submitted", "started", "succeeded"] for i in ids}
    runners = {e.node for e in events if e.event == "succeeded"}
    assert runners == {"a", "b"}  # both ran some, and a's reader saw b's
    assert {e.node for e in events if e.event == "submitted"} == {"a"}
    assert [int(e.cursor) for e in events] == list(range(1, len(events) + 1))
    assert [e.cursor for e in await all_events(b)] == [e.cursor for e in events]


async def test_a_dead_replicas_leases_are_released_then_run_again(cluster: Cluster) -> None:
    a = await cluster.engine("a", workers=2, memory_limit=10)
    ids = await submit(a, *(make_task(a, payload={"sleep_ms": 3000}) for _ in range(2)))
    await wait_for(lambda: a.workers.busy == 2, timeout=5)

    async def started() -> bool:
        return sum(e.event == "started" for e in await all_events(a)) == 2

    await wait_for(started, timeout=5)
    freeze(a)
    b = await cluster.engine("b", workers=2)

    async def succeeded_on_b() -> bool:
        seen = kinds_by_task(await all_events(b))
        return all(seen.get(i, [])[-1:] == ["succeeded"] for i in ids)

    await wait_for(succeeded_on_b, timeout=15)
    events = await all_events(b)
    assert kinds_by_task(events) == {
        i: ["submitted", "started", "released", "started", "succeeded"] for i in ids
    }
    released = [e for e in events if e.event == "released"]
    assert {e.node for e in released} == {"b"} and all(e.attempt == 1 for e in released)
    assert all(e.error and "expired" in e.error for e in released)
    assert all(e.type == "dummy" and e.queue == "default" for e in released)
