"""Queue controls: paused, ``max_running`` and a start rate per queue, as every replica must
see them.

The record tier holds them (storage/queues.py; they survive restarts), the dispatch tier a
copy its claims obey (distributed: lua/claim.lua), and this service the copy this process
reads for each task it holds (the gate). A change is saved, copied to the dispatch tier and
announced (``queue:<name>``), and every replica re-reads the record tier on the announcement:
a pause reaches every replica within one Redis publish. Settings give the defaults
(``queue_limits``); a stored control wins.

What must stay true: ``get`` never does I/O (the workers call it); the dispatch tier's copy is
rewritten from the record tier after it lost its data (``RESYNC_S``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

from tierq.config import Settings
from tierq.config.checks import QueueLimit, parse_queue_limits
from tierq.engine.events import Batch
from tierq.engine.instruments import EngineMetrics
from tierq.engine.service import Service
from tierq.model import EventType
from tierq.storage.base import Dispatch
from tierq.storage.queues import QueueControl, QueueStore

log = logging.getLogger("tierq.flow")

# The dispatch tier's copy is rewritten this often even without a change, in case it lost its
# data meanwhile (a FLUSHDB); announcements make changes themselves immediate.
RESYNC_S = 30.0
# Answers of bulk operations are kept this long for a retried call with the same
# Idempotency-Key; older ones are deleted at each re-synchronisation.
OPERATION_ANSWER_KEEP_S = 86_400.0
# A call marked as running this long has died with its process: its key is given back.
OPERATION_RUNNING_MAX_S = 3_600.0

Publish = Callable[[Batch], Awaitable[None]]
FlowEvent = Callable[..., Batch]


def defaults_from(settings: Settings) -> dict[str, QueueControl]:
    if not settings.queue_limits:
        return {}
    return {
        queue: QueueControl(queue, False, limit[0], limit[1], limit[2])
        for queue, limit in parse_queue_limits(settings.queue_limits).items()
    }


class QueueControls(Service):
    name = "queue-controls"

    def __init__(
        self,
        settings: Settings,
        store: QueueStore,
        dispatch: Dispatch,
        publish: Publish,
        event: FlowEvent,
        instruments: EngineMetrics,
        clock: Callable[[], float],
    ) -> None:
        super().__init__()
        self._instruments = instruments
        self._store = store
        self._dispatch = dispatch
        self._publish = publish
        self._event = event
        self._clock = clock
        self.defaults = defaults_from(settings)
        self._controls: dict[str, QueueControl] = dict(self.defaults)
        self.paused: frozenset[str] = frozenset()
        self.limited: frozenset[str] = frozenset(
            c.queue for c in self.defaults.values() if c.limited
        )
        # Called with the queues whose controls changed (the gate lets parked tasks go).
        self.on_change: Callable[[set[str]], None] | None = None
        self._reload = False

    def get(self, queue: str) -> QueueControl | None:
        return self._controls.get(queue)

    def all(self) -> dict[str, QueueControl]:
        return dict(self._controls)

    # ---- changes -----------------------------------------------------------------------------

    async def change(
        self, queue: str, paused: bool | None = None, limits: QueueLimit | None = None
    ) -> QueueControl:
        """Pause, resume or set the limits of ``queue`` (any name: a queue needs no tasks)."""
        old = self._controls.get(queue) or QueueControl(queue)
        new = old
        if paused is not None:
            new = dataclasses.replace(new, paused=paused)
        if limits is not None:
            new = dataclasses.replace(
                new, max_running=limits[0], rate_limit=limits[1], rate_per_s=limits[2]
            )
        new = dataclasses.replace(new, updated_at=self._clock())
        await self._store.save_control(new)
        await self._dispatch.set_controls([new])
        self._apply({**self._controls, queue: new})
        await self._dispatch.announce_flow(f"queue:{queue}")
        if paused is not None and paused != old.paused:
            kind = EventType.QUEUE_PAUSED if paused else EventType.QUEUE_RESUMED
            log.warning("queue %s %s", queue, kind.value.removeprefix("queue_"))
            await self._publish(self._event(kind, queue=queue))
        return new

    # ---- keeping the copies current --------------------------------------------------------

    async def load(self) -> None:
        """Read every control from the record tier and rewrite the dispatch tier's copy."""
        stored = {c.queue: c for c in await self._store.controls()}
        merged = {**self.defaults, **stored}
        await self._dispatch.set_controls(list(merged.values()))
        self._apply(merged)

    def on_announced(self, message: str) -> None:
        if message == "" or message.startswith("queue:"):
            self._reload = True
            self.wake()

    def next_wait(self) -> float | None:
        return 0.0 if self._reload else RESYNC_S

    async def run_once(self) -> None:
        self._reload = False
        await self.load()
        now = self._clock()
        await self._store.forget_operations(
            now - OPERATION_ANSWER_KEEP_S, now - OPERATION_RUNNING_MAX_S
        )

    def _apply(self, controls: dict[str, QueueControl]) -> None:
        before = self._controls
        self._controls = controls
        self.paused = frozenset(q for q, c in controls.items() if c.paused)
        self.limited = frozenset(q for q, c in controls.items() if c.limited)
        changed = {q for q in before.keys() | controls.keys() if before.get(q) != controls.get(q)}
        for queue in changed:
            control = controls.get(queue)
            self._instruments.queue_paused(queue, control is not None and control.paused)
        if changed and self.on_change is not None:
            self.on_change(changed)
