"""Heartbeats and rescue of dead replicas' leases.

Every replica heartbeats (one entry with an expiry, not one per task). Every replica also runs
the rescuer: the dispatch tier's rescue is atomic, so when several replicas race to rescue the
same dead owner each lease returns to the queue exactly once. Rescued attempts are recorded as
``abandoned`` in the record tier; the next claim runs them as attempt + 1.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tierq.engine.flusher import Reports
from tierq.engine.pager import WorkHint
from tierq.engine.service import Service
from tierq.model import Outcome, TaskState, Transition
from tierq.storage.base import RescuedLease

# (checked_at) -> whether the dispatch tier still had this replica registered
Beat = Callable[[float], Awaitable[bool]]
# (registered, checked_at): what must follow each beat (see Engine._after_beat)
AfterBeat = Callable[[bool, float], Awaitable[None]]


class Heartbeat(Service):
    name = "heartbeat"

    def __init__(
        self, beat: Beat, after_beat: AfterBeat, clock: Callable[[], float], interval_s: float
    ) -> None:
        super().__init__()
        self._beat = beat
        self._after_beat = after_beat
        self._clock = clock
        self._interval_s = interval_s
        self.beats = 0

    def next_wait(self) -> float | None:
        return self._interval_s

    async def run_once(self) -> None:
        checked_at = self._clock()
        registered = await self._beat(checked_at)
        self.beats += 1
        await self._after_beat(registered, checked_at)


class Rescuer(Service):
    name = "rescuer"

    def __init__(
        self,
        rescue: Callable[[float], Awaitable[list[RescuedLease]]],
        reports: Reports,
        hint: WorkHint,
        clock: Callable[[], float],
        interval_s: float,
    ) -> None:
        super().__init__()
        self._rescue = rescue
        self._reports = reports
        self._hint = hint
        self._clock = clock
        self._interval_s = interval_s
        self.rescued = 0

    def next_wait(self) -> float | None:
        return self._interval_s

    async def run_once(self) -> None:
        now = self._clock()
        rescued = await self._rescue(now)
        if not rescued:
            return
        self.rescued += len(rescued)
        for lease in rescued:
            self._reports.add(
                Transition(
                    lease.task_id,
                    lease.attempt,
                    TaskState.QUEUED,
                    now,
                    run_at=now,
                    finished_at=now,
                    outcome=Outcome.ABANDONED,
                    lease_owner=None,
                    error=f"lease of {lease.owner} expired (no heartbeat)",
                )
            )
        self._hint.poke()
