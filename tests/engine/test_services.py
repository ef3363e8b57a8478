"""Each engine service on its own, built from its explicit dependencies (no Engine): what it owns
and the invariant it keeps. Stores are real (SQLite in ``tmp_path``, Redis for the dispatch
repair); the callables a service is handed are plain functions that record their calls."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import REDIS_URL, purge_redis_prefix, record_task, wait_for
from tests.system.cluster import RedisServer
from tierq.engine.cancellation import Cancellation
from tierq.engine.dependencies import Dependencies
from tierq.engine.errors import Conflict, InvalidDependency, NotFound
from tierq.engine.events import EventSource
from tierq.engine.flusher import Flusher
from tierq.engine.handlers.base import Handler, HandlerRegistry, PermanentError, TaskContext
from tierq.engine.held import HeldTasks
from tierq.engine.instruments import EngineMetrics
from tierq.engine.leases import LeaseClock
from tierq.engine.liveness import Heartbeat, Rescuer
from tierq.engine.memory import MemoryTier
from tierq.engine.pager import Pager, WorkHint
from tierq.engine.repair import DispatchRepair
from tierq.engine.workers import RetryPolicy, WorkerPool
from tierq.metrics import Metrics
from tierq.model import IllegalTransition, Outcome, Task, TaskState, Transition
from tierq.storage.base import Ack, RecordStore, RescuedLease, StoreUnavailable
from tierq.storage.inprocess import InProcessDispatch
from tierq.storage.redis.dispatch import RedisDispatch
from tierq.storage.sqlite.store import SQLiteRecordStore

NOW = 1_700_000_000.0


def clock() -> float:
    return NOW


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RecordStore]:
    s = SQLiteRecordStore(str(tmp_path / "services.db"))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


class Recorder:
    """Takes reports as the flusher does, and keeps them in order."""

    def __init__(self, into: list[tuple[Transition, Ack | None]]) -> None:
        self.into = into

    def add(self, transition: Transition, ack: Ack | None = None) -> None:
        self.into.append((transition, ack))


# ---- the domain model ----------------------------------------------------------------------------


def test_move_follows_the_transition_table() -> None:
    task = record_task()
    task.move(TaskState.RUNNING, NOW + 1)
    assert (task.state, task.updated_at) == (TaskState.RUNNING, NOW + 1)
    task.move(TaskState.SUCCEEDED, NOW + 2)
    with pytest.raises(IllegalTransition, match="succeeded -> running"):
        task.move(TaskState.RUNNING, NOW + 3)
    assert (task.state, task.updated_at) == (TaskState.SUCCEEDED, NOW + 2)


# ---- HeldTasks -----------------------------------------------------------------------------------


def test_room_is_the_memory_room_less_every_reservation() -> None:
    held = HeldTasks(MemoryTier(10, clock))
    held.reserve(4)
    assert held.room() == 6
    held.push([record_task() for _ in range(3)])
    assert held.room() == 3
    held.reserve(-4)
    assert held.room() == 7
    assert len(held) == 3


def test_accept_keeps_only_fresh_tasks_and_supersedes_the_rest() -> None:
    held = HeldTasks(MemoryTier(10, clock))
    old = record_task()
    held.push([old])
    again, fresh = record_task(id=old.id, attempt=1), record_task()
    assert held.accept([again, fresh]) == [fresh]
    assert held.superseded() == {old.id}
    assert held.take_superseded() == []  # the stale copy is still held
    held.memory.remove(old)
    held.forget(old.id)
    assert held.take_superseded() == [old.id]
    assert held.superseded() == frozenset()


def test_take_superseded_everything_and_keep_superseded() -> None:
    held = HeldTasks(MemoryTier(10, clock))
    task = record_task()
    held.push([task])
    held.accept([record_task(id=task.id)])
    assert held.take_superseded(everything=True) == [task.id]
    held.keep_superseded([task.id])
    assert held.superseded() == {task.id}


def test_settle_lets_go_of_finished_copies_but_not_of_newer_attempts() -> None:
    held = HeldTasks(MemoryTier(10, clock))
    done, retried, running = record_task(), record_task(), record_task()
    for task in (done, retried, running):
        held.hold(task)
    done.attempt, done.state = 1, TaskState.SUCCEEDED
    retried.attempt, retried.state = 2, TaskState.RUNNING  # replayed: attempt 2 runs
    running.attempt, running.state = 1, TaskState.RUNNING
    batch = [
        Transition(done.id, 1, TaskState.SUCCEEDED, NOW),
        Transition(retried.id, 1, TaskState.FAILED, NOW),
        Transition(running.id, 1, TaskState.RUNNING, NOW),
    ]
    held.settle(batch, refused=[])
    assert done.id not in held
    assert retried.id in held  # attempt 1's end does not end attempt 2's copy
    assert running.id in held


def test_drop_finished_keeps_live_copies() -> None:
    held = HeldTasks(MemoryTier(10, clock))
    live, finished = record_task(), record_task(state=TaskState.FAILED)
    held.hold(live)
    held.hold(finished)
    held.drop_finished(live.id)
    held.drop_finished(finished.id)
    assert live.id in held and finished.id not in held


def test_drop_queued_empties_memory_and_lets_go() -> None:
    held = HeldTasks(MemoryTier(10, clock))
    tasks = [record_task() for _ in range(3)]
    held.push(tasks)
    assert sorted(t.id for t in held.drop_queued()) == sorted(t.id for t in tasks)
    assert len(held) == 0 and len(held.memory) == 0


# ---- LeaseClock ----------------------------------------------------------------------------------


async def test_lease_clock_embedded_never_expires() -> None:
    leases = LeaseClock(ttl_s=6.0, heartbeat_s=1.0, expires=False)
    assert leases.deadline == math.inf
    assert leases.valid(NOW + 10**9)


async def test_lease_clock_distributed_needs_a_renewal_and_wakes_waiters() -> None:
    leases = LeaseClock(ttl_s=6.0, heartbeat_s=1.0, expires=True)
    assert not leases.valid(NOW)
    waiter = asyncio.create_task(leases.wait_renewed())
    await asyncio.sleep(0)  # the waiter is parked
    assert not waiter.done()
    leases.renew(NOW)
    await asyncio.wait_for(waiter, timeout=1.0)
    assert leases.deadline == NOW + 5.0  # the TTL less one heartbeat of margin
    assert leases.valid(NOW + 5.0) and not leases.valid(NOW + 5.1)


# ---- Pager and WorkHint --------------------------------------------------------------------------


class Claims:
    """A claim callable that hands out ``available`` tasks and records what it was asked."""

    def __init__(self, held: HeldTasks, available: int) -> None:
        self.held = held
        self.available = [record_task() for _ in range(available)]
        self.calls: list[tuple[int, int]] = []  # (limit, room while the claim was in flight)

    async def __call__(self, limit: int, now: float) -> list[Task]:
        self.calls.append((limit, self.held.room()))
        taken, self.available = self.available[:limit], self.available[limit:]
        return taken


async def test_pager_claims_what_fits_and_reserves_it_while_in_flight() -> None:
    held = HeldTasks(MemoryTier(8, clock))
    claims, hint = Claims(held, available=20), WorkHint()
    pager = Pager(held, claims, held.push, hint, clock, tick_s=1.0, batch=5)
    await pager.run_once()
    assert claims.calls == [(5, 3)]  # 8 slots, 5 promised to the claim in flight
    assert len(held) == 5 and held.room() == 3
    assert hint.pending  # a full claim: there may be more
    assert pager.wake_event.is_set()


async def test_pager_short_claim_clears_the_hint_and_a_poke_sets_it() -> None:
    held = HeldTasks(MemoryTier(100, clock))
    claims, hint = Claims(held, available=2), WorkHint()
    pager = Pager(held, claims, held.push, hint, clock, tick_s=1.0, batch=50)
    await pager.run_once()
    assert not hint.pending and pager.claimed == 2
    pager.wake_event.clear()
    pager.low()  # what the memory tier calls when it runs low
    assert not pager.wake_event.is_set()  # nothing below: no claim round trip
    hint.poke()
    assert hint.pending and pager.wake_event.is_set()


async def test_pager_does_not_claim_while_memory_is_above_its_low_water() -> None:
    held = HeldTasks(MemoryTier(100, clock))
    held.push([record_task() for _ in range(held.memory.low_water + 1)])
    claims = Claims(held, available=10)
    pager = Pager(held, claims, held.push, WorkHint(), clock, tick_s=1.0, batch=50)
    await pager.run_once()
    assert claims.calls == []


# ---- Heartbeat and Rescuer -----------------------------------------------------------------------


async def test_heartbeat_hands_the_outcome_and_send_time_to_what_follows() -> None:
    beats: list[float] = []
    after: list[tuple[bool, float]] = []

    async def beat(checked_at: float) -> bool:
        beats.append(checked_at)
        return len(beats) > 1

    async def after_beat(registered: bool, checked_at: float) -> None:
        after.append((registered, checked_at))

    heartbeat = Heartbeat(beat, after_beat, clock, interval_s=1.0)
    await heartbeat.run_once()
    await heartbeat.run_once()
    assert beats == [NOW, NOW]
    assert after == [(False, NOW), (True, NOW)]
    assert heartbeat.beats == 2


async def test_rescuer_records_each_rescued_attempt_as_abandoned() -> None:
    rescued = [RescuedLease("a" * 8, 2, "dead-1"), RescuedLease("b" * 8, 1, "dead-2")]
    reports: list[tuple[Transition, Ack | None]] = []
    hint = WorkHint()
    hint.pending = False

    async def rescue(now: float) -> list[RescuedLease]:
        return rescued

    rescuer = Rescuer(rescue, Recorder(reports), hint, clock, interval_s=1.0)
    await rescuer.run_once()
    assert [(t.task_id, t.attempt, t.state, t.outcome) for t, _ in reports] == [
        ("a" * 8, 2, TaskState.QUEUED, Outcome.ABANDONED),
        ("b" * 8, 1, TaskState.QUEUED, Outcome.ABANDONED),
    ]
    assert all(ack is None and t.lease_owner is None for t, ack in reports)
    assert "dead-1" in (reports[0][0].error or "")
    assert hint.pending and rescuer.rescued == 2


# ---- Dependencies --------------------------------------------------------------------------------


def dependencies(store: RecordStore, held: HeldTasks, hint: WorkHint) -> Dependencies:
    async def no_shared(tasks: Sequence[Task]) -> None:
        raise AssertionError("embedded: nothing is enqueued to a shared tier")

    return Dependencies(store, held, no_shared, hint, clock, distributed=False)


async def test_check_refuses_unknown_dependencies_and_makes_waiting_tasks_pending(
    store: RecordStore,
) -> None:
    held = HeldTasks(MemoryTier(10, clock))
    deps = dependencies(store, held, WorkHint())
    parent = record_task()
    await store.task_insert_many([parent])
    child, ready = record_task(depends_on=(parent.id,)), record_task()
    await deps.check([child, ready])
    assert (child.state, ready.state) == (TaskState.PENDING, TaskState.QUEUED)
    orphan = record_task(depends_on=(parent.id, "0" * 8 + "-0000-7000-8000-000000000000"))
    with pytest.raises(InvalidDependency) as caught:
        await deps.check([ready, orphan])
    assert (caught.value.index, caught.value.position) == (1, 1)


async def test_finished_parent_releases_its_dependent(store: RecordStore) -> None:
    held, hint = HeldTasks(MemoryTier(10, clock)), WorkHint()
    deps = dependencies(store, held, hint)
    parent = record_task()
    child = record_task(depends_on=(parent.id,), state=TaskState.PENDING)
    await store.task_insert_many([parent, child])
    await store.task_transition_many(
        [Transition(parent.id, 1, TaskState.SUCCEEDED, NOW, outcome=Outcome.SUCCEEDED)]
    )
    hint.pending = False
    await deps.finished([parent.id])
    (stored,) = await store.task_get_many([child.id])
    assert stored.state is TaskState.QUEUED
    assert hint.pending  # the pager is told there is work below
    assert deps.may_wait
    await deps.finished([child.id])  # nothing waits on the child
    assert not deps.may_wait  # embedded: no pending task is left, later batches skip the look


async def test_a_failed_release_is_deferred_and_retried(tmp_path: Path) -> None:
    store = SQLiteRecordStore(str(tmp_path / "deferred.db"))
    await store.open()
    try:
        deps = dependencies(store, HeldTasks(MemoryTier(10, clock)), WorkHint())
        parent = record_task()
        child = record_task(depends_on=(parent.id,), state=TaskState.PENDING)
        await store.task_insert_many([parent, child])
        await store.task_transition_many(
            [Transition(parent.id, 1, TaskState.SUCCEEDED, NOW, outcome=Outcome.SUCCEEDED)]
        )
        await store.close()
        await deps.finished([parent.id])  # logged and kept, never raised
        await store.open()
        (still,) = await store.task_get_many([child.id])
        assert still.state is TaskState.PENDING
        await deps.retry_deferred()
        (stored,) = await store.task_get_many([child.id])
        assert stored.state is TaskState.QUEUED
    finally:
        await store.close()


# ---- Cancellation --------------------------------------------------------------------------------


class CancelRig:
    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self.held = HeldTasks(MemoryTier(10, clock))
        self.reports: list[tuple[Transition, Ack | None]] = []
        self.flushes = 0
        self.interrupted: list[str] = []
        dispatch = InProcessDispatch(store)
        self.cancellation = Cancellation(
            self.held,
            store,
            dispatch,
            dependencies(store, self.held, WorkHint()),
            self.get,
            self.interrupt,
            Recorder(self.reports),
            self.flush,
            clock,
        )

    async def get(self, task_id: str) -> Task:
        task = self.held.get(task_id)
        if task is not None:
            return task
        found = await self.store.task_get(task_id)
        if found is None:
            raise NotFound(task_id)
        return found

    def interrupt(self, task_id: str) -> asyncio.Task[object] | None:
        self.interrupted.append(task_id)
        return None  # as if its handler had already returned

    async def flush(self) -> None:
        self.flushes += 1


async def test_cancel_of_a_held_queued_task_records_it_and_flushes(store: RecordStore) -> None:
    rig = CancelRig(store)
    task = record_task()
    rig.held.push([task])
    cancelled = await rig.cancellation.cancel(task.id)
    assert cancelled.state is TaskState.CANCELLED and len(rig.held.memory) == 0
    ((transition, ack),) = rig.reports
    assert (transition.state, transition.error, ack) == (TaskState.CANCELLED, "cancelled", None)
    assert rig.flushes == 1


async def test_cancel_of_a_running_task_past_interruption_is_a_conflict(
    store: RecordStore,
) -> None:
    rig = CancelRig(store)
    task = record_task()
    rig.held.hold(task)
    task.move(TaskState.RUNNING, NOW)
    with pytest.raises(Conflict):
        await rig.cancellation.cancel(task.id)
    assert rig.interrupted == [task.id]


async def test_cancel_in_the_record_tier_and_of_a_finished_task(store: RecordStore) -> None:
    rig = CancelRig(store)
    task = record_task()
    await store.task_insert_many([task])
    assert (await rig.cancellation.cancel(task.id)).state is TaskState.CANCELLED
    with pytest.raises(Conflict):
        await rig.cancellation.cancel(task.id)


async def test_a_claim_landing_after_a_cancel_in_the_store_does_not_queue_the_task(
    store: RecordStore,
) -> None:
    """Embedded: a claim reads the task, the cancel writes, then the claim's copy lands (its
    coroutine resumed after the cancel's). Found by the state-machine test, about one run in
    ten: the cancelled task was queued again."""
    rig = CancelRig(store)
    task = record_task(NOW - 10)
    await store.task_insert_many([task])
    (claimed,) = await store.task_claim("me", 1, NOW)  # the claim's read
    assert (await rig.cancellation.cancel(task.id)).state is TaskState.CANCELLED
    rig.cancellation.accept_claimed([claimed])  # the claim lands
    assert len(rig.held) == 0 and len(rig.held.memory) == 0
    # A retry after the cancel makes a newer copy: that one queues.
    assert await store.task_retry_many([task.id], NOW + 1) == [task.id]
    (again,) = await store.task_claim("me", 1, NOW + 1)
    rig.cancellation.accept_claimed([again])
    assert [t.id for t in rig.held.memory.drain()] == [task.id]


async def test_an_announced_cancel_is_honoured_when_a_claim_brings_the_task(
    store: RecordStore,
) -> None:
    rig = CancelRig(store)
    task, other = record_task(), record_task()
    rig.cancellation.on_announced([task.id])  # not held here yet
    assert rig.cancellation.remembers(task.id)
    rig.cancellation.accept_claimed([task, other])
    assert task.state is TaskState.CANCELLED
    assert [t.id for t in rig.held.memory.drain()] == [other.id]  # the cancelled one never queues
    assert not rig.cancellation.remembers(task.id)
    assert [t.task_id for t, _ in rig.reports] == [task.id]


# ---- DispatchRepair (real Redis) -----------------------------------------------------------------


@pytest.fixture
async def redis_dispatch() -> AsyncIterator[RedisDispatch]:
    d = RedisDispatch(REDIS_URL, prefix=f"t-{uuid.uuid4().hex[:8]}")
    await d.open()
    try:
        yield d
    finally:
        await purge_redis_prefix(d.keys.prefix)
        await d.close()


async def test_repair_rebuilds_from_the_record_tier_when_redis_lost_its_data(
    store: RecordStore, redis_dispatch: RedisDispatch
) -> None:
    held, hint = HeldTasks(MemoryTier(10, clock)), WorkHint()
    repair = DispatchRepair(store, redis_dispatch, held, hint, clock, "me")
    tasks = [record_task() for _ in range(3)]
    await store.task_insert_many(tasks)
    await repair.open()  # first to see this prefix: a new generation, so a rebuild
    assert repair.generation != ""
    assert (await redis_dispatch.depth())["ready"] == 3
    hint.pending = False
    repair.needs_rebuild = True
    await repair.repair()
    assert not repair.needs_rebuild and hint.pending
    assert (await redis_dispatch.depth())["ready"] == 3  # offered again, not doubled


async def test_a_failed_write_through_gives_up_held_leases_and_owes_a_rebuild(
    store: RecordStore, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path)  # a throwaway redis-server, killed mid-test
    server.start()
    dispatch = RedisDispatch(server.url, prefix="t")
    try:
        await dispatch.open()
        held = HeldTasks(MemoryTier(10, clock))
        repair = DispatchRepair(store, dispatch, held, WorkHint(), clock, "me")
        await repair.open()
        repair.needs_rebuild = False
        mine = record_task(lease_owner="me")
        server.kill()  # the write-through below meets a real outage
        await repair.write_through([mine])  # logged, not raised: the task is durable
        assert repair.needs_rebuild and mine.lease_owner is None
        repair.needs_rebuild = False
        with pytest.raises(StoreUnavailable):
            await repair.enqueue_shared([record_task()])
        assert repair.needs_rebuild
    finally:
        server.kill()
        await dispatch.close()


# ---- EngineMetrics -------------------------------------------------------------------------------


def test_engine_metrics_count_by_type_through_one_label_cache() -> None:
    """The metrics subscribe to the event bus: fed the events of a submitted group and of a
    flushed batch, as the engine's seams make them."""
    metrics = Metrics()
    instruments = EngineMetrics(metrics)
    source = EventSource("n1", lambda: NOW)
    tasks = [record_task(type="a"), record_task(type="a"), record_task(type="b")]
    instruments.on_events(source.submitted(tasks))
    instruments.attempt_failed("a", final=True)
    flushed = [
        Transition(tasks[0].id, 1, TaskState.SUCCEEDED, NOW, started_at=NOW, finished_at=NOW + 2),
        Transition(tasks[2].id, 1, TaskState.CANCELLED, NOW),
    ]
    instruments.on_events(source.flushed(flushed, {t.id: t for t in tasks}))
    sample = metrics.registry.get_sample_value
    assert sample("tierq_tasks_submitted_total", {"type": "a"}) == 2
    assert sample("tierq_tasks_submitted_total", {"type": "b"}) == 1
    assert sample("tierq_tasks_failed_total", {"type": "a", "final": "true"}) == 1
    assert sample("tierq_tasks_completed_total", {"type": "a"}) == 1
    assert sample("tierq_tasks_cancelled_total", {"type": "b"}) == 1
    assert sample("tierq_task_execution_seconds_sum", {"type": "a"}) == 2.0
    instruments.on_events(source.submitted(tasks[:1]))  # the cached child counts on
    assert sample("tierq_tasks_submitted_total", {"type": "a"}) == 3


# ---- WorkerPool ----------------------------------------------------------------------------------


async def test_worker_pool_reports_each_outcome_and_hands_back_at_shutdown() -> None:
    """A pool on its own: a memory tier, a real flusher writing to a recorder, a registry."""
    wall = time.time
    held = HeldTasks(MemoryTier(10, wall))
    written: list[Transition] = []

    async def transition_many(batch: Sequence[Transition]) -> list[str]:
        written.extend(batch)
        return []

    async def no_acks(acks: Sequence[Ack]) -> list[str]:
        return []

    async def flushed(transitions: list[Transition], refused: list[str]) -> None:
        return None

    flusher = Flusher(no_acks, transition_many, flushed, interval_s=0.001)
    registry = HandlerRegistry()
    hold = asyncio.Event()

    async def ok(ctx: TaskContext) -> object:
        return {"n": 1}

    async def boom(ctx: TaskContext) -> object:
        raise PermanentError("refused by the handler")

    async def stuck(ctx: TaskContext) -> object:
        await hold.wait()
        return None

    for name, fn in (("ok", ok), ("boom", boom), ("stuck", stuck)):
        registry.add(Handler(name=name, run=fn))
    metrics = Metrics()
    with ThreadPoolExecutor(max_workers=1) as executor:
        pool = WorkerPool(
            1,
            held,
            flusher,
            registry,
            LeaseClock(6.0, 1.0, expires=False),
            EngineMetrics(metrics),
            RetryPolicy(0.01, 0.05),
            executor,
            wall,
            "node",
            shared=False,
        )
        now = wall()
        tasks = [record_task(now, type=t, max_retries=0) for t in ("ok", "boom", "stuck")]
        held.push(tasks)
        worker = asyncio.create_task(pool.run_worker(0))
        await wait_for(lambda: pool.busy == 1 and pool.running_ids() == [tasks[2].id], 5)
        worker.cancel()  # shutdown while "stuck" runs
        with pytest.raises(asyncio.CancelledError):
            await worker
    await flusher.run_once()
    final = {t.task_id: t for t in written if t.outcome is not None}
    assert final[tasks[0].id].state is TaskState.SUCCEEDED
    assert final[tasks[0].id].result == b'{"n":1}'
    assert final[tasks[1].id].state is TaskState.FAILED
    assert "refused by the handler" in (final[tasks[1].id].error or "")
    assert (final[tasks[2].id].state, final[tasks[2].id].outcome) == (
        TaskState.QUEUED,
        Outcome.INTERRUPTED,
    )
    assert pool.busy == 0
    sample = metrics.registry.get_sample_value
    assert sample("tierq_tasks_failed_total", {"type": "boom", "final": "true"}) == 1
