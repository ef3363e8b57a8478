"""The event services, composed: the source and the bus, the writer to the event log, the
forwarder to an external broker, the trimmer and the live feed. The engine builds one
``Eventing`` and runs its services; everything else reaches them through its fields.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tierq.config import Settings
from tierq.engine.events import EventBus, EventSource, EventTrimmer, Forwarder, LogWriter
from tierq.engine.feed import EventFeed
from tierq.engine.instruments import EngineMetrics
from tierq.engine.service import Service
from tierq.storage.eventlog import EventLog
from tierq.storage.sinks import EventSink

log = logging.getLogger("tierq.engine")


class Eventing:
    def __init__(
        self,
        settings: Settings,
        node_id: str,
        clock: Callable[[], float],
        instruments: EngineMetrics,
        event_log: EventLog | None,
        sink: EventSink | None,
    ) -> None:
        self.source = EventSource(node_id, clock)
        self.log = event_log
        self.log_writer = (
            LogWriter(event_log, instruments.event_log_failed) if event_log is not None else None
        )
        self.bus = EventBus(self.log_writer)
        self.bus.subscribe(instruments.on_events)
        self.sink = sink
        # A broker gets every event this process publishes, through a forwarder of its own:
        # publishing never waits for it.
        self.sink_forwarder = (
            Forwarder("event-sink", sink.publish_many, instruments.event_sink_failed)
            if sink is not None
            else None
        )
        if self.sink_forwarder is not None:
            self.bus.subscribe(self.sink_forwarder)
        self.feed = EventFeed(event_log, self.bus, settings.event_client_buffer)
        self.trimmer = (
            EventTrimmer(
                event_log, clock, settings.event_retention_s, settings.event_retention_count
            )
            if event_log is not None
            else None
        )

    @property
    def loops(self) -> list[Service]:
        """Services stopped with the others (the feed, the trimmer)."""
        return [s for s in (self.feed, self.trimmer) if s is not None]

    @property
    def forwarders(self) -> list[Service]:
        """Services stopped last, one after the other: they send what was published."""
        return [f for f in (self.log_writer, self.sink_forwarder) if f is not None]

    async def open(self) -> None:
        if self.log is not None:
            await self.log.open()
        if self.sink is not None:
            try:
                await self.sink.open()
            except Exception as exc:  # the forwarder connects once the broker is back
                log.warning("event sink %s unavailable at start: %s", self.sink.name, exc)

    async def close(self) -> None:
        try:
            if self.log is not None:
                await self.log.close()
        finally:
            if self.sink is not None:
                await self.sink.close()
