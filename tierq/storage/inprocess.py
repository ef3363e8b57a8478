"""The embedded dispatch tier: there is no shared queue, so the record store is the queue.

Tasks this process could not hold in memory stay in the record store without a lease and are
claimed from there (``RecordStore.task_claim``) as the memory tier drains. Leases never expire:
one process owns an embedded database (the SQLite store enforces it with a file lock) and
start-up recovery clears every lease of the previous run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from tierq.model import Task
from tierq.storage.base import (
    Ack,
    Dispatch,
    DispatchCapabilities,
    RecordStore,
    ReplicaInfo,
    RescuedLease,
)
from tierq.storage.queues import QueueControl


class InProcessDispatch(Dispatch):
    capabilities = DispatchCapabilities(shared=False, leases_expire=False)

    def __init__(self, store: RecordStore, horizon_s: float = 5.0) -> None:
        self._store = store
        # Scheduled tasks due within the horizon are claimed early, so the memory tier's timer
        # fires them on time even though the store is only looked at now and then.
        self.horizon_s = horizon_s
        self._heartbeat: tuple[str, float, float, dict[str, object]] | None = None
        self._schedules_listener: Callable[[list[str]], None] | None = None

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def _enqueue_many(
        self, tasks: Sequence[Task], lease_owner: str | None, now: float, take_back: bool
    ) -> list[str]:
        # The record insert already stored each task with its lease (or none): nothing to add.
        return []

    async def _claim(self, owner: str, limit: int, now: float, skip: Sequence[str]) -> list[Task]:
        return await self._store.task_claim(owner, limit, now, self.horizon_s, skip)

    async def _ack_many(
        self, owner: str, acks: Sequence[Ack], now: float, generation: str
    ) -> list[str]:
        # The record transition carries the outcome; one owner means no lease can be stale.
        return []

    async def _reclaim(self, owner: str, held: Sequence[tuple[Task, int]], now: float) -> list[str]:
        # Nothing here is ever lost apart from the record store.
        return []

    async def _confirm_many(self, owner: str, ids: Sequence[str]) -> None:
        # The record store is the queue: nothing is kept apart from it to forget.
        return None

    async def _cancel_many(self, ids: Sequence[str]) -> list[str]:
        return list(ids)

    async def _set_controls(self, controls: Sequence[QueueControl]) -> None:
        # The engine's gate enforces them in process (engine/flow/gate.py).
        return None

    async def _announce_flow(self, message: str) -> None:
        # One process: the engine that changed something knows it already.
        return None

    def listen_flow(self, callback: Callable[[str], None]) -> None:
        return None

    async def _announce_report(self, message: bytes) -> None:
        # One process: the report was delivered here already, or the attempt is not running.
        return None

    def listen_report(self, callback: Callable[[bytes], None]) -> None:
        return None

    async def _announce_cancel(self, ids: Sequence[str]) -> None:
        # One process: the engine that cancelled holds every lease itself.
        return None

    def listen_cancel(self, callback: Callable[[list[str]], None]) -> None:
        return None

    async def _announce_schedules(self, ids: Sequence[str]) -> None:
        # One process: its own scheduler is told directly. (Processes sharing a PostgreSQL
        # store without Redis learn of each other's edits at their next synchronisation.)
        if self._schedules_listener is not None:
            self._schedules_listener(list(ids))

    def listen_schedules(self, callback: Callable[[list[str]], None]) -> None:
        self._schedules_listener = callback

    async def _release(self, owner: str, ids: Sequence[str]) -> int:
        return await self._store.task_release(owner, ids)

    async def heartbeat(self, owner: str, ttl: float, now: float, info: dict[str, object]) -> bool:
        self._heartbeat = (owner, now, now + ttl, info)
        return True

    async def generation(self) -> tuple[str, bool]:
        # Nothing here outlives the process: the record store is the queue.
        return ("in-process", False)

    async def rescue(self, now: float) -> list[RescuedLease]:
        return []

    async def replicas(self, now: float) -> list[ReplicaInfo]:
        if self._heartbeat is None:
            return []
        owner, last, expires, info = self._heartbeat
        leased = info.get("held", 0)
        return [ReplicaInfo(owner, last, expires, leased if isinstance(leased, int) else 0, info)]

    async def wait_for_work(self, max_wait: float) -> None:
        await asyncio.sleep(max_wait)

    async def depth(self) -> dict[str, int]:
        return {}
