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
from dataclasses import dataclass

from tierq.config import Settings
from tierq.engine.committer import GroupCommitter
from tierq.engine.flusher import Flusher
from tierq.engine.handlers.base import HandlerRegistry
from tierq.engine.liveness import Heartbeat, Rescuer
from tierq.engine.memory import MemoryTier
from tierq.engine.model import (
    TERMINAL_STATES,
    Execution,
    Task,
    TaskFilter,
    TaskPage,
    TaskState,
    Transition,
)
from tierq.engine.pager import Pager, WorkWatcher
from tierq.engine.service import Service
from tierq.engine.workers import WorkerPool
from tierq.metrics import Metrics
from tierq.storage.base import Ack, Dispatch, RecordStore

log = logging.getLogger("tierq.engine")


class EngineError(Exception):
    """Base of the errors the API maps to 4xx answers."""


class NotFound(EngineError):
    pass


class Conflict(EngineError):
    """The task's state does not allow the operation."""

    def __init__(self, message: str, state: TaskState) -> None:
        super().__init__(message)
        self.state = state


class ShuttingDown(EngineError):
    pass


class InvalidDependency(EngineError):
    def __init__(self, index: int, position: int, dep_id: str) -> None:
        super().__init__(f"depends_on[{position}]: no task {dep_id}")
        self.index = index
        self.position = position
        self.dep_id = dep_id


@dataclass(frozen=True, slots=True)
class Submitted:
    task: Task
    created: bool  # False: an earlier task with the same idempotency key was returned


class Engine:
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
        self.committer = GroupCommitter(self._commit_group, settings.commit_window_ms / 1000.0)
        self.flusher = Flusher(
            ack_many=lambda acks: dispatch.ack_many(node_id, acks, clock()),
            confirm_many=lambda ids: dispatch.confirm_many(node_id, ids),
            transition_many=store.task_transition_many,
            on_flushed=self._on_flushed,
            interval_s=settings.flush_interval_ms / 1000.0,
        )
        self.pager = Pager(self, tick_s=0.25 if self.distributed else 1.0)
        self.heartbeat = Heartbeat(self)
        self.rescuer = Rescuer(self)
        self.watcher = WorkWatcher(self)
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
        self._services = [self.committer, self.flusher, self.pager, self.heartbeat]
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

    async def recover(self) -> None:
        """Start-up recovery. Embedded: this process owns the store, so every lease and every
        running task belongs to a dead predecessor. Distributed: dead replicas' leases are
        rescued by the rescuer; the dispatch tier is rebuilt from the record tier when it has
        lost its data (this replica is the first to see it empty)."""
        now = self.clock()
        if not self.distributed:
            await self.store.task_recover(now, None)
        else:
            self._generation, created = await self.dispatch.generation()
            if created:
                await self.rebuild_dispatch()
        counts = await self.store.task_counts()
        # Distributed: any replica may add dependents of the tasks this one finishes, so it
        # must always look for them (the flag never goes false; see _release_dependents).
        self._pending_deps = self.distributed or counts[TaskState.PENDING] > 0
        if counts[TaskState.PENDING]:
            await self._sweep_pending()

    async def _sweep_pending(self) -> None:
        """A crash between a task's final record write and the release of its dependents
        leaves them pending for good: resolve every pending task's dependencies once."""
        deps: set[str] = set()
        after: str | None = None
        while True:
            page = await self.store.task_list(
                TaskFilter(
                    states=(TaskState.PENDING,),
                    sort_field="created_at",
                    descending=False,
                    size=5000,
                    after_id=after,
                )
            )
            for task in page.items:
                deps.update(task.depends_on)
            if not page.has_more or not page.items:
                break
            after = page.items[-1].id
        if deps:
            await self._release_dependents(sorted(deps))

    async def rebuild_dispatch(self) -> int:
        """Put every queued, scheduled or running task of the record tier (back) into the
        dispatch tier, which skips the ones it still has. Running ones count: after a data
        loss nobody holds a lease on them any more, and a late completion is refused."""
        total = 0
        after: str | None = None
        while True:
            page = await self.store.task_list(
                TaskFilter(
                    states=(TaskState.QUEUED, TaskState.SCHEDULED, TaskState.RUNNING),
                    sort_field="created_at",
                    descending=False,
                    size=5000,
                    after_id=after,
                )
            )
            if page.items:
                await self.dispatch.enqueue_many(page.items, None, self.clock())
                total += len(page.items)
            if not page.has_more or not page.items:
                break
            after = page.items[-1].id
        self.needs_rebuild = False
        log.warning("rebuilt the dispatch tier: offered %d live tasks from the record tier", total)
        self.pager.poke()
        return total

    async def check_dispatch(self, registered: bool) -> None:
        """Called after each heartbeat (distributed): react to a dispatch tier that lost its
        data, to this replica having been declared dead, or to submissions whose
        write-through failed."""
        generation, created = await self.dispatch.generation()
        if generation != self._generation:
            log.warning("the dispatch tier lost its data (new generation %s)", generation)
            self._generation = generation
            dropped = self._drop_held("the dispatch tier was reset")
            # Another replica may have rebuilt the new generation first and our pager claimed
            # some of these from it: those leases are ours and alive (we heartbeat), so they
            # must go back or the tasks wait forever. Old-generation ids are no-ops here.
            await self.dispatch.release(self.node_id, dropped)
            if created:
                await self.rebuild_dispatch()
        elif not registered:
            self._drop_held("this replica was declared dead and its leases rescued")
        if self._unreleased:
            ids, self._unreleased = self._unreleased, []
            try:
                await self.dispatch.release(self.node_id, ids)
            except BaseException:
                self._unreleased = ids + self._unreleased
                raise
        if self.needs_rebuild:
            await self.rebuild_dispatch()

    async def retry_deferred(self) -> None:
        """Called after each heartbeat: finish work a tier failure deferred."""
        if self._unreleased_dependents:
            finished, self._unreleased_dependents = self._unreleased_dependents, []
            await self._release_dependents_safely(finished)

    def _drop_held(self, why: str) -> list[str]:
        """Forget queued tasks held in memory: their leases belong to someone else now.
        Running ones finish; their reports will be refused by the fencing token."""
        dropped = self.memory.drain()
        for task in dropped:
            self._live.pop(task.id, None)
        if dropped:
            log.warning("dropped %d held tasks: %s", len(dropped), why)
        return [t.id for t in dropped]

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
        for service in (self.heartbeat, self.rescuer, self.watcher, self.committer, self.flusher):
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
        if not tasks:
            return
        for task in tasks:
            self._live.pop(task.id, None)
        ids = [t.id for t in tasks]
        # Let reports about these tasks (a retry scheduled, say) reach the record tier first.
        await self.flusher.run_once()
        await self.dispatch.release(self.node_id, ids)
        log.info("handed back %d queued tasks", len(ids))

    # ---- submission ------------------------------------------------------------------------

    def room(self) -> int:
        return self.memory.room() - self._reserved

    def reserve(self, slots: int) -> None:
        """Promise (or, negative, give back) memory slots to tasks on their way in."""
        self._reserved += slots

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

    async def enqueue_shared(self, tasks: Sequence[Task]) -> None:
        """Offer durable tasks to every replica; on failure the next rebuild offers them."""
        try:
            await self.dispatch.enqueue_many(tasks, None, self.clock())
        except Exception:
            self.needs_rebuild = True
            raise

    async def _check_dependencies(self, tasks: Sequence[Task]) -> None:
        wanted = {d for t in tasks for d in t.depends_on}
        if not wanted:
            return
        in_batch = {t.id: t for t in tasks}
        outside = [d for d in wanted if d not in in_batch]
        found = {t.id: t for t in await self.store.task_get_many(outside)} if outside else {}
        for index, task in enumerate(tasks):
            if not task.depends_on:
                continue
            waiting = False
            for position, dep in enumerate(task.depends_on):
                dep_task = found.get(dep) or in_batch.get(dep)
                if dep_task is None or dep == task.id:
                    raise InvalidDependency(index, position, dep)
                live = self._live.get(dep)
                state = live.state if live is not None else dep_task.state
                if state is not TaskState.SUCCEEDED:
                    waiting = True
            if waiting:
                task.state = TaskState.PENDING

    def _count_submitted(self, tasks: Sequence[Task]) -> None:
        by_type: dict[str, int] = {}
        for task in tasks:
            by_type[task.type] = by_type.get(task.type, 0) + 1
        for type_name, n in by_type.items():
            self.metrics.tasks_submitted.labels(type_name).inc(n)

    def accept_claimed(self, tasks: Sequence[Task]) -> None:
        """Tasks leased to this process by the pager go into the memory tier."""
        live = self._live
        fresh = [t for t in tasks if t.id not in live]
        if self._cancelling:
            for task in fresh:
                if task.id in self._cancelling:
                    self._cancelling[task.id] = task
            fresh = [t for t in fresh if t.id not in self._cancelling]
        for task in fresh:
            live[task.id] = task
        self.memory.push_many(fresh)

    def forget(self, task_id: str) -> None:
        """This process no longer holds the task (handed to the shared tier)."""
        self._live.pop(task_id, None)

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

    def on_attempt_failed(self, task: Task, final: bool) -> None:
        self.metrics.tasks_failed.labels(task.type, "true" if final else "false").inc()

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

    async def _release_dependents_safely(self, finished: list[str]) -> None:
        """Resolve dependents; on a tier failure keep the ids and try again on a later
        heartbeat (the batch itself is durable: only the release is retried)."""
        try:
            await self._release_dependents(finished)
        except Exception as exc:
            log.warning("resolving dependents failed (%s); retrying after a heartbeat", exc)
            self._unreleased_dependents.extend(finished)

    async def _release_dependents(self, finished: list[str]) -> None:
        now = self.clock()
        release = await self.store.task_release_dependents(finished, now)
        if release.ready:
            if self.distributed:
                await self.enqueue_shared(release.ready)
            self.pager.poke()
        if release.cancelled:
            # Their own dependents must hear about it too.
            await self._release_dependents(release.cancelled)
        if not release.ready and not release.cancelled and not self.distributed:
            counts = await self.store.task_counts()
            self._pending_deps = counts[TaskState.PENDING] > 0

    # ---- control ---------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        task = self._live.get(task_id)
        if task is not None:
            return task
        found = await self.store.task_get(task_id)
        if found is None:
            raise NotFound(f"no task {task_id}")
        return found

    async def list_tasks(self, flt: TaskFilter) -> TaskPage:
        return await self.store.task_list(flt)

    async def executions(self, task_id: str) -> list[Execution]:
        await self.get(task_id)
        await self._flush_if_live(task_id)
        return await self.store.execution_list(task_id)

    async def _flush_if_live(self, task_id: str) -> None:
        if task_id in self._live:
            await self.flusher.run_once()

    async def cancel(self, task_id: str) -> Task:
        task = await self.get(task_id)
        # The pager may have claimed it while it was read from the store: act on the held copy.
        task = self._live.get(task_id, task)
        if task.state in TERMINAL_STATES:
            raise Conflict(
                f"task is {task.state.value}; only live tasks can be cancelled", task.state
            )
        if task_id in self._live:
            if task.state is TaskState.RUNNING:
                handler = self.workers.request_cancel(task_id)
                if handler is None:
                    # Past interruption (its handler has returned): its outcome stands. The
                    # record may still say queued, so cancelling there would contradict it.
                    raise Conflict("task is finishing and cannot be cancelled", task.state)
                await asyncio.wait((handler,), timeout=1.0)
                return task
            if task.state in (TaskState.QUEUED, TaskState.SCHEDULED):
                self._cancel_held(task)
                await self.flusher.run_once()
                return task
        now = self.clock()
        # The pager may claim the task while the tiers cancel it: a copy claimed meanwhile is
        # parked by accept_claimed (never queued, so it cannot run) and dropped if cancelled.
        self._cancelling[task_id] = None
        held_elsewhere = False
        try:
            if self.distributed:
                held_elsewhere = not await self.dispatch.cancel_many([task_id])
            done = await self.store.task_cancel_many([task_id], now)
        finally:
            parked = self._cancelling.pop(task_id, None)
        if held_elsewhere:
            # Leased by another replica (held in its memory, or running there): it drops or
            # interrupts its copy, and its report of the attempt (if any) ends it as cancelled.
            await self.dispatch.announce_cancel([task_id])
        if not done:
            if parked is not None:
                self.accept_claimed([parked])
            current = await self.get(task_id)
            if held_elsewhere and current.state is TaskState.RUNNING:
                return current
            raise Conflict(
                f"task is {current.state.value} and cannot be cancelled here", current.state
            )
        if self._pending_deps:
            await self._release_dependents(done)
        return await self.get(task_id)

    def _cancel_held(self, task: Task) -> None:
        """Cancel a task this process holds queued or delayed in its memory tier."""
        now = self.clock()
        self.memory.remove(task)
        task.state = TaskState.CANCELLED
        task.finished_at = task.updated_at = now
        task.last_error = "cancelled"
        self.flusher.add(
            Transition(
                task.id,
                task.attempt,
                TaskState.CANCELLED,
                now,
                finished_at=now,
                error="cancelled",
                lease_owner=None,
            ),
            # The lease was granted for the attempt it would have run.
            Ack(task.id, task.attempt + 1, TaskState.CANCELLED) if self.distributed else None,
        )

    def _on_cancel_announced(self, ids: list[str]) -> None:
        """Another replica cancelled tasks; drop or interrupt the ones held here."""
        for task_id in ids:
            task = self._live.get(task_id)
            if task is None:
                continue
            if task.state is TaskState.RUNNING:
                self.workers.request_cancel(task_id)
            elif task.state in (TaskState.QUEUED, TaskState.SCHEDULED):
                self._cancel_held(task)

    async def retry(self, task_id: str) -> Task:
        await self.get(task_id)
        await self._flush_if_live(task_id)
        task = await self.get(task_id)
        if task.state not in (TaskState.FAILED, TaskState.CANCELLED):
            raise Conflict(
                f"task is {task.state.value}; only failed or cancelled tasks can be retried",
                task.state,
            )
        changed = await self.store.task_retry_many([task_id], self.clock())
        if not changed:
            current = await self.get(task_id)
            raise Conflict(f"task is {current.state.value}", current.state)
        fresh = await self.get(task_id)
        if self.distributed:
            await self.enqueue_shared([fresh])
        self.pager.poke()
        return fresh

    # ---- introspection ---------------------------------------------------------------------

    def renew_leases(self, checked_at: float) -> None:
        """A heartbeat sent at ``checked_at`` found this replica registered."""
        settings = self.settings
        self.lease_deadline = checked_at + settings.heartbeat_ttl_s - settings.heartbeat_s
        if self._lease_event is not None:
            self._lease_event.set()

    async def lease_renewed(self) -> None:
        if self._lease_event is None:
            self._lease_event = asyncio.Event()
        self._lease_event.clear()
        await self._lease_event.wait()

    def observe_wait(self, type_name: str, seconds: float) -> None:
        """Time from due (run_at) to start, per task type."""
        observe = self._wait_observers.get(type_name)
        if observe is None:
            observe = self.metrics.wait_seconds.labels(type_name).observe
            self._wait_observers[type_name] = observe
        observe(seconds)

    def replica_info(self) -> dict[str, object]:
        return {
            "held": self.memory.held,
            "queued": self.memory.ready_count,
            "delayed": self.memory.delayed_count,
            "running": self.workers.busy,
            "workers": self.workers.size,
            "started_at": self.started_at,
        }

    def update_gauges(self) -> None:
        gauge = self.metrics.queue_depth
        gauge.labels("memory", "ready").set(self.memory.ready_count)
        gauge.labels("memory", "delayed").set(self.memory.delayed_count)
        gauge.labels("memory", "running").set(self.workers.busy)
        gauge.labels("memory", "unflushed").set(self.flusher.backlog)
        self.metrics.workers_busy.set(self.workers.busy)
