"""The distributed event log: one Redis Stream that every replica appends to and reads.

Entry format, for other programs reading the stream (with XREAD or a consumer group):

- stream ``{<prefix>}:events`` (braces included: the deployment's hash slot); one entry
  per published batch (one round trip per batch);
- entry id ``<first>-0``: ``<first>`` is the cursor (sequence number) of the batch's first
  event; the i-th event of the entry (from 0) has cursor ``<first> + i``;
- fields: ``n`` (events in the entry), ``at`` (time of its newest event, seconds since the
  Unix epoch), ``events`` (a JSON array of event objects: ``tierq.model.Event``, without
  ``cursor``);
- ``{<prefix>}:events:seq`` is the newest cursor handed out, ``{<prefix>}:events:trimmed``
  the newest cursor trimming removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tierq.model import Event
from tierq.storage.base import StoreUnavailable
from tierq.storage.eventlog import ENTRIES_PER_READ, EventLog, encode_batch, entry_events
from tierq.storage.redis.core import TRANSIENT, connect, eval_script
from tierq.storage.redis.scripts import SCRIPTS, LuaScript

_APPEND = SCRIPTS["events_append"]
_TRIM = SCRIPTS["events_trim"]
# Entries the trim script looks at per call.
TRIM_STEP = 1000


class RedisEventLog(EventLog):
    def __init__(self, url: str, prefix: str) -> None:
        super().__init__()
        self._url = url
        # In the dispatch tier's hash slot ({prefix}), like every other key of a deployment.
        self.stream = "{" + prefix + "}:events"
        self.counter = self.stream + ":seq"
        self.trimmed_key = self.stream + ":trimmed"
        self._client: Any = None

    async def open(self) -> None:
        if self._client is None:
            self._client = connect(self._url)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _redis(self) -> Any:
        if self._client is None:
            raise StoreUnavailable("event log is not open")
        return self._client

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except TRANSIENT as exc:
            raise StoreUnavailable(f"redis event log: {exc}") from exc

    async def _script(self, script: LuaScript, keys: list[str], *args: Any) -> Any:
        return await self._call(eval_script(self._redis(), script, keys, *args))

    async def _append(self, events: Sequence[Event]) -> None:
        await self._script(
            _APPEND, [self.stream, self.counter], len(events), encode_batch(events), events[-1].at
        )

    @staticmethod
    def _unpack(rows: list[Any], after: int) -> list[Event]:
        out: list[Event] = []
        for entry_id, fields in rows:
            out += entry_events(int(entry_id.split(b"-", 1)[0]), fields[b"events"], after)
        return out

    async def _range_after(self, after: int, limit: int) -> list[Event]:
        redis = self._redis()
        # The entry holding event after + 1 may start before it: the newest entry whose first
        # event is at most after + 1, then the entries following it, a few at a time (an
        # entry holds a whole batch: from one event to thousands).
        head = await self._call(redis.xrevrange(self.stream, f"{after + 1}-0", "-", count=1))
        start = head[0][0].decode() if head else "-"
        step = max(1, min(ENTRIES_PER_READ, limit))
        rows = await self._call(redis.xrange(self.stream, start, "+", count=step))
        events = self._unpack(rows, after)
        while len(events) < limit and len(rows) == step:
            start = "(" + rows[-1][0].decode()
            rows = await self._call(redis.xrange(self.stream, start, "+", count=step))
            events += self._unpack(rows, after)
        return events

    async def _wait_after(self, after: int, limit: int, block_s: float, seen: int) -> list[Event]:
        # Other replicas append too: XREAD BLOCK wakes on any of them. Nothing follows
        # ``after`` now, so any newer entry starts after it.
        reply = await self._call(
            self._redis().xread(
                {self.stream: f"{after}-0"},
                count=max(1, min(ENTRIES_PER_READ, limit)),
                block=max(1, int(block_s * 1000)),
            )
        )
        if not reply:
            return []
        return self._unpack(reply[0][1], after)

    async def _newest(self) -> int | None:
        value = await self._call(self._redis().get(self.counter))
        return int(value) if value else None

    async def _oldest(self) -> int | None:
        rows = await self._call(self._redis().xrange(self.stream, "-", "+", count=1))
        return int(rows[0][0].split(b"-", 1)[0]) if rows else None

    async def _trimmed_through(self) -> int | None:
        value = await self._call(self._redis().get(self.trimmed_key))
        return int(value) if value else None

    async def _trim(self, older_than: float, max_count: int) -> None:
        keys = [self.stream, self.counter, self.trimmed_key]
        while await self._script(_TRIM, keys, older_than, max_count, TRIM_STEP) == 1:
            pass
