"""Task events: made once, where a batch became durable, and handed to every subscriber.

The engine publishes at the places where a change is durable and nowhere else: the committer
(a group of submissions committed), the flusher (a batch of transitions written), and the few
direct record writes (a cancel in the tiers, dependents cancelled, a retry). ``EventSource``
turns those batches into events; ``EventBus.publish`` calls each subscriber once with the
whole batch and hands it to the ``LogWriter``, which appends what was published meanwhile to
the event log in publish order, one round trip per append however many batches it holds.
Publishing therefore never waits for the log: neither a submission nor a flush pays for it.

What must stay true: an event is published after the change it reports is durable, never
before; each change is published once by the process that made it; the log receives this
process's events in publish order (so in order per task); a subscriber that fails is logged
and skipped, never allowed to fail the write that preceded it (the change is durable
already) or the other subscribers; the log writer's backlog is bounded (past it the oldest
unwritten events are dropped and counted: the tasks' changes stand, a stream misses them).
``CancelledError`` is never swallowed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from tierq.engine.service import Service
from tierq.model import (
    EVENT_ERROR_CHARS,
    Event,
    EventType,
    Outcome,
    Task,
    TaskState,
    Transition,
)
from tierq.storage.eventlog import EventLog

log = logging.getLogger("tierq.engine")

# The trimmer's interval: trimming is maintenance, a minute late costs a minute of retention.
TRIM_INTERVAL_S = 60.0


# The most attempts remembered as started (far above the tasks one process runs at once).
MAX_STARTED = 200_000
# The log writer's most events waiting to be appended (a log that is down for long).
MAX_UNWRITTEN = 200_000
# The most events in one append.
APPEND_BATCH = 10_000
# How long the log writer lets published batches gather after an append before the next
# (unless a full append is waiting): fewer, larger appends, at most this much later in a
# live stream.
APPEND_INTERVAL_S = 0.02


class Batch:
    """Events published together and, in this process, the task each is about as this
    process knew it then (``None`` for an event not about a task): for subscribers that need
    more than an event carries (notifications)."""

    __slots__ = ("events", "tasks")

    def __init__(self, events: list[Event], tasks: list[Task | None]) -> None:
        self.events = events
        self.tasks = tasks

    def __len__(self) -> int:
        return len(self.events)


Subscriber = Callable[[Batch], Awaitable[None] | None]

_BY_STATE: dict[TaskState, EventType] = {
    TaskState.RUNNING: EventType.STARTED,
    TaskState.SUCCEEDED: EventType.SUCCEEDED,
    TaskState.FAILED: EventType.FAILED,
    TaskState.CANCELLED: EventType.CANCELLED,
}
# The same, as the plain strings events carry (the hot path skips the enum's value lookup).
_KIND_BY_STATE: dict[TaskState, str] = {state: kind.value for state, kind in _BY_STATE.items()}
_ATTEMPT_FAILED = frozenset({Outcome.FAILED, Outcome.TIMED_OUT})
_RELEASED = frozenset({Outcome.ABANDONED, Outcome.INTERRUPTED})


def event_type_of(transition: Transition) -> EventType | None:
    """The event a durable transition is, or None (a delay that came due is no event)."""
    kind = _BY_STATE.get(transition.state)
    if kind is not None:
        return kind
    if transition.state is TaskState.SCHEDULED and transition.outcome in _ATTEMPT_FAILED:
        return EventType.ATTEMPT_FAILED
    if transition.state is TaskState.QUEUED and transition.outcome in _RELEASED:
        return EventType.RELEASED
    return None


def _summary(error: str | None) -> str | None:
    if error is None:
        return None
    first = error.split("\n", 1)[0]
    return first[:EVENT_ERROR_CHARS]


class EventSource:
    """Makes the events of durable batches, on behalf of this node."""

    def __init__(self, node_id: str, clock: Callable[[], float]) -> None:
        self._node = node_id
        self._clock = clock
        # Attempts whose ``started`` was published here and that have not ended yet: an
        # attempt whose start and end were coalesced into one write (a short task), or
        # that never reported a start (an instant handler), gets its ``started`` with its
        # end. Bounded by the tasks running here.
        self._started: set[tuple[str, int]] = set()

    def _make(
        self,
        kind: EventType,
        task: Task,
        at: float,
        attempt: int | None = None,
        error: str | None = None,
        duration_s: float | None = None,
        retry_at: float | None = None,
    ) -> Event:
        return Event(
            at,
            kind.value,
            task.id,
            task.queue,
            task.type,
            task.priority,
            task.attempt if attempt is None else attempt,
            self._node,
            task.tenant,
            error,
            duration_s,
            retry_at,
        )

    def about(self, tasks: Iterable[Task], kind: EventType) -> Batch:
        """One ``kind`` event per task, at each task's last change."""
        listed = list(tasks)
        cancelled = kind is EventType.CANCELLED
        events = [
            self._make(
                kind, task, task.updated_at, error=_summary(task.last_error) if cancelled else None
            )
            for task in listed
        ]
        return Batch(events, list[Task | None](listed))

    def flushed(
        self, transitions: Sequence[Transition], looked_up: Mapping[str, Task] | None = None
    ) -> Batch:
        """The events of a written batch of transitions, in the batch's order (so in order
        per task). Each transition's task is its ``task``, else in ``looked_up``.

        Once per state change on the hot path: events are built inline, kinds are plain
        strings, and the started-set is touched only while long tasks are running."""
        out: list[Event] = []
        about: list[Task | None] = []
        started = self._started
        node = self._node
        by_state = _KIND_BY_STATE
        interrupted = Outcome.INTERRUPTED
        for t in transitions:
            kind = by_state.get(t.state)
            if kind is None:
                other = event_type_of(t)
                if other is None:
                    continue
                kind = other.value
            task = t.task
            if task is None:
                task = looked_up.get(t.task_id) if looked_up else None
                if task is None:
                    continue  # gone from the record tier (cannot happen short of a purge)
            attempt = t.attempt
            if kind == "started":
                key = (t.task_id, attempt)
                if key not in started:
                    if len(started) >= MAX_STARTED:
                        # Ends that never came (reports refused as stale): forget them; the
                        # cost is a repeated ``started`` for attempts running now.
                        started.clear()
                    started.add(key)
                    out.append(
                        Event(
                            t.at,
                            kind,
                            task.id,
                            task.queue,
                            task.type,
                            task.priority,
                            attempt,
                            node,
                            task.tenant,
                        )
                    )
                    about.append(task)
                continue
            started_at = t.started_at
            if started_at is not None and (kind != "released" or t.outcome is interrupted):
                if started and (t.task_id, attempt) in started:
                    started.discard((t.task_id, attempt))
                else:
                    # Its start and end were written together (or it reported no start).
                    out.append(
                        Event(
                            started_at,
                            "started",
                            task.id,
                            task.queue,
                            task.type,
                            task.priority,
                            attempt,
                            node,
                            task.tenant,
                        )
                    )
                    about.append(task)
            elif started:
                started.discard((t.task_id, attempt))
            finished_at = t.finished_at
            duration = None
            if started_at is not None and finished_at is not None and kind != "released":
                duration = round(finished_at - started_at, 6)
            error = t.error
            out.append(
                Event(
                    t.at,
                    kind,
                    task.id,
                    task.queue,
                    task.type,
                    task.priority,
                    attempt,
                    node,
                    task.tenant,
                    None if error is None or kind == "succeeded" else _summary(error),
                    duration,
                    t.run_at if kind == "attempt_failed" else None,
                )
            )
            about.append(task)
        return Batch(out, about)

    def submitted(self, tasks: Sequence[Task]) -> Batch:
        node = self._node
        events = [
            Event(t.created_at, "submitted", t.id, t.queue, t.type, t.priority, 0, node, t.tenant)
            for t in tasks
        ]
        return Batch(events, list[Task | None](tasks))

    def retried(self, tasks: Sequence[Task]) -> Batch:
        make, kind = self._make, EventType.RETRIED
        return Batch([make(kind, t, t.updated_at) for t in tasks], list[Task | None](tasks))

    def webhook_disabled(self, subscription_id: str, reason: str) -> Batch:
        event = Event(self._clock(), EventType.WEBHOOK_DISABLED.value, node=self._node)
        event.subscription_id = subscription_id
        event.error = _summary(reason)
        return Batch([event], [None])

    def flow(self, kind: EventType, *, breaker: str | None = None, queue: str = "") -> Batch:
        """A breaker changed state, or a queue was paused or resumed."""
        event = Event(self._clock(), kind.value, queue=queue, node=self._node)
        event.breaker = breaker
        return Batch([event], [None])


class Forwarder(Service):
    """Sends published events on (to the event log, or to an external sink), in publish
    order, in as few calls as the receiver's speed allows: what was published while one call
    was in flight goes in the next. A failed call is retried with everything kept, in order
    (bounded by ``max_unwritten``: past it the oldest are dropped, counted and logged)."""

    def __init__(
        self,
        name: str,
        send: Callable[[list[Event]], Awaitable[None]],
        on_failure: Callable[[], None] | None = None,
        max_unwritten: int = MAX_UNWRITTEN,
    ) -> None:
        super().__init__()
        self.name = name
        self._send = send
        self._on_failure = on_failure
        self._max_unwritten = max_unwritten
        self._unwritten: deque[Event] = deque()
        self._appending: list[Event] | None = None
        self._lock: asyncio.Lock | None = None

    def __call__(self, batch: Batch) -> None:
        """As a bus subscriber."""
        self.add(batch.events)

    @property
    def backlog(self) -> int:
        return len(self._unwritten) + (len(self._appending) if self._appending else 0)

    def add(self, events: Sequence[Event]) -> None:
        unwritten = self._unwritten
        # Woken by the first events after an idle spell (appended at once); while appends
        # keep coming, the writer waits ``APPEND_INTERVAL_S`` between them (``next_wait``),
        # less when a full append is waiting.
        idle = not unwritten and self._appending is None
        unwritten.extend(events)
        if idle or len(unwritten) >= APPEND_BATCH:
            self.wake()
        excess = len(unwritten) - self._max_unwritten
        if excess > 0:
            for _ in range(excess):
                unwritten.popleft()
            if self._on_failure is not None:
                self._on_failure()
            log.warning("%s: %d unsent events dropped (the receiver is behind)", self.name, excess)

    def next_wait(self) -> float | None:
        if not self._unwritten:
            return None
        return 0 if len(self._unwritten) >= APPEND_BATCH else APPEND_INTERVAL_S

    async def run_once(self) -> None:
        """Append what was published before this call (callers that need it in the log,
        such as tests and shutdown, await it)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while self._unwritten:
                unwritten = self._unwritten
                take = min(len(unwritten), APPEND_BATCH)
                batch = [unwritten.popleft() for _ in range(take)]
                self._appending = batch
                try:
                    await self._send(batch)
                except BaseException:
                    # Kept, in front of what came since, for the retry.
                    unwritten.extendleft(reversed(batch))
                    if self._on_failure is not None:
                        self._on_failure()
                    raise
                finally:
                    self._appending = None

    async def drain(self) -> None:
        # A few tries only: a receiver that is down must not hold a shutdown for long (what
        # is lost is events, never a task's change).
        for _ in range(3):
            try:
                await self.run_once()
                return
            except Exception as exc:
                log.warning("%s: final send failed (%s); retrying", self.name, exc)
                await asyncio.sleep(self.error_backoff_s)
        log.error("%s: %d events not sent at shutdown", self.name, self.backlog)


class LogWriter(Forwarder):
    """The forwarder to the event log."""

    def __init__(
        self,
        event_log: EventLog,
        on_failure: Callable[[], None] | None = None,
        max_unwritten: int = MAX_UNWRITTEN,
    ) -> None:
        super().__init__("event-log-writer", event_log.append_many, on_failure, max_unwritten)
        self.log = event_log


class EventBus:
    """Where events go: every subscriber, a batch at a time, then the event log (if kept)."""

    def __init__(self, writer: LogWriter | None) -> None:
        self.writer = writer
        self.log = writer.log if writer is not None else None
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    async def publish(self, batch: Batch) -> None:
        if not batch.events:
            return
        if self.writer is not None:
            self.writer.add(batch.events)
        for subscriber in self._subscribers:
            try:
                result = subscriber(batch)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("event subscriber %r failed on %d events", subscriber, len(batch))

    async def written(self) -> None:
        """Until everything published so far is in the event log."""
        if self.writer is not None:
            await self.writer.run_once()


class EventTrimmer(Service):
    """Trims the event log to its retention (age and count), once a minute."""

    name = "event-trimmer"

    def __init__(
        self,
        event_log: EventLog,
        clock: Callable[[], float],
        max_age_s: float,
        max_count: int,
        interval_s: float = TRIM_INTERVAL_S,
    ) -> None:
        super().__init__()
        self._log = event_log
        self._clock = clock
        self._max_age_s = max_age_s
        self._max_count = max_count
        self._interval_s = interval_s

    def next_wait(self) -> float | None:
        return self._interval_s

    async def run_once(self) -> None:
        await self._log.trim(self._clock(), self._max_age_s, self._max_count)
