"""The engine: the facade the API speaks to, and the place its services are composed.

submit -> group commit to the record tier (committer) -> (distributed) write-through to the
dispatch tier (repair) -> memory tier, if it has room, leased to this process (held) -> worker
(workers) -> flusher (batched acks to the dispatch tier, then batched transitions to the record
tier) -> what a durable batch finished: held copies let go (held), metrics (instruments),
dependents released (dependencies).

Each service owns its state and is handed what it uses; the wiring is all here, in
``__init__``. No HTTP, no SQL, no Redis commands: only the storage interfaces.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from tierq import tracing
from tierq.config import Settings
from tierq.engine.actions import TaskActions
from tierq.engine.cancellation import Cancellation
from tierq.engine.committer import GroupCommitter
from tierq.engine.dependencies import Dependencies
from tierq.engine.errors import FieldError, InvalidDependency, ShuttingDown, Submitted
from tierq.engine.eventing import Eventing
from tierq.engine.events import event_type_of
from tierq.engine.flow import FlowControl
from tierq.engine.flusher import Flusher
from tierq.engine.handlers.base import HandlerRegistry
from tierq.engine.held import HeldTasks
from tierq.engine.instruments import EngineMetrics
from tierq.engine.intake import TaskIn, build_task, build_tasks
from tierq.engine.leases import LeaseClock
from tierq.engine.liveness import Heartbeat, Rescuer
from tierq.engine.looplag import LoopLagMonitor
from tierq.engine.memory import MemoryTier
from tierq.engine.notify.service import Notifications
from tierq.engine.pager import Pager, WorkHint, WorkWatcher
from tierq.engine.repair import DispatchRepair
from tierq.engine.reporting import Lifecycle, Reporter
from tierq.engine.retention import Retention
from tierq.engine.schedules.service import Admission, Schedules
from tierq.engine.service import Service
from tierq.engine.workers import RetryPolicy, WorkerPool
from tierq.metrics import Metrics
from tierq.model import (
    TERMINAL_STATES,
    EventType,
    Execution,
    Task,
    TaskFilter,
    TaskPage,
    TaskState,
    Transition,
)
from tierq.storage.base import Dispatch, RecordStore
from tierq.storage.breakers import BreakerPolicy, BreakerStore, InProcessBreakerStore
from tierq.storage.eventlog import EventLog
from tierq.storage.leader import AlwaysLeader, Leader
from tierq.storage.notifications import NotificationStore
from tierq.storage.queues import QueueStore
from tierq.storage.rollups import RollupStore
from tierq.storage.schedules import ScheduleStore
from tierq.storage.sinks import EventSink

log = logging.getLogger("tierq.engine")


# Embedded, a submission due within this many seconds is kept in memory (its timer heap);
# distributed, only tasks due now are (the rest wait in Redis for whichever replica is free).
EMBEDDED_HOLD_AHEAD_S = 5.0
MAX_CLAIM = 1000
Commit = Callable[[Sequence[Task]], Awaitable[Sequence[str | None]]]


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
        event_log: EventLog | None = None,
        notification_store: NotificationStore | None = None,
        event_sink: EventSink | None = None,
        schedule_store: ScheduleStore | None = None,
        leader: Leader | None = None,
        queue_store: QueueStore | None = None,
        breaker_store: BreakerStore | None = None,
        rollup_store: RollupStore | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.dispatch = dispatch
        self.registry = registry
        self.metrics = metrics
        self.node_id = node_id
        self.clock = clock
        self.distributed = distributed = dispatch.capabilities.shared
        self.instruments = EngineMetrics(metrics)
        # Events: made where a batch is durable (the committer's group, the flusher's batch,
        # the direct record writes of cancel and retry), published on the bus.
        self.eventing = eventing = Eventing(
            settings, node_id, clock, self.instruments, event_log, event_sink
        )
        self.events, self.bus, self.feed = eventing.source, eventing.bus, eventing.feed
        self.log_writer, self.trimmer = eventing.log_writer, eventing.trimmer
        self.memory = MemoryTier(settings.memory_limit, clock)
        self.held = held = HeldTasks(self.memory)
        self.hint = hint = WorkHint()
        self.leases = LeaseClock(
            settings.heartbeat_ttl_s, settings.heartbeat_s, expires=dispatch.capabilities.shared
        )
        self.committer = GroupCommitter(
            self._commit_group,
            settings.commit_window_ms / 1000.0,
            max_small_inflight=settings.commit_small_slots,
        )
        self.flusher = flusher = Flusher(
            # The generation last seen: a tier that lost its data refuses to settle (repair.py).
            ack_many=lambda acks: dispatch.ack_many(node_id, acks, clock(), self.repair.generation),
            confirm_many=lambda ids: dispatch.confirm_many(node_id, ids),
            transition_many=store.task_transition_many,
            on_flushed=self._on_flushed,
            interval_s=settings.flush_interval_ms / 1000.0,
            batch_size=store.capabilities.transition_batch,
            on_rejected=self._on_rejected,
        )
        # Deliveries are accepted like submissions (held here when there is room, so their
        # priority puts them before a backlog) and run by the same workers.
        self.notifications = (
            Notifications(
                settings,
                notification_store,
                registry,
                self.instruments,
                self.events,
                self.bus.publish,
                self._submit_internal,
                clock,
            )
            if notification_store is not None
            else None
        )
        if self.notifications is not None:
            self.bus.subscribe(self.notifications.notifier)
        self.repair = DispatchRepair(
            store, dispatch, held, hint, clock, node_id, flusher.pending_acks
        )
        self.dependencies = Dependencies(
            store, held, self.repair.enqueue_shared, hint, clock, distributed, self._on_cancelled
        )
        # Plain (sync) handlers run here: one thread per worker at most, so a worker never
        # waits for a thread behind DNS lookups in asyncio's small default pool.
        self.sync_executor = ThreadPoolExecutor(
            max_workers=settings.workers, thread_name_prefix="tierq-sync"
        )
        self.workers = WorkerPool(
            settings.workers,
            held,
            flusher,
            registry,
            self.leases,
            self.instruments,
            RetryPolicy(settings.retry_base_ms / 1000.0, settings.retry_max_ms / 1000.0),
            self.sync_executor,
            clock,
            node_id,
            shared=distributed,
        )
        self.cancellation = Cancellation(
            held,
            store,
            dispatch,
            self.dependencies,
            self.get,
            self.workers.request_cancel,
            flusher,
            flusher.run_once,
            clock,
            self._on_cancelled,
        )
        self.actions = TaskActions(
            held,
            store,
            self.feed,
            flusher,
            self.cancellation,
            self.events,
            self.bus.publish,
            self.repair.enqueue_shared if distributed else None,
            hint,
            clock,
        )
        # Flow control: breakers, queue controls and the gate the workers pass.
        self.flow = flow = FlowControl(
            settings,
            queue_store,
            breaker_store or InProcessBreakerStore(BreakerPolicy.of(settings)),
            dispatch,
            held,
            flusher,
            self.events,
            self.bus.publish,
            self.instruments,
            clock,
            node_id,
            hint.poke,
        )
        self.workers.gate, self.workers.breakers = flow.gate, flow.breakers
        self.pager = Pager(
            held,
            claim=lambda limit, now: dispatch.claim(node_id, limit, now, flow.gate.skip_queues()),
            accept=self.cancellation.accept_claimed,
            hint=hint,
            clock=clock,
            tick_s=0.25 if distributed else 1.0,
            batch=max(1, min(MAX_CLAIM, settings.memory_limit)),
        )
        self.heartbeat = Heartbeat(self._beat, self._after_beat, clock, settings.heartbeat_s)
        self.rescuer = Rescuer(dispatch.rescue, flusher, hint, clock, settings.heartbeat_s)
        self.watcher = WorkWatcher(dispatch.wait_for_work, hint)
        self.loop_lag = LoopLagMonitor(metrics.loop_lag_seconds.observe)
        self.memory.on_promoted = self._on_promoted
        dispatch.listen_cancel(self.cancellation.on_announced)
        if registry.external is not None:  # outside workers' reports, from any replica
            dispatch.listen_report(registry.external.on_announced)
        # Schedules: the API's operations, the scheduler (leader only), run outcomes.
        self.schedules = (
            Schedules(
                settings,
                schedule_store,
                leader or AlwaysLeader(),
                registry,
                dispatch,
                Admission(self._accept, self._after_insert, held.get, store.task_get_many),
                self.cancellation.cancel,
                self.instruments,
                clock,
                node_id,
                alone=store.capabilities.shared and not distributed,  # edits not announced
            )
            if schedule_store is not None
            else None
        )
        if self.schedules is not None:
            self.bus.subscribe(self.schedules.outcomes.on_events)
        forget = notification_store.deliveries_forget if notification_store else None
        self.retention = Retention(settings, store, forget, clock)
        self.lifecycle = Lifecycle(started_at=clock())
        self.reports = Reporter(
            store,
            dispatch,
            self.memory,
            self.workers,
            flusher,
            self.instruments,
            self.lifecycle,
            node_id,
            clock,
            listeners=lambda: self.feed.listeners,
            rollup_store=rollup_store if settings.metrics_rollups else None,
        )
        self.bus.subscribe(self.reports.on_events)
        self._supervisor: asyncio.Task[None] | None = None
        self._services: list[Service] = []
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._shutdown_done: asyncio.Event | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the tiers, recover, and start services and workers (in one TaskGroup)."""
        await self.store.open()
        await self.dispatch.open()
        await self.eventing.open()
        await self.flow.open()
        await self._recover()
        self._services = [
            self.committer,
            self.flusher,
            self.pager,
            self.heartbeat,
            self.loop_lag,
            *self.eventing.loops,
            *self.eventing.forwarders,
            *self.flow.services,
        ]
        if self.schedules is not None:
            self._services.append(self.schedules.outcomes)
            if self.settings.schedules:
                self._services.append(self.schedules.scheduler)
        if self.retention.enabled:
            self._services.append(self.retention)
        if self.reports.rollups is not None:
            self._services.append(self.reports.rollups)
        if self.dispatch.capabilities.leases_expire:
            self._services.append(self.rescuer)
        if self.dispatch.capabilities.shared:
            self._services.append(self.watcher)
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._supervisor = asyncio.create_task(self._supervise(started), name="tierq-engine")
        await started
        self.lifecycle.ready = True
        mode, settings = "distributed" if self.distributed else "embedded", self.settings
        log.info(
            "engine %s started: %d workers, memory limit %d, %s mode",
            *(self.node_id, settings.workers, settings.memory_limit, mode),
        )

    async def _recover(self) -> None:
        """Start-up recovery. Embedded: this process owns the store, so every lease and every
        running task belongs to a dead predecessor. Distributed: dead replicas' leases are
        rescued by the rescuer; the dispatch tier is rebuilt from the record tier when it has
        lost its data (this replica is the first to see it empty)."""
        if not self.distributed:
            await self.store.task_recover(self.clock(), None)
        else:
            await self.repair.open()
        await self.dependencies.recover()

    async def _supervise(self, started: asyncio.Future[None]) -> None:
        self._shutdown_done = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            for service in self._services:
                group.create_task(service.run(), name=f"tierq-{service.name}")
            self._worker_tasks = [
                group.create_task(self.workers.run_worker(i), name=f"tierq-worker-{i}")
                for i in range(self.workers.size)
            ]
            self.instruments.workers(self.workers.size)
            started.set_result(None)
            await self._shutdown_done.wait()

    async def stop(self) -> None:
        """Graceful shutdown: stop taking work, let running tasks finish within the grace
        period, hand back everything else, flush every batch, close the tiers."""
        if self._supervisor is None:
            return
        self.lifecycle.draining = True
        self.lifecycle.ready = False
        self.feed.close_all()
        self.pager.request_stop()
        if self.schedules is not None:
            # First: no tick fires into a draining engine; the lease goes to another replica.
            await self.schedules.scheduler.stop()
        await self._hand_back_queued()
        try:
            async with asyncio.timeout(self.settings.shutdown_grace_s):
                await self.workers.wait_idle()
        except TimeoutError:
            log.warning("grace period over: interrupting %d running tasks", self.workers.busy)
        for worker in self._worker_tasks:
            worker.cancel()
        await asyncio.gather(*self._worker_tasks, return_exceptions=True)
        for service in (self.heartbeat, self.rescuer, self.watcher, self.loop_lag, self.retention):
            service.request_stop()
        self.flow.controls.request_stop()
        for loop in self.eventing.loops:
            loop.request_stop()
        # One after the other: the flusher's last batches publish events (and notifications
        # submit deliveries to the committer); the log writer appends what both published.
        draining: list[Service] = [self.flusher, self.committer, *self.eventing.forwarders]
        if self.reports.rollups is not None:
            draining.insert(1, self.reports.rollups)  # after the flusher's last events
        if self.flow.breakers is not None:
            draining.insert(0, self.flow.breakers)
        if self.schedules is not None:
            draining.insert(1, self.schedules.outcomes)
        try:
            for step in draining:
                await step.stop()
        finally:
            for step in draining:
                step.request_stop()
            assert self._shutdown_done is not None
            self._shutdown_done.set()
        supervisor, self._supervisor = self._supervisor, None
        try:
            await supervisor
        finally:
            # Even if the last flush failed: release connections, threads and the file lock.
            # What was not written is not lost: the record tier still holds those tasks as
            # live, and recovery runs them again.
            self.memory.close()
            self.sync_executor.shutdown(wait=False, cancel_futures=True)
            await self.flow.close()
            if self.notifications is not None:
                await self.notifications.close()
            try:
                await self.dispatch.close()
            finally:
                try:
                    await self.store.close()
                finally:
                    await self.eventing.close()
        log.info("engine %s stopped", self.node_id)

    async def _hand_back_queued(self) -> None:
        tasks = self.held.drop_queued() + self.flow.gate.drain_parked()
        # Superseded leases go back too: whatever stale copy is still here, its report is
        # refused, so nothing is lost by letting another replica run the task.
        superseded = self.held.take_superseded(everything=True)
        if not tasks and not superseded:
            return
        ids = [t.id for t in tasks] + superseded
        # Let reports about these tasks (a retry scheduled, say) reach the record tier first.
        await self.flusher.run_once()
        await self.dispatch.release(self.node_id, ids)
        log.info("handed back %d queued tasks", len(ids))

    # ---- after each heartbeat ----------------------------------------------------------------

    async def _beat(self, checked_at: float) -> bool:
        settings = self.settings
        return await self.dispatch.heartbeat(
            self.node_id, settings.heartbeat_ttl_s, checked_at, self.reports.replica_info()
        )

    async def _after_beat(self, registered: bool, checked_at: float) -> None:
        if self.distributed:
            # Drop what was rescued from us first, then let workers start tasks again; the
            # repairs (releases, a rebuild) may fail without holding the workers back.
            await self.repair.check(registered)
            self.leases.renew(checked_at)
            await self.repair.repair()
        await self.dependencies.retry_deferred()

    # ---- submission ------------------------------------------------------------------------

    async def submit(
        self, specs: Sequence[TaskIn], batch: bool, tenant: str = "default", request: str = ""
    ) -> list[Submitted]:
        """Validate decoded task specs, build the tasks (ids, times, initial state) of
        ``tenant``, submitted by ``request`` (its id), and make them durable. Errors name the
        field path as the client sent it (``$`` for a single task, ``$[i]`` in a batch)."""
        built = (self.settings, self.registry, self.clock())
        tasks = build_tasks(list(specs), *built) if batch else [build_task(specs[0], "$", *built)]
        trace = tracing.traceparent()  # the submission's span (None: tracing off)
        if tenant != "default" or request or trace:  # built for default, no request, no trace
            for task in tasks:
                task.tenant, task.request_id, task.traceparent = tenant, request or None, trace
        try:
            return await self.submit_many(tasks)
        except InvalidDependency as exc:
            # Positions count in the de-duplicated depends_on; the path must point into what
            # the client sent.
            position = specs[exc.index].depends_on.index(exc.dep_id)
            prefix = f"$[{exc.index}]" if batch else "$"
            raise FieldError(f"{prefix}.depends_on[{position}]", f"no task {exc.dep_id}") from None

    async def submit_many(self, tasks: Sequence[Task]) -> list[Submitted]:
        """Make fully formed ``tasks`` durable and queue them; dependencies are checked here."""
        if self.lifecycle.draining:
            raise ShuttingDown("not accepting tasks: shutting down")
        return await self._accept(tasks)

    async def _submit_internal(self, tasks: Sequence[Task]) -> list[Submitted]:
        """Tasks the engine makes itself (notification deliveries): accepted like a
        submission, also while draining (the last flush at shutdown still notifies; those
        are then left to the lower tiers, not held here)."""
        return await self._accept(tasks)

    async def _accept(self, tasks: Sequence[Task], commit: Commit | None = None) -> list[Submitted]:
        """Make ``tasks`` durable through ``commit`` (the group committer by default) and
        queue them. ``commit`` returns, task for task, the id stored (its own, or the holder
        of its idempotency key), or None for a task it did not store."""
        now = self.clock()
        await self.dependencies.check(tasks)
        horizon = now + (0.0 if self.distributed else EMBEDDED_HOLD_AHEAD_S)
        held = self.held
        room = held.room() if not self.lifecycle.draining else 0
        mine: list[Task] = []
        may_hold = self.flow.gate.may_hold  # not a paused or (distributed) limited queue
        for task in tasks:
            if room > 0 and task.state is not TaskState.PENDING and task.run_at <= horizon:
                if not may_hold(task):
                    continue
                task.lease_owner = self.node_id
                mine.append(task)
                room -= 1
        held.reserve(len(mine))
        try:
            stored = await (commit or self.committer.submit)(tasks)
        finally:
            held.reserve(-len(mine))
        results: list[Submitted] = []
        # Several tasks of one batch may share a key: each duplicate gets the holder's task.
        duplicates: dict[str, list[int]] = {}
        for index, (task, stored_id) in enumerate(zip(tasks, stored, strict=True)):
            if stored_id == task.id:
                results.append(Submitted(task, True))
            elif stored_id is None:
                results.append(Submitted(task, False))
            else:
                duplicates.setdefault(stored_id, []).append(index)
                results.append(Submitted(task, False))
        if duplicates:
            existing = {t.id: t for t in await self.store.task_get_many(list(duplicates))}
            for stored_id, indexes in duplicates.items():
                for index in indexes:
                    results[index] = Submitted(existing.get(stored_id, tasks[index]), False)
        new = [r.task for r in results if r.created]
        if len(new) < len(tasks):
            kept = {id(t) for t in new}
            mine = [t for t in mine if id(t) in kept]
        if self.distributed:
            # The group's write-through cleared the lease of tasks it could not hand to Redis.
            mine = [t for t in mine if t.lease_owner == self.node_id]
        elif len(mine) < len(new):
            self.hint.poke()
        held.push(mine)
        await self.dependencies.submitted(new)
        return results

    async def _commit_group(self, tasks: Sequence[Task]) -> list[str]:
        """One group commit: every submission waiting meanwhile, in one record transaction,
        then (distributed) one write-through to the dispatch tier for the whole group."""
        stored = await self.store.task_insert_many(tasks)
        await self._after_insert(tasks, stored)
        return stored

    async def _after_insert(self, tasks: Sequence[Task], stored: Sequence[str | None]) -> None:
        created = [t for t, sid in zip(tasks, stored, strict=True) if sid == t.id]
        # Published before the write-through: no replica can claim (and report on) a task
        # before its ``submitted`` event is in the log.
        await self.bus.publish(self.events.submitted(created))
        if self.distributed:
            await self.repair.write_through(created)

    def _on_promoted(self, tasks: list[Task]) -> None:
        """Delayed tasks held here came due (memory tier timer)."""
        now = self.clock()
        for task in tasks:
            if task.state is TaskState.SCHEDULED:
                task.move(TaskState.QUEUED, now)
                self.flusher.add(
                    Transition(
                        task.id, task.attempt, TaskState.QUEUED, now, lease_owner=self.node_id
                    )
                )

    # ---- after a batch is durable ------------------------------------------------------------

    def _on_rejected(self, task_id: str) -> None:
        """The record tier refused a transition for good."""
        self.instruments.record_rejected()
        self.held.drop_finished(task_id)

    async def _on_flushed(self, transitions: list[Transition], refused: list[str]) -> None:
        # Reports without their task (rescued leases) find it in the record tier: one read.
        missing = [t.task_id for t in transitions if t.task is None and event_type_of(t)]
        looked_up: dict[str, Task] = {}
        if missing:
            try:
                looked_up = {t.id: t for t in await self.store.task_get_many(missing)}
            except Exception as exc:
                log.warning("events: could not read %d rescued tasks: %s", len(missing), exc)
        await self.bus.publish(self.events.flushed(transitions, looked_up))
        self.held.settle(transitions, refused)
        if refused:
            self.instruments.stale_reports(len(refused))
            log.warning("%d reports refused as stale (fencing token)", len(refused))
        await self.dependencies.finished(
            [t.task_id for t in transitions if t.state in TERMINAL_STATES]
        )

    async def _on_cancelled(self, ids: list[str]) -> None:
        """Tasks cancelled by a direct record write (in the tiers, or as dependents)."""
        await self.bus.publish(
            self.events.about(await self.store.task_get_many(ids), EventType.CANCELLED)
        )

    # ---- reads and user actions --------------------------------------------------------------

    async def get(self, task_id: str, tenant: str | None = None) -> Task:
        return await self.actions.get(task_id, tenant)

    async def wait_finished(
        self, task_id: str, timeout_s: float, tenant: str | None = None
    ) -> Task:
        return await self.actions.wait_finished(task_id, timeout_s, tenant)

    async def list_tasks(self, flt: TaskFilter) -> TaskPage:
        return await self.actions.page(flt)

    async def executions(self, task_id: str, tenant: str | None = None) -> list[Execution]:
        return await self.actions.executions(task_id, tenant)

    async def cancel(self, task_id: str, tenant: str | None = None) -> Task:
        return await self.actions.cancel(task_id, tenant)

    async def retry(self, task_id: str, tenant: str | None = None) -> Task:
        return await self.actions.retry(task_id, tenant)
