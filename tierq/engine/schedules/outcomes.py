"""How schedules' runs end, kept per schedule (``pause_after_failures``).

A subscriber of the event bus on every replica (each records the runs it finished): failed
and succeeded runs of scheduled tasks are collected and written every ``window_s``, one
statement for all of them, not one per flush. A schedule paused here is announced like any
edit, so the leader stops firing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from tierq.engine.events import Batch
from tierq.engine.service import Service
from tierq.storage.schedules import Outcome, ScheduleStore

log = logging.getLogger("tierq.schedules")

# Outcomes kept while the store cannot be written; beyond, the oldest are dropped (a
# schedule then pauses a little later than it should, never wrongly).
MAX_PENDING = 100_000


class Outcomes(Service):
    name = "schedule-outcomes"

    def __init__(
        self,
        store: ScheduleStore,
        announce: Callable[[Sequence[str]], Awaitable[None]],
        clock: Callable[[], float],
        window_s: float = 0.5,
    ) -> None:
        super().__init__()
        self._store = store
        self._announce = announce
        self._clock = clock
        self._window_s = window_s
        self._pending: list[Outcome] = []

    def on_events(self, batch: Batch) -> None:
        for event, task in zip(batch.events, batch.tasks, strict=True):
            if task is not None and task.schedule_id is not None:
                kind = event.event
                if kind == "failed" or kind == "succeeded":
                    self._pending.append((task.schedule_id, kind == "failed"))
        if self._pending:
            if len(self._pending) > MAX_PENDING:
                del self._pending[: len(self._pending) - MAX_PENDING]
            self.wake()

    def next_wait(self) -> float | None:
        return None

    async def run_once(self) -> None:
        if not self._pending:
            return
        if not self._stopping:
            await asyncio.sleep(self._window_s)  # let the outcomes of the next flushes join
        await self.write()

    async def drain(self) -> None:
        await self.write()

    async def write(self) -> None:
        """Write what is pending now (tests call it instead of waiting for the window)."""
        taken, self._pending = self._pending, []
        if not taken:
            return
        try:
            paused = await self._store.record_outcomes(taken, self._clock())
        except BaseException:
            self._pending[:0] = taken  # kept in order for the next attempt
            raise
        for schedule_id in paused:
            log.warning("schedule %s paused: too many consecutive failed runs", schedule_id)
        if paused:
            try:
                await self._announce(paused)
            except Exception as exc:  # the leader's next synchronisation finds the pause
                log.warning("schedules paused but not announced (%s)", exc)
