"""One suite for every event log backend: SQLite file, PostgreSQL table, Redis Stream.

Each test runs against the real server (or file) through the ``event_log`` fixture; none is
skipped. Times are injected (events carry their own ``at``; trimming takes ``now``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import REDIS_URL, postgres_store_in_fresh_schema, purge_redis_prefix
from tierq.model import Event, EventFilter
from tierq.storage.eventlog import BadCursor, EventLog

NOW = 1_700_000_000.0


@pytest.fixture(params=["sqlite", "postgres", "redis"])
async def event_log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventLog]:
    if request.param == "sqlite":
        from tierq.storage.sqlite.events import SQLiteEventLog

        log: EventLog = SQLiteEventLog(str(tmp_path / "events.db"))
        await log.open()
        try:
            yield log
        finally:
            await log.close()
    elif request.param == "postgres":
        from tierq.storage.postgres.events import PostgresEventLog

        stores = postgres_store_in_fresh_schema()
        store = await stores.__anext__()
        log = PostgresEventLog(store._dsn, schema=store._schema)
        await log.open()
        try:
            yield log
        finally:
            await log.close()
            await stores.aclose()
    else:
        from tierq.storage.redis.events import RedisEventLog

        prefix = f"test-events-{uuid.uuid4().hex[:8]}"
        log = RedisEventLog(REDIS_URL, prefix)
        await log.open()
        try:
            yield log
        finally:
            await log.close()
            await purge_redis_prefix(prefix)


def ev(i: int, kind: str = "succeeded", queue: str = "default", at: float | None = None) -> Event:
    return Event(
        NOW + i if at is None else at,
        kind,
        f"task-{i}",
        queue,
        "noop",
        5,
        1,
        "node-a",
    )


async def test_events_read_back_in_order_with_growing_cursors(event_log: EventLog) -> None:
    await event_log.append_many([ev(1), ev(2, "started")])
    await event_log.append_many([ev(3, "failed")])
    page = await event_log.read_after(None, 10)
    assert [e.task_id for e in page.events] == ["task-1", "task-2", "task-3"]
    cursors = [int(e.cursor) for e in page.events]
    assert cursors == sorted(cursors) and len(set(cursors)) == 3
    assert [cursors[1] - cursors[0], cursors[2] - cursors[1]] == [1, 1]
    assert page.next_cursor == page.events[-1].cursor and page.reset is None
    assert page.events[1].event == "started" and page.events[0].at == NOW + 1
    assert await event_log.end() == cursors[-1]


async def test_read_after_resumes_exactly_after_a_cursor(event_log: EventLog) -> None:
    await event_log.append_many([ev(i) for i in range(1, 8)])  # one batch (one entry in Redis)
    first = await event_log.read_after(None, 3)
    assert [e.task_id for e in first.events] == ["task-1", "task-2", "task-3"]
    # Resuming inside a batch: nothing twice, nothing missed.
    second = await event_log.read_after(first.next_cursor, 3)
    assert [e.task_id for e in second.events] == ["task-4", "task-5", "task-6"]
    third = await event_log.read_after(second.next_cursor, 3)
    assert [e.task_id for e in third.events] == ["task-7"]
    empty = await event_log.read_after(third.next_cursor, 3)
    assert empty.events == [] and empty.next_cursor == third.next_cursor and empty.reset is None


async def test_filters_match_and_the_cursor_moves_past_what_they_skip(
    event_log: EventLog,
) -> None:
    await event_log.append_many(
        [ev(1, queue="a"), ev(2, "failed", queue="b"), ev(3, queue="b"), ev(4, "failed")]
    )
    page = await event_log.read_after(None, 10, EventFilter(queue="b"))
    assert [e.task_id for e in page.events] == ["task-2", "task-3"]
    failed = await event_log.read_after(None, 10, EventFilter(events=frozenset({"failed"})))
    assert [e.task_id for e in failed.events] == ["task-2", "task-4"]
    one = await event_log.read_after(None, 10, EventFilter(task_id="task-3"))
    assert [e.task_id for e in one.events] == ["task-3"]
    # Nothing matches: the page is empty but the cursor has moved to the end.
    none = await event_log.read_after(None, 10, EventFilter(type="other"))
    assert none.events == [] and int(none.next_cursor) == await event_log.end()


async def test_trim_by_count_keeps_the_newest_and_resets_older_cursors(
    event_log: EventLog,
) -> None:
    for i in range(1, 11):
        await event_log.append_many([ev(i)])  # ten batches of one
    everything = (await event_log.read_after(None, 100)).events
    await event_log.trim(NOW + 20, max_age_s=3600, max_count=4)
    kept = (await event_log.read_after(None, 100)).events
    assert [e.task_id for e in kept] == ["task-7", "task-8", "task-9", "task-10"]
    # A cursor older than what was trimmed: told so, with the oldest cursor kept.
    page = await event_log.read_after(everything[2].cursor, 100)
    assert page.reset == kept[0].cursor
    assert [e.task_id for e in page.events] == ["task-7", "task-8", "task-9", "task-10"]
    # The newest cursor trimmed is no gap: its next event is kept.
    page = await event_log.read_after(everything[5].cursor, 100)
    assert page.reset is None and page.events[0].task_id == "task-7"


async def test_trim_by_age(event_log: EventLog) -> None:
    await event_log.append_many([ev(1, at=NOW - 7200)])
    await event_log.append_many([ev(2, at=NOW - 10)])
    await event_log.trim(NOW, max_age_s=3600, max_count=1000)
    assert [e.task_id for e in (await event_log.read_after(None, 10)).events] == ["task-2"]


async def test_a_cursor_beyond_the_log_resets(event_log: EventLog) -> None:
    """A log that lost its data (Redis restarted empty) starts numbering again: a client's
    newer cursor is reset, never left waiting for numbers that will mean other events."""
    await event_log.append_many([ev(1)])
    page = await event_log.read_after("999999", 10)
    assert page.reset is not None and [e.task_id for e in page.events] == ["task-1"]


async def test_bad_cursors_are_refused(event_log: EventLog) -> None:
    for bad in ("", "abc", "-1", "1-0", "9" * 30, "١٢"):
        with pytest.raises(BadCursor):
            await event_log.read_after(bad, 10)


async def test_tail_waits_for_the_next_append(event_log: EventLog) -> None:
    await event_log.append_many([ev(1)])
    end = str(await event_log.end())
    started = time.monotonic()
    assert await event_log.tail(end, 100, block_s=0.2) == []
    assert time.monotonic() - started >= 0.15

    async def append_later() -> None:
        await asyncio.sleep(0.05)
        await event_log.append_many([ev(2), ev(3)])

    appender = asyncio.create_task(append_later())
    got = await event_log.tail(end, 100, block_s=5.0)
    await appender
    assert [e.task_id for e in got] == ["task-2", "task-3"]
    # Without a cursor: from the live end (nothing already in the log).
    assert await event_log.tail(None, 100, block_s=0.05) == []


async def test_a_large_batch_reads_back_whole_across_pages(event_log: EventLog) -> None:
    await event_log.append_many([ev(i) for i in range(2500)])
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await event_log.read_after(cursor, 1000)
        if not page.events:
            break
        seen += [e.task_id for e in page.events]
        cursor = page.next_cursor
    assert seen == [f"task-{i}" for i in range(2500)]
