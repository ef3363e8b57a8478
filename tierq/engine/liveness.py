"""Heartbeats and rescue of dead replicas' leases.

Every replica heartbeats (one entry with an expiry, not one per task). Every replica also runs
the rescuer: the dispatch tier's rescue is atomic, so when several replicas race to rescue the
same dead owner each lease returns to the queue exactly once. Rescued attempts are recorded as
``abandoned`` in the record tier; the next claim runs them as attempt + 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tierq.engine.model import Outcome, TaskState, Transition
from tierq.engine.service import Service

if TYPE_CHECKING:
    from tierq.engine.engine import Engine


class Heartbeat(Service):
    name = "heartbeat"

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self.beats = 0

    def next_wait(self) -> float | None:
        return self._engine.settings.heartbeat_s

    async def run_once(self) -> None:
        engine = self._engine
        checked_at = engine.clock()
        registered = await engine.dispatch.heartbeat(
            engine.node_id, engine.settings.heartbeat_ttl_s, checked_at, engine.replica_info()
        )
        self.beats += 1
        if engine.distributed:
            # Drop what was rescued from us first, then let workers start tasks again; the
            # repairs (releases, a rebuild) may fail without holding the workers back.
            await engine.check_dispatch(registered)
            engine.renew_leases(checked_at)
            await engine.repair_dispatch()
        await engine.retry_deferred()


class Rescuer(Service):
    name = "rescuer"

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self.rescued = 0

    def next_wait(self) -> float | None:
        return self._engine.settings.heartbeat_s

    async def run_once(self) -> None:
        engine = self._engine
        now = engine.clock()
        rescued = await engine.dispatch.rescue(now)
        if not rescued:
            return
        self.rescued += len(rescued)
        for lease in rescued:
            engine.flusher.add(
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
        engine.pager.poke()
