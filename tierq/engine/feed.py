"""The live feed: one reader of the event log per process, fanning what it reads out to the
listeners of this process (live streams, requests waiting for a task to finish).

One reader, not one per listener: fifty streams cost one tail of the log. It reads only while
someone listens (an idle replica decodes nothing). Distributed, the log is the Redis Stream
all replicas append to, so a listener here hears about tasks that ran elsewhere; with the log
off, the feed hears this process's own events from the bus (no cursors, nothing to resume).

What must stay true: a listener never misses an event published after ``listen`` returned
(the feed's position is fixed before the listener is added); memory is bounded: a listener
that still holds more than ``buffer`` events when the next batch comes is marked
``overflowed`` (its buffer dropped; it then holds at most ``buffer`` + one batch).
Whoever consumes it then either reads what it missed from the log or gives up (a stream
disconnects its client, which resumes from its cursor).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence

from tierq.engine.events import Batch, EventBus
from tierq.engine.service import Service
from tierq.model import Event, EventFilter
from tierq.storage.eventlog import EventLog

# How long one tail of the log blocks: the longest a stop waits for the reader.
TAIL_BLOCK_S = 1.0
TAIL_LIMIT = 1000


class Listener:
    """Events for one consumer, filtered, in log order."""

    def __init__(self, flt: EventFilter | None, limit: int) -> None:
        self.filter = flt
        self.limit = limit
        self.buffer: deque[Event] = deque()
        self.overflowed = False
        self.closed = False
        # Called when the buffer overflows (a live stream closes its connection here: its
        # writer may be blocked on a client that reads nothing).
        self.on_overflow: Callable[[], None] | None = None
        self._ready = asyncio.Event()

    def offer(self, events: Sequence[Event]) -> None:
        if self.overflowed:
            return
        if len(self.buffer) > self.limit:
            # Still holding more than ``limit`` events from earlier offers: it has fallen
            # behind (a batch arriving at once is no sign of that; it may be larger).
            self.buffer.clear()
            self.overflowed = True
            self._ready.set()
            if self.on_overflow is not None:
                self.on_overflow()
            return
        flt = self.filter
        added = False
        for event in events:
            if flt is None or flt.matches(event):
                self.buffer.append(event)
                added = True
        if added:
            self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def take(self, wait_s: float) -> list[Event]:
        """What arrived since the last take, waiting up to ``wait_s`` for something (or
        for ``overflowed`` / ``closed``, which the caller checks)."""
        if not self.buffer and not self.overflowed and not self.closed:
            try:
                async with asyncio.timeout(wait_s):
                    await self._ready.wait()
            except TimeoutError:
                pass
        self._ready.clear()
        events = list(self.buffer)
        self.buffer.clear()
        return events


class EventFeed(Service):
    name = "event-feed"

    def __init__(
        self,
        event_log: EventLog | None,
        bus: EventBus,
        buffer: int,
        block_s: float = TAIL_BLOCK_S,
    ) -> None:
        super().__init__()
        self.log = event_log
        self._buffer = buffer
        self._block_s = block_s
        self._listeners: set[Listener] = set()
        # The newest cursor fanned out; None while nobody listens.
        self.position: int | None = None
        # The tail in flight, cancelled when the last listener leaves or the feed stops (a
        # blocked tail would otherwise hold a stop for up to ``block_s``).
        self._tail: asyncio.Task[list[Event]] | None = None
        if event_log is None:
            bus.subscribe(self._on_local)

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    async def listen(self, flt: EventFilter | None = None) -> Listener:
        """A listener for every event from now on (those after ``position``)."""
        if self.log is not None and self.position is None:
            self.position = await self.log.end()
        listener = Listener(flt, self._buffer)
        self._listeners.add(listener)
        self.wake()
        return listener

    def unlisten(self, listener: Listener) -> None:
        self._listeners.discard(listener)
        if not self._listeners:
            self.position = None
            self._cancel_tail()

    def request_stop(self) -> None:
        super().request_stop()
        self._cancel_tail()

    def _cancel_tail(self) -> None:
        if self._tail is not None:
            self._tail.cancel()

    def close_all(self) -> None:
        """Shutdown: every consumer ends (streams close, so the server can stop)."""
        for listener in list(self._listeners):
            listener.close()

    def next_wait(self) -> float | None:
        return 0 if self._listeners and self.log is not None else None

    async def run_once(self) -> None:
        if not self._listeners or self.log is None or self.position is None:
            return
        position = self.position
        self._tail = asyncio.ensure_future(self.log.tail(str(position), TAIL_LIMIT, self._block_s))
        try:
            events = await self._tail
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this service itself is being cancelled
            return  # only the tail was: nobody listens any more, or the feed stops
        finally:
            self._tail = None
        if self.position is None:  # everyone left meanwhile
            return
        if not events:
            end = await self.log.end()
            if end < position:
                # The log lost its data and numbers from 1 again: every listener's cursor now
                # names other events. They are ended (a stream's client reconnects and gets
                # an explicit reset), and the feed follows the new numbering.
                self.position = end
                self.close_all()
            return
        self.position = int(events[-1].cursor)
        for listener in list(self._listeners):
            listener.offer(events)

    def _on_local(self, batch: Batch) -> None:
        if self._listeners:
            for listener in list(self._listeners):
                listener.offer(batch.events)
