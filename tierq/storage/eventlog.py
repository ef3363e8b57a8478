"""The event log: every task event in publish order, kept for a retention window, readable
from any cursor. Distributed it is a Redis Stream all replicas share; embedded it is a SQLite
file beside the record store (PostgreSQL without Redis: a table in the record database).

Public methods do the shared work (filtering, paging, the reset rule); backends fill small
primitives. A cursor is the event's sequence number in the log (decimal digits, growing by
one per event); clients treat it as opaque. Every backend stores a published batch as one
entry (a JSON array numbered from its first cursor), so appending costs one row or one stream
entry per batch, not per event.

What must stay true: ``append_many`` of one batch is one round trip (one statement, or one
pipelined call); cursors only grow, in the order events were appended; a reader whose cursor
is older than what trimming removed, or newer than anything the log holds (the log was
lost and started again), is told so (``EventPage.reset``), never silently skipped past a gap.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import msgspec

from tierq.model import Event, EventFilter

MAX_CURSOR_DIGITS = 18
# Entries (published batches) read per primitive call.
ENTRIES_PER_READ = 100

encode_batch = msgspec.json.Encoder().encode
_decode_batch = msgspec.json.Decoder(list[Event]).decode


def entry_events(first: int, body: bytes, after: int) -> list[Event]:
    """The events of one stored batch (a JSON array whose i-th event has cursor ``first`` +
    i), those after ``after`` only, cursors set."""
    out = []
    for i, event in enumerate(_decode_batch(body)):
        cursor = first + i
        if cursor > after:
            event.cursor = str(cursor)
            out.append(event)
    return out


# One stored batch as a table keeps it: (cursor of its newest event, events in it, JSON array).
Row = tuple[int, int, bytes]


async def rows_after(
    fetch: Callable[[int, int], Awaitable[Sequence[Row]]], after: int, limit: int
) -> list[Event]:
    """About ``limit`` events after ``after`` from a table of batches (SQLite, PostgreSQL),
    read ``ENTRIES_PER_READ`` rows at a time: ``fetch(position, count)`` returns the rows
    whose newest cursor is above ``position``, oldest first."""
    events: list[Event] = []
    position = after
    while len(events) < limit:
        rows = await fetch(position, ENTRIES_PER_READ)
        for last, n, body in rows:
            events += entry_events(last - n + 1, bytes(body), after)
        if len(rows) < ENTRIES_PER_READ:
            break
        position = rows[-1][0]
    return events


# Entries read per primitive call while looking for matches of a filter.
SCAN_CHUNK = 1000


class BadCursor(ValueError):
    """A cursor this log did not make."""


@dataclass(slots=True, frozen=True)
class EventPage:
    events: list[Event]
    # Where the next read continues (the last entry looked at, matching or not). Equal to the
    # cursor asked for when nothing newer exists.
    next_cursor: str
    # Set when the cursor asked for is older than what trimming removed: the oldest cursor
    # still kept, and the page starts there.
    reset: str | None = None


def cursor_value(cursor: str) -> int:
    """The sequence number a cursor names; ``BadCursor`` if it is not one."""
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= MAX_CURSOR_DIGITS):
        raise BadCursor(f"not an event cursor: {cursor[:40]!r}")
    return int(cursor)


class EventLog(abc.ABC):
    """Shared work over a backend's primitives."""

    def __init__(self) -> None:
        # Same-process wake-up for backends without a blocking read: appends made by this
        # process (the only writer of such a log) count up and set the waiters' event.
        self._appends = 0
        self._appended: asyncio.Event | None = None

    async def open(self) -> None:  # noqa: B027 - optional
        """Connect; idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional
        """Release connections; idempotent."""

    async def append_many(self, events: Sequence[Event]) -> None:
        """Append one batch, in order, in one round trip."""
        if not events:
            return
        await self._append(events)
        self._appends += 1
        if self._appended is not None:
            self._appended.set()
            self._appended = None

    async def read_after(
        self, cursor: str | None, limit: int, flt: EventFilter | None = None
    ) -> EventPage:
        """Up to ``limit`` events after ``cursor`` (``None``: from the oldest kept) that match
        ``flt``. Looks at no more than ``limit`` x 10 entries, so a rare filter still answers
        promptly: the page may then be empty with ``next_cursor`` moved on."""
        reset: str | None = None
        after = 0
        if cursor is not None:
            after = cursor_value(cursor)
            trimmed = await self._trimmed_through()
            newest = await self._newest()
            if (trimmed is not None and after < trimmed) or after > (newest or 0):
                oldest = await self._oldest()
                reset = str(oldest if oldest is not None else (newest or 0))
                after = (oldest - 1) if oldest is not None else (newest or 0)
        position = after
        found: list[Event] = []
        budget = max(limit, 1) * 10
        while budget > 0 and len(found) < limit:
            events = await self._range_after(position, min(SCAN_CHUNK, budget))
            if not events:
                break
            budget -= len(events)
            for event in events:
                position = int(event.cursor)
                if flt is None or flt.matches(event):
                    found.append(event)
                    if len(found) == limit:
                        break
        return EventPage(found, str(position), reset)

    async def tail(self, cursor: str | None, limit: int, block_s: float) -> list[Event]:
        """Entries after ``cursor`` (``None``: after the newest now), waiting up to ``block_s``
        for one to arrive. The live stream's one reader per process calls this."""
        after = cursor_value(cursor) if cursor is not None else await self.end()
        seen = self._appends
        events = await self._range_after(after, limit)
        if not events:
            events = await self._wait_after(after, limit, block_s, seen)
        return events

    async def end(self) -> int:
        """The cursor of the newest event (0 when the log is empty)."""
        return await self._newest() or 0

    async def trim(self, now: float, max_age_s: float, max_count: int) -> None:
        """Drop events older than ``max_age_s``, and beyond the newest ``max_count``."""
        await self._trim(now - max_age_s, max_count)

    # ---- primitives --------------------------------------------------------------------

    @abc.abstractmethod
    async def _append(self, events: Sequence[Event]) -> None:
        """Store one batch in order, numbering its events on from the newest."""

    @abc.abstractmethod
    async def _range_after(self, after: int, limit: int) -> list[Event]:
        """About ``limit`` events numbered after ``after``, oldest first, cursors set (a
        backend storing a batch per entry may return a whole entry more)."""

    @abc.abstractmethod
    async def _newest(self) -> int | None: ...

    @abc.abstractmethod
    async def _oldest(self) -> int | None: ...

    @abc.abstractmethod
    async def _trimmed_through(self) -> int | None:
        """The newest cursor trimming has removed (None: nothing removed yet)."""

    @abc.abstractmethod
    async def _trim(self, older_than: float, max_count: int) -> None: ...

    async def _wait_after(self, after: int, limit: int, block_s: float, seen: int) -> list[Event]:
        """Block until something follows ``cursor``. Default: this process is the only
        writer, so its own appends (counted in ``_appends``; ``seen`` is the count before the
        read that found nothing) are the only thing that can wake it."""
        if self._appends == seen:
            if self._appended is None:
                self._appended = asyncio.Event()
            try:
                async with asyncio.timeout(block_s):
                    await self._appended.wait()
            except TimeoutError:
                return []
        return await self._range_after(after, limit)
