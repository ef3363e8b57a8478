"""Event sinks: external brokers every event is published to (the seeds' event-bus role).

A sink's ``publish_many`` returns only once the broker has taken the whole batch (publisher
confirms); it raises ``StoreUnavailable`` when it cannot, and the engine's forwarder keeps
the batch and tries again: delivery is at least once (a retried batch may repeat events the
broker took before the failure; each message carries an id for consumers to drop repeats).
A new broker is a new module implementing this, chosen in ``storage/factory.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from tierq.model import Event


class EventSink(abc.ABC):
    name: str = "sink"

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect (the sink reconnects by itself afterwards)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def publish_many(self, events: Sequence[Event]) -> None:
        """Publish every event of the batch, in order, confirmed by the broker."""


def message_id(event: Event) -> str:
    """An id naming the change an event reports (the same when a batch is sent again)."""
    about = event.task_id or event.subscription_id or event.breaker or event.queue or ""
    return f"{about}:{event.attempt}:{event.event}:{event.at:.6f}"
