"""State shared by the engine's parts, and the small operations they all use.

``Engine.__init__`` builds the state; this class only declares it, so each part
(``recovery``, ``control``, the engine itself) type-checks on its own module.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from tierq.config import Settings
from tierq.engine.errors import (
    InvalidDependency,
)
from tierq.engine.handlers.base import HandlerRegistry
from tierq.engine.model import Task, TaskState, Transition
from tierq.metrics import Metrics
from tierq.storage.base import Ack, Dispatch, RecordStore

if TYPE_CHECKING:
    from tierq.engine.committer import GroupCommitter
    from tierq.engine.flusher import Flusher
    from tierq.engine.liveness import Heartbeat, Rescuer
    from tierq.engine.looplag import LoopLagMonitor
    from tierq.engine.memory import MemoryTier
    from tierq.engine.pager import Pager, WorkWatcher
    from tierq.engine.workers import WorkerPool

log = logging.getLogger("tierq.engine")


class EngineCore:
    settings: Settings
    store: RecordStore
    dispatch: Dispatch
    registry: HandlerRegistry
    metrics: Metrics
    node_id: str
    clock: Callable[[], float]
    distributed: bool
    memory: MemoryTier
    committer: GroupCommitter
    flusher: Flusher
    pager: Pager
    heartbeat: Heartbeat
    rescuer: Rescuer
    watcher: WorkWatcher
    loop_lag: LoopLagMonitor
    workers: WorkerPool
    sync_executor: ThreadPoolExecutor
    claim_batch: int
    # Tasks this process holds (memory tier, running, or terminal but not yet flushed):
    # reads see them before their state reaches the record tier.
    _live: dict[str, Task]
    _reserved: int  # memory slots promised to submissions being committed
    # Tasks being cancelled in the lower tiers -> a copy the pager claimed meanwhile.
    _cancelling: dict[str, Task | None]
    # Ids another replica announced as cancelled that were not held here, until when a claim
    # bringing one in must honour it (a claim may be in flight during the announcement).
    _announced_cancels: dict[str, float]
    _pending_deps: bool  # pending (dependency-waiting) tasks may exist
    _generation: str  # the dispatch tier's generation this replica last saw
    lease_deadline: float
    _lease_event: asyncio.Event | None
    _wait_observers: dict[str, Callable[[float], None]]
    needs_rebuild: bool  # a write-through failed: offer the record tier again
    _unreleased: list[str]  # leases Redis may hold for us after a failed call
    # Leases claimed for a task this process still holds an older copy of (the dispatch
    # tier was rebuilt under it): released once that copy is gone, see accept_claimed.
    _superseded: set[str]
    _unreleased_dependents: list[str]  # finished tasks whose dependents wait for a retry
    started_at: float
    draining: bool
    ready: bool

    # ---- memory room -------------------------------------------------------------------------

    def room(self) -> int:
        return self.memory.room() - self._reserved

    def reserve(self, slots: int) -> None:
        """Promise (or, negative, give back) memory slots to tasks on their way in."""
        self._reserved += slots

    def accept_claimed(self, tasks: Sequence[Task]) -> None:
        """Tasks leased to this process by the pager go into the memory tier."""
        live = self._live
        fresh = [t for t in tasks if t.id not in live]
        if len(fresh) < len(tasks):
            # The held copy predates this lease (a rebuild offered the task again while it
            # ran or waited here), so its report will be refused. Keeping the new lease
            # without the task would strand it (we stay alive, so nobody rescues it), and
            # running both here would clash on the id: the lease goes back once the old
            # copy is gone (repair_dispatch), and the task runs again then.
            self._superseded.update(t.id for t in tasks if t.id in live)
        if self._cancelling:
            for task in fresh:
                if task.id in self._cancelling:
                    self._cancelling[task.id] = task
            fresh = [t for t in fresh if t.id not in self._cancelling]
        if self._announced_cancels:
            # Cancelled by another replica while this claim was in flight: the announcement
            # found nothing here then, so it is honoured now (the lease is settled, not run).
            now = self.clock()
            keep = []
            for task in fresh:
                if self._announced_cancels.pop(task.id, 0.0) > now:
                    live[task.id] = task
                    self._record_cancel(task)
                else:
                    keep.append(task)
            fresh = keep
        for task in fresh:
            live[task.id] = task
        self.memory.push_many(fresh)

    def _record_cancel(self, task: Task) -> None:
        """Cancel a task this process holds but has not started: record it cancelled and,
        distributed, settle the lease it was granted for the attempt it would have run."""
        now = self.clock()
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
            Ack(task.id, task.attempt + 1, TaskState.CANCELLED) if self.distributed else None,
        )

    def forget(self, task_id: str) -> None:
        """This process no longer holds the task (handed to the shared tier)."""
        self._live.pop(task_id, None)

    # ---- the dispatch tier -------------------------------------------------------------------

    async def enqueue_shared(self, tasks: Sequence[Task]) -> None:
        """Offer durable tasks to every replica; on failure the next rebuild offers them."""
        try:
            await self.dispatch.enqueue_many(tasks, None, self.clock())
        except Exception:
            self.needs_rebuild = True
            raise

    # ---- dependencies ------------------------------------------------------------------------

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

    async def _release_dependents_safely(self, finished: list[str]) -> None:
        """Resolve dependents; on a tier failure keep the ids and try again on a later
        heartbeat (the batch itself is durable: only the release is retried)."""
        try:
            # Distributed, any replica may add dependents, so there is no local flag to
            # trust; the record tier's maintained counts are one cheap read instead of
            # sending every finished id. A dependent committed after this read resolves
            # itself: its submission releases it once committed (submit_many).
            if self.distributed and (await self.store.task_counts())[TaskState.PENDING] == 0:
                return
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

    # ---- leases, metrics, introspection ----------------------------------------------------

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

    def on_attempt_failed(self, task: Task, final: bool) -> None:
        self.metrics.tasks_failed.labels(task.type, "true" if final else "false").inc()

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
