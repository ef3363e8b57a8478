"""Flow control: circuit breakers, queue controls (pause, limits) and the gate workers pass.

``FlowControl`` composes them for the engine: the services to run, the gate the workers ask,
and the announcements routed to whichever part they concern.
"""

from __future__ import annotations

from collections.abc import Callable

from tierq.config import Settings
from tierq.engine.events import EventSource
from tierq.engine.flow.breakers import Breakers, Publish
from tierq.engine.flow.controls import QueueControls
from tierq.engine.flow.gate import FlowGate
from tierq.engine.flusher import Flusher
from tierq.engine.held import HeldTasks
from tierq.engine.instruments import EngineMetrics
from tierq.engine.service import Service
from tierq.storage.base import Dispatch
from tierq.storage.breakers import BreakerStore
from tierq.storage.queues import QueueStore


class FlowControl:
    def __init__(
        self,
        settings: Settings,
        queue_store: QueueStore | None,
        breaker_store: BreakerStore,
        dispatch: Dispatch,
        held: HeldTasks,
        flusher: Flusher,
        events: EventSource,
        publish: Publish,
        instruments: EngineMetrics,
        clock: Callable[[], float],
        node_id: str,
        poke: Callable[[], None],
    ) -> None:
        if queue_store is None:
            raise ValueError("flow control needs a queue store (storage.factory.make_queue_store)")
        self.queue_store = queue_store
        self.breaker_store = breaker_store
        shared = dispatch.capabilities.shared
        self.controls = QueueControls(
            settings, queue_store, dispatch, publish, events.flow, instruments, clock
        )
        self.breakers = (
            Breakers(
                breaker_store,
                dispatch.announce_flow,
                publish,
                events.flow,
                instruments,
                clock,
                settings.breaker_count_client_errors,
            )
            if settings.breakers
            else None
        )
        self.gate = FlowGate(
            self.controls,
            self.breakers,
            held,
            flusher,
            lambda ids: dispatch.release(node_id, ids),
            instruments,
            clock,
            node_id,
            shared,
        )
        dispatch.listen_flow(self._on_announced)
        # Distributed, limits are kept by the claims: their waits are counted there.
        dispatch.listen_limit_waits(lambda tasks: instruments.flow_wait("limit", tasks))
        gate = self.gate

        def on_change(queues: set[str]) -> None:
            gate.on_controls(queues)
            poke()  # tasks of a resumed or raised queue wait in the store: claim them now

        self.controls.on_change = on_change

    @property
    def services(self) -> list[Service]:
        services: list[Service] = [self.controls]
        if self.breakers is not None:
            services.append(self.breakers)
        return services

    async def open(self) -> None:
        await self.breaker_store.open()
        await self.controls.load()

    async def close(self) -> None:
        await self.gate.close()
        await self.breaker_store.close()

    def _on_announced(self, message: str) -> None:
        self.controls.on_announced(message)
        if self.breakers is not None:
            self.breakers.on_announced(message)
