"""The Redis Stream's documented entry format (tierq/storage/redis/events.py), read the way
another program would: a consumer group on the stream, plain XREADGROUP, no tierq code."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from redis import asyncio as aioredis

from tests.helpers import REDIS_URL, purge_redis_prefix
from tierq.model import Event
from tierq.storage.redis.events import RedisEventLog

NOW = 1_700_000_000.0


@pytest.fixture
async def log_and_prefix() -> AsyncIterator[tuple[RedisEventLog, str]]:
    prefix = f"test-events-{uuid.uuid4().hex[:8]}"
    log = RedisEventLog(REDIS_URL, prefix)
    await log.open()
    try:
        yield log, prefix
    finally:
        await log.close()
        await purge_redis_prefix(prefix)


async def test_a_consumer_group_reads_every_event_with_its_cursor(
    log_and_prefix: tuple[RedisEventLog, str],
) -> None:
    log, prefix = log_and_prefix
    stream = "{" + prefix + "}:events"
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.xgroup_create(stream, "billing", id="0", mkstream=True)
        await log.append_many([Event(NOW, "submitted", "t1", "q", "noop", 5, 0, "n1")])
        await log.append_many(
            [
                Event(NOW + 1, "started", "t1", "q", "noop", 5, 1, "n1"),
                Event(NOW + 2, "succeeded", "t1", "q", "noop", 5, 1, "n1", duration_s=1.0),
            ]
        )
        reply = await client.xreadgroup("billing", "worker-1", {stream: ">"}, count=10)
        ((_, entries),) = reply
        seen = []
        for entry_id, fields in entries:
            first = int(entry_id.split(b"-")[0])
            events = orjson.loads(fields[b"events"])
            assert int(fields[b"n"]) == len(events)
            assert float(fields[b"at"]) == events[-1]["at"]
            seen += [(first + i, e["event"], e["task_id"]) for i, e in enumerate(events)]
            await client.xack(stream, "billing", entry_id)
        assert seen == [(1, "submitted", "t1"), (2, "started", "t1"), (3, "succeeded", "t1")]
        # The cursors are the ones tierq's own readers see.
        page = await log.read_after(None, 10)
        assert [int(e.cursor) for e in page.events] == [1, 2, 3]
        assert await client.get(stream + ":seq") == b"3"
        # Acknowledged: nothing pending for the group.
        pending = await client.xpending(stream, "billing")
        assert pending["pending"] == 0
    finally:
        await client.aclose()
