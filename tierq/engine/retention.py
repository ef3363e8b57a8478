"""Retention: finished tasks are deleted once older than their state's retention (settings
``retention_succeeded_s``, ``retention_failed_s``, ``retention_cancelled_s``; 0 keeps them),
with their executions, dependency edges and delivery index.

What must stay true: only finished tasks go, measured from when they finished; a step
deletes at most ``retention_batch`` tasks (a background write that never goes before a
client's, so the hot path is not held up) and the next step follows at once while a backlog
remains, else after ``INTERVAL_S``; counts stay exact (the stores keep them on delete). Events
have their own retention (the event log's trimmer). Every replica may sweep: deleting a task
twice deletes it once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from tierq.config import Settings
from tierq.engine.service import Service
from tierq.model import TaskState
from tierq.storage.base import RecordStore

log = logging.getLogger("tierq.engine")
INTERVAL_S = 60.0
# Between full batches: room for the hot path's own writes in between.
BACKLOG_PAUSE_S = 0.05


class Retention(Service):
    name = "retention"

    def __init__(
        self,
        settings: Settings,
        store: RecordStore,
        forget_deliveries: Callable[[Sequence[str]], Awaitable[None]] | None,
        clock: Callable[[], float],
    ) -> None:
        super().__init__()
        self._store = store
        self._forget = forget_deliveries
        self._clock = clock
        self._batch = settings.retention_batch
        self.ages = {
            state: age
            for state, age in (
                (TaskState.SUCCEEDED, settings.retention_succeeded_s),
                (TaskState.FAILED, settings.retention_failed_s),
                (TaskState.CANCELLED, settings.retention_cancelled_s),
            )
            if age > 0
        }
        self._full = False
        self.deleted = 0

    @property
    def enabled(self) -> bool:
        return bool(self.ages)

    async def run_once(self) -> None:
        now = self._clock()
        cutoffs = {state: now - age for state, age in self.ages.items()}
        gone = await self._store.task_purge(cutoffs, self._batch)
        if gone and self._forget is not None:
            await self._forget(gone)
        self.deleted += len(gone)
        self._full = len(gone) >= self._batch
        if gone:
            log.debug("retention: %d finished tasks deleted", len(gone))

    def next_wait(self) -> float:
        return BACKLOG_PAUSE_S if self._full else INTERVAL_S
