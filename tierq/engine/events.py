"""Task events: made once, where a batch became durable, and handed to every subscriber.

The engine publishes at the places where a change is durable and nowhere else: the committer
(a group of submissions committed), the flusher (a batch of transitions written), and the few
direct record writes (a cancel in the tiers, dependents cancelled, a retry). ``EventSource``
turns those batches into events; ``EventBus.publish`` appends a batch to the event log (one
round trip) and then calls each subscriber once with the whole batch.

What must stay true: an event is published after the change it reports is durable, never
before; each change is published once by the process that made it; a subscriber that fails
is logged and skipped, never allowed to fail the write that preceded it (the change is
durable already) or the other subscribers. ``CancelledError`` is never swallowed.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

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

# Until access control lands every task belongs to one tenant.
DEFAULT_TENANT = "default"
# The trimmer's interval: trimming is maintenance, a minute late costs a minute of retention.
TRIM_INTERVAL_S = 60.0


@dataclass(slots=True, frozen=True)
class Published:
    """An event and, in this process, the task it is about as this process knew it then
    (for subscribers that need more than the event carries: notifications). ``task`` is
    ``None`` for events not about a task."""

    event: Event
    task: Task | None


Subscriber = Callable[[Sequence[Published]], Awaitable[None] | None]

_BY_STATE: dict[TaskState, EventType] = {
    TaskState.RUNNING: EventType.STARTED,
    TaskState.SUCCEEDED: EventType.SUCCEEDED,
    TaskState.FAILED: EventType.FAILED,
    TaskState.CANCELLED: EventType.CANCELLED,
}
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
    ) -> Published:
        event = Event(
            at,
            kind.value,
            task.id,
            task.queue,
            task.type,
            task.priority,
            task.attempt if attempt is None else attempt,
            self._node,
            DEFAULT_TENANT,
            error,
            duration_s,
            retry_at,
        )
        return Published(event, task)

    def about(self, tasks: Iterable[Task], kind: EventType) -> list[Published]:
        """One ``kind`` event per task, at each task's last change."""
        cancelled = kind is EventType.CANCELLED
        return [
            self._make(
                kind, task, task.updated_at, error=_summary(task.last_error) if cancelled else None
            )
            for task in tasks
        ]

    def flushed(
        self, transitions: Sequence[Transition], tasks: Mapping[str, Task]
    ) -> list[Published]:
        """The events of a written batch of transitions, in the batch's order (so in order
        per task). ``tasks`` has each transition's task (its queue, type, priority)."""
        out: list[Published] = []
        started = self._started
        for t in transitions:
            kind = event_type_of(t)
            if kind is None:
                continue
            task = tasks.get(t.task_id)
            if task is None:
                continue  # gone from the record tier (cannot happen short of a purge)
            key = (t.task_id, t.attempt)
            if kind is EventType.STARTED:
                if key not in started:
                    started.add(key)
                    out.append(self._make(kind, task, t.at, t.attempt))
                continue
            if (
                kind is not EventType.RELEASED or t.outcome is Outcome.INTERRUPTED
            ) and t.started_at is not None:
                if key in started:
                    started.discard(key)
                else:
                    out.append(self._make(EventType.STARTED, task, t.started_at, t.attempt))
            else:
                started.discard(key)
            duration = None
            if (
                t.started_at is not None
                and t.finished_at is not None
                and kind is not EventType.RELEASED
            ):
                duration = round(t.finished_at - t.started_at, 6)
            out.append(
                self._make(
                    kind,
                    task,
                    t.at,
                    t.attempt,
                    None if kind is EventType.SUCCEEDED else _summary(t.error),
                    duration,
                    t.run_at if kind is EventType.ATTEMPT_FAILED else None,
                )
            )
        return out

    def submitted(self, tasks: Iterable[Task]) -> list[Published]:
        return [self._make(EventType.SUBMITTED, t, t.created_at) for t in tasks]

    def retried(self, tasks: Iterable[Task]) -> list[Published]:
        return [self._make(EventType.RETRIED, t, t.updated_at) for t in tasks]

    def webhook_disabled(self, subscription_id: str, reason: str) -> Published:
        event = Event(self._clock(), EventType.WEBHOOK_DISABLED.value, node=self._node)
        event.subscription_id = subscription_id
        event.error = _summary(reason)
        return Published(event, None)


class EventBus:
    """Where events go: the event log (if kept), then every subscriber, a batch at a time."""

    def __init__(
        self, event_log: EventLog | None, on_log_failure: Callable[[], None] | None = None
    ) -> None:
        self.log = event_log
        self._on_log_failure = on_log_failure
        self._subscribers: list[Subscriber] = []
        self.published = 0
        self.log_failures = 0

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    async def publish(self, batch: Sequence[Published]) -> None:
        if not batch:
            return
        self.published += len(batch)
        if self.log is not None:
            try:
                await self.log.append_many([p.event for p in batch])
            except Exception as exc:
                # The changes are durable already and must not be reported as failed; the
                # log misses this batch (counted, logged) and readers of the stream miss it.
                self.log_failures += 1
                if self._on_log_failure is not None:
                    self._on_log_failure()
                log.warning("event log: could not append %d events: %s", len(batch), exc)
        for subscriber in self._subscribers:
            try:
                result = subscriber(batch)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("event subscriber %r failed on %d events", subscriber, len(batch))


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
