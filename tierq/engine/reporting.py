"""The engine's reports about itself (statistics, health, readiness, workers) and the depth
gauges set before a scrape: reads across the tiers and the in-process services, no state of
its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from tierq.engine.events import Batch
from tierq.engine.flow.queues import Throughput
from tierq.engine.flusher import Flusher
from tierq.engine.instruments import EngineMetrics
from tierq.engine.memory import MemoryTier
from tierq.engine.reports import (
    RUNNING_SHOWN,
    Health,
    MemoryDepth,
    Readiness,
    Replica,
    Statistics,
    Workers,
)
from tierq.engine.rollups import MetricsRollups
from tierq.engine.workers import WorkerPool
from tierq.storage.base import Dispatch, RecordStore
from tierq.storage.rollups import RollupStore

log = logging.getLogger("tierq.engine")


@dataclass(slots=True)
class Lifecycle:
    """Where the engine is in its life; the engine changes it, reports read it."""

    started_at: float
    ready: bool = False
    draining: bool = False


class Reporter:
    def __init__(
        self,
        store: RecordStore,
        dispatch: Dispatch,
        memory: MemoryTier,
        workers: WorkerPool,
        flusher: Flusher,
        instruments: EngineMetrics,
        lifecycle: Lifecycle,
        node_id: str,
        clock: Callable[[], float],
        listeners: Callable[[], int] = lambda: 0,
        rollup_store: RollupStore | None = None,
    ) -> None:
        self._store = store
        self._dispatch = dispatch
        self._memory = memory
        self._workers = workers
        self._flusher = flusher
        self._instruments = instruments
        self._lifecycle = lifecycle
        self._node = node_id
        self._clock = clock
        self._listeners = listeners
        self._mode = "distributed" if dispatch.capabilities.shared else "embedded"
        self.throughput = Throughput(clock)
        # Per-minute outcomes in the record tier (None: not kept; the metrics routes say so).
        self.rollups = (
            None if rollup_store is None else MetricsRollups(rollup_store, node_id, clock)
        )

    def on_events(self, batch: Batch) -> None:
        self.throughput.on_events(batch)
        if self.rollups is not None:
            self.rollups.on_events(batch)

    def replica_info(self) -> dict[str, object]:
        """What this replica tells the others with each heartbeat."""
        memory = self._memory
        return {
            "held": memory.held,
            "queued": memory.ready_count,
            "delayed": memory.delayed_count,
            "running": self._workers.busy,
            "workers": self._workers.size,
            "started_at": self._lifecycle.started_at,
            "finished_last_minute": self.throughput.last_minute(),
        }

    async def statistics(self, tenant: str | None = None) -> Statistics:
        """Counts of ``tenant``'s tasks (None: every tenant's, with the tiers' depths)."""
        if tenant is not None:
            counts = await self._store.task_counts(tenant)
            return Statistics(
                counts={state.value: n for state, n in counts.items()},
                total=sum(counts.values()),
                memory=None,
                dispatch=None,
                node=self._node,
                mode=self._mode,
            )
        # Both tiers at once: while a backlog drains, each read may wait for its tier (Redis
        # waits for a CPU), and one after the other the waits added up.
        try:
            async with asyncio.TaskGroup() as group:
                counting = group.create_task(self._store.task_counts())
                measuring = group.create_task(self._dispatch.depth())
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None  # answered like the same error alone
        counts = counting.result()
        return Statistics(
            counts={state.value: n for state, n in counts.items()},
            total=sum(counts.values()),
            memory=MemoryDepth(
                ready=self._memory.ready_count,
                delayed=self._memory.delayed_count,
                running=self._workers.busy,
                limit=self._memory.limit,
                unflushed=self._flusher.backlog,
            ),
            dispatch=measuring.result(),
            node=self._node,
            mode=self._mode,
        )

    async def health(self) -> Health:
        checks: dict[str, str] = {}
        try:
            await self._store.ping()
            checks["record_store"] = "ok"
        except Exception as exc:  # reported, not raised: health must answer
            checks["record_store"] = f"unavailable: {type(exc).__name__}"
        try:
            await self._dispatch.depth()
            checks["dispatch"] = "ok"
        except Exception as exc:
            checks["dispatch"] = f"unavailable: {type(exc).__name__}"
        ok = self._lifecycle.ready and all(v == "ok" for v in checks.values())
        return Health(
            status="ok" if ok else "degraded",
            ready=self._lifecycle.ready,
            draining=self._lifecycle.draining,
            checks=checks,
            node=self._node,
            mode=self._mode,
            uptime_seconds=round(self._clock() - self._lifecycle.started_at, 3),
        )

    async def readiness(self) -> Readiness:
        if not self._lifecycle.ready:
            return Readiness("draining" if self._lifecycle.draining else "starting")
        try:
            await self._store.ping()
        except Exception:
            return Readiness("record store unavailable")
        return Readiness("ready")

    async def workers(self) -> Workers:
        replicas = await self._dispatch.replicas(self._clock())
        return Workers(
            node=self._node,
            workers=self._workers.size,
            busy=self._workers.busy,
            running=self._workers.running_ids()[:RUNNING_SHOWN],
            replicas=[
                Replica(r.owner, r.last_heartbeat, r.expires_at, r.leased, r.info) for r in replicas
            ],
        )

    async def update_gauges(self) -> None:
        """Set the depth gauges before a scrape. A tier that is down leaves its last values
        (the store error metrics say why)."""
        self._instruments.memory_depth(
            self._memory.ready_count,
            self._memory.delayed_count,
            self._workers.busy,
            self._flusher.backlog,
        )
        self._instruments.event_listeners(self._listeners())
        try:
            counts = await self._store.task_counts()
            self._instruments.tier_depth("record", ((s.value, n) for s, n in counts.items()))
            self._instruments.tier_depth("dispatch", (await self._dispatch.depth()).items())
        except Exception as exc:
            log.warning("metrics: could not read tier depths: %s", exc)
