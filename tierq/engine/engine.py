"""The engine: one task's way through, from submission to its last state change.

submit -> group commit to the record tier -> (distributed) write-through to the dispatch tier
-> memory tier (if it has room; leased to this process) -> worker -> flusher (batched acks to
the dispatch tier, then batched transitions to the record tier).

No HTTP, no SQL, no Redis commands here: only the storage interfaces.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from tierq.config import Settings
from tierq.engine.committer import GroupCommitter
from tierq.engine.control import Control
from tierq.engine.errors import (
    Conflict,
    InvalidDependency,
    NotFound,
    ShuttingDown,
    Submitted,
)
from tierq.engine.flusher import Flusher
from tierq.engine.handlers.base import HandlerRegistry
from tierq.engine.liveness import Heartbeat, Rescuer
from tierq.engine.looplag import LoopLagMonitor
from tierq.engine.memory import MemoryTier
from tierq.engine.model import (
    TERMINAL_STATES,
    Task,
    TaskState,
    Transition,
)
from tierq.engine.pager import Pager, WorkWatcher
from tierq.engine.recovery import Recovery
from tierq.engine.service import Service
from tierq.engine.workers import WorkerPool
from tierq.metrics import Metrics
from tierq.storage.base import Dispatch, RecordStore

log = logging.getLogger("tierq.engine")

__all__ = [
    "Conflict",
    "Engine",
    "InvalidDependency",
    "NotFound",
    "ShuttingDown",
    "Submitted",
]


class Engine(Control, Recovery):
    def __init__(
        self,
        settings: Settings,
        store: RecordStore,
        dispatch: Dispatch,
        registry: HandlerRegistry,
        metrics: Metrics,
        node_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.dispatch = dispatch
        self.registry = registry
        self.metrics = metrics
        self.node_id = node_id
        self.clock = clock
        self.distributed = dispatch.capabilities.shared
        self.memory = MemoryTier(settings.memory_limit, clock)
        self.committer = GroupCommitter(
            self._commit_group,
            settings.commit_window_ms / 1000.0,
            max_small_inflight=settings.commit_small_slots,
        )
        self.flusher = Flusher(
            ack_many=lambda acks: dispatch.ack_many(node_id, acks, clock()),
            confirm_many=lambda ids: dispatch.confirm_many(node_id, ids),
            transition_many=store.task_transition_many,
            on_flushed=self._on_flushed,
            interval_s=settings.flush_interval_ms / 1000.0,
            batch_size=store.capabilities.transition_batch,
            metrics=metrics,
            on_rejected=self._on_rejected,
        )
        self.pager = Pager(self, tick_s=0.25 if self.distributed else 1.0)
        self.heartbeat = Heartbeat(self)
        self.rescuer = Rescuer(self)
        self.watcher = WorkWatcher(self)
        self.loop_lag = LoopLagMonitor(metrics.loop_lag_seconds.observe)
        self.workers = WorkerPool(self, settings.workers)
        # Plain (sync) handlers run here: one thread per worker at most, so a worker never
        # waits for a thread behind DNS lookups in asyncio's small default pool.
        self.sync_executor = ThreadPoolExecutor(
            max_workers=settings.workers, thread_name_prefix="tierq-sync"
        )
        self.claim_batch = max(1, min(1000, settings.memory_limit))
        # Tasks this process holds (memory tier, running, or terminal but not yet flushed):
        # reads see them before their state reaches the record tier.
        self._live: dict[str, Task] = {}
        self._reserved = 0  # memory slots promised to submissions being committed
        # Tasks being cancelled in the lower tiers -> a copy the pager claimed meanwhile.
        self._cancelling: dict[str, Task | None] = {}
        self._announced_cancels: dict[str, float] = {}
        self._pending_deps = True  # pending (dependency-waiting) tasks may exist
        self._generation = ""  # the dispatch tier's generation this replica last saw
        # Until when this replica's leases are known to be alive (distributed: the last
        # heartbeat that found it registered, plus the TTL, less one heartbeat of margin).
        # Workers start no task past it. Embedded leases never expire.
        self.lease_deadline = 0.0 if self.distributed else math.inf
        self._lease_event: asyncio.Event | None = None
        self._wait_observers: dict[str, Callable[[float], None]] = {}
        self.needs_rebuild = False  # a write-through failed: offer the record tier again
        self._unreleased: list[str] = []  # leases Redis may hold for us after a failed call
        self._superseded: set[str] = set()
        # Finished tasks whose dependents could not be resolved yet (a tier failed).
        self._unreleased_dependents: list[str] = []
        self.started_at = clock()
        self.draining = False
        self.ready = False
        self._supervisor: asyncio.Task[None] | None = None
        self._services: list[Service] = []
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._shutdown_done: asyncio.Event | None = None
        self.memory.on_low = self.pager.low
        dispatch.listen_cancel(self._on_cancel_announced)
        self.memory.on_promoted = self._on_promoted

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the tiers, recover, and start services and workers (in one TaskGroup)."""
        await self.store.open()
        await self.dispatch.open()
        await self.recover()
        self._services = [self.committer, self.flusher, self.pager, self.heartbeat, self.loop_lag]
        if self.dispatch.capabilities.leases_expire:
            self._services.append(self.rescuer)
        if self.dispatch.capabilities.shared:
            self._services.append(self.watcher)
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._supervisor = asyncio.create_task(self._supervise(started), name="tierq-engine")
        await started
        self.ready = True
        log.info(
            "engine %s started: %d workers, memory limit %d, %s mode",
            self.node_id,
            self.settings.workers,
            self.settings.memory_limit,
            "distributed" if self.distributed else "embedded",
        )

    async def _supervise(self, started: asyncio.Future[None]) -> None:
        self._shutdown_done = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            for service in self._services:
                group.create_task(service.run(), name=f"tierq-{service.name}")
            self._worker_tasks = [
                group.create_task(self.workers.run_worker(i), name=f"tierq-worker-{i}")
                for i in range(self.workers.size)
            ]
            self.metrics.workers_total.set(self.workers.size)
            started.set_result(None)
            await self._shutdown_done.wait()

    async def stop(self) -> None:
        """Graceful shutdown: stop taking work, let running tasks finish within the grace
        period, hand back everything else, flush every batch, close the tiers."""
        if self._supervisor is None:
            return
        self.draining = True
        self.ready = False
        self.pager.request_stop()
        await self._hand_back_queued()
        try:
            async with asyncio.timeout(self.settings.shutdown_grace_s):
                await self.workers.wait_idle()
        except TimeoutError:
            log.warning("grace period over: interrupting %d running tasks", self.workers.busy)
        for worker in self._worker_tasks:
            worker.cancel()
        await asyncio.gather(*self._worker_tasks, return_exceptions=True)
        for service in (
            self.heartbeat,
            self.rescuer,
            self.watcher,
            self.loop_lag,
            self.committer,
            self.flusher,
        ):
            service.request_stop()
        assert self._shutdown_done is not None
        self._shutdown_done.set()
        supervisor, self._supervisor = self._supervisor, None
        try:
            await supervisor  # the flusher and committer drain here
        finally:
            # Even if the last flush failed: release connections, threads and the file lock.
            # What was not written is not lost: the record tier still holds those tasks as
            # live, and recovery runs them again.
            self.memory.close()
            self.sync_executor.shutdown(wait=False, cancel_futures=True)
            try:
                await self.dispatch.close()
            finally:
                await self.store.close()
        log.info("engine %s stopped", self.node_id)

    async def _hand_back_queued(self) -> None:
        tasks = self.memory.drain()
        # Superseded leases go back too: whatever stale copy is still here, its report is
        # refused, so nothing is lost by letting another replica run the task.
        superseded, self._superseded = sorted(self._superseded), set()
        if not tasks and not superseded:
            return
        for task in tasks:
            self._live.pop(task.id, None)
        ids = [t.id for t in tasks] + superseded
        # Let reports about these tasks (a retry scheduled, say) reach the record tier first.
        await self.flusher.run_once()
        await self.dispatch.release(self.node_id, ids)
        log.info("handed back %d queued tasks", len(ids))

    # ---- submission ------------------------------------------------------------------------

    async def submit_many(self, tasks: Sequence[Task]) -> list[Submitted]:
        """Make ``tasks`` durable and queue them. Tasks are fully formed (ids, states, times)
        by the caller; dependencies are checked here."""
        if self.draining:
            raise ShuttingDown("not accepting tasks: shutting down")
        now = self.clock()
        await self._check_dependencies(tasks)
        horizon = now + (0.0 if self.distributed else 5.0)
        room = self.room()
        mine: list[Task] = []
        for task in tasks:
            if room > 0 and task.state is not TaskState.PENDING and task.run_at <= horizon:
                task.lease_owner = self.node_id
                mine.append(task)
                room -= 1
        self._reserved += len(mine)
        try:
            stored = await self.committer.submit(tasks)
        finally:
            self._reserved -= len(mine)
        results: list[Submitted] = []
        # Several tasks of one batch may share a key: each duplicate gets the holder's task.
        duplicates: dict[str, list[int]] = {}
        for index, (task, stored_id) in enumerate(zip(tasks, stored, strict=True)):
            if stored_id == task.id:
                results.append(Submitted(task, True))
            else:
                duplicates.setdefault(stored_id, []).append(index)
                results.append(Submitted(task, False))
        if duplicates:
            existing = {t.id: t for t in await self.store.task_get_many(list(duplicates))}
            for stored_id, indexes in duplicates.items():
                for index in indexes:
                    results[index] = Submitted(existing.get(stored_id, tasks[index]), False)
            # A duplicate's own id was never stored: it must not be queued either.
            dup_tasks = {id(tasks[i]) for indexes in duplicates.values() for i in indexes}
            mine = [t for t in mine if id(t) not in dup_tasks]
        new = [r.task for r in results if r.created]
        if self.distributed:
            # The group's write-through cleared the lease of tasks it could not hand to Redis.
            mine = [t for t in mine if t.lease_owner == self.node_id]
        elif len(mine) < len(new):
            self.pager.poke()
        live = self._live
        for task in mine:
            live[task.id] = task
        self.memory.push_many(mine)
        self._count_submitted(new)
        waiting = [t for t in new if t.state is TaskState.PENDING]
        if waiting:
            self._pending_deps = True
            # A dependency that finished (or was already failed or cancelled) before these
            # rows were committed will never trigger another release: resolve them now.
            await self._release_dependents(sorted({d for t in waiting for d in t.depends_on}))
        return results

    async def _commit_group(self, tasks: Sequence[Task]) -> list[str]:
        """One group commit: every submission waiting meanwhile, in one record transaction,
        then (distributed) one write-through to the dispatch tier for the whole group."""
        stored = await self.store.task_insert_many(tasks)
        if self.distributed:
            new = [t for t, sid in zip(tasks, stored, strict=True) if sid == t.id]
            await self._write_through(new)
        return stored

    async def _write_through(self, new: list[Task]) -> None:
        node = self.node_id
        mine = [t for t in new if t.lease_owner == node]
        shared = [t for t in new if t.lease_owner != node and t.state is not TaskState.PENDING]
        now = self.clock()
        # On failure the tasks are still durable in the record tier, so the answer is still
        # 201; they reach the dispatch tier by the rebuild that runs once it answers again.
        if mine:
            try:
                await self.dispatch.enqueue_many(mine, node, now)
            except Exception as exc:
                log.warning("write-through failed (%s); rebuild pending", exc)
                self.needs_rebuild = True
                # Held copies are given up (without a lease their reports would be refused).
                # Redis may have applied the call before failing: release whatever lease it
                # holds for us once it answers, or those tasks would wait for our death.
                for task in mine:
                    task.lease_owner = None
                self._unreleased.extend(t.id for t in mine)
        if shared:
            try:
                await self.enqueue_shared(shared)
            except Exception as exc:
                log.warning("write-through failed (%s); rebuild pending", exc)

    def _count_submitted(self, tasks: Sequence[Task]) -> None:
        by_type: dict[str, int] = {}
        for task in tasks:
            by_type[task.type] = by_type.get(task.type, 0) + 1
        for type_name, n in by_type.items():
            self.metrics.tasks_submitted.labels(type_name).inc(n)

    def _on_promoted(self, tasks: list[Task]) -> None:
        now = self.clock()
        for task in tasks:
            if task.state is TaskState.SCHEDULED:
                task.state = TaskState.QUEUED
                task.updated_at = now
                self.flusher.add(
                    Transition(
                        task.id, task.attempt, TaskState.QUEUED, now, lease_owner=self.node_id
                    )
                )

    # ---- after a batch is durable ------------------------------------------------------------

    def _on_rejected(self, task_id: str) -> None:
        """The record tier refused a transition for good: stop serving a finished copy of
        the task that it will never hold (reads fall back to the record)."""
        task = self._live.get(task_id)
        if task is not None and task.state in TERMINAL_STATES:
            del self._live[task_id]

    async def _on_flushed(self, transitions: list[Transition], refused: list[str]) -> None:
        live = self._live
        metrics = self.metrics
        finished: list[str] = []
        completed: dict[str, int] = {}
        cancelled: dict[str, int] = {}
        # The histogram child of each type, looked up once per batch: labels() per task cost
        # more than the observation itself.
        observers: dict[str, Callable[[float], None]] = {}
        terminal = TERMINAL_STATES
        succeeded = TaskState.SUCCEEDED
        for t in transitions:
            state = t.state
            if state in terminal:
                task_id = t.task_id
                finished.append(task_id)
                task = live.get(task_id)
                if task is None:
                    continue
                if task.attempt <= t.attempt and task.state in terminal:
                    del live[task_id]
                type_name = task.type
                if state is succeeded:
                    completed[type_name] = completed.get(type_name, 0) + 1
                    if t.started_at is not None and t.finished_at is not None:
                        observe = observers.get(type_name)
                        if observe is None:
                            observe = metrics.execution_seconds.labels(type_name).observe
                            observers[type_name] = observe
                        observe(t.finished_at - t.started_at)
                elif state is TaskState.CANCELLED:
                    cancelled[type_name] = cancelled.get(type_name, 0) + 1
        for type_name, n in completed.items():
            metrics.tasks_completed.labels(type_name).inc(n)
        for type_name, n in cancelled.items():
            metrics.tasks_cancelled.labels(type_name).inc(n)
        if refused:
            metrics.stale_reports.inc(len(refused))
            log.warning("%d reports refused as stale (fencing token)", len(refused))
            for task_id in refused:
                task = live.get(task_id)
                if task is not None and task.state in TERMINAL_STATES:
                    del live[task_id]
        if finished and self._pending_deps:
            await self._release_dependents_safely(finished)
