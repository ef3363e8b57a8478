"""Failure cases of distributed mode, with real Redis and PostgreSQL: a replica frozen past
its leases (rescued, then fenced off when it wakes), the dispatch tier losing its data, and a
write-through that fails while the record tier is fine."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from redis import asyncio as aioredis

from tests.distributed.conftest import (
    Cluster,
    counter_value,
    freeze,
    make_task,
    submit,
    wait_for,
)
from tierq.engine.engine import Engine
from tierq.engine.handlers.base import Handler, TaskContext
from tierq.model import TaskState

pytestmark = pytest.mark.distributed


async def succeeded(cluster: Cluster, ids: list[str]) -> bool:
    rows = await cluster.sql(
        "SELECT count(*) AS n FROM {s}.tasks WHERE state = 'succeeded' AND id = ANY($1::uuid[])",
        ids,
    )
    return bool(rows[0]["n"] == len(ids))


async def test_frozen_replica_is_rescued_and_fenced_off(cluster: Cluster) -> None:
    a = await cluster.engine("a", workers=4, memory_limit=50)
    long_tasks = [make_task(a, payload={"sleep_ms": 3000, "result": "x"}) for _ in range(10)]
    ids = await submit(a, *long_tasks)
    await wait_for(lambda: len(a.workers.running_ids()) == 4, timeout=5)
    running = set(a.workers.running_ids())
    held = [i for i in ids if i not in running]
    assert a.memory.ready_count == 6

    async def started_recorded() -> bool:
        rows = await cluster.sql("SELECT count(*) AS n FROM {s}.tasks WHERE state = 'running'")
        return bool(rows[0]["n"] == 4)

    await wait_for(started_recorded, timeout=5)
    freeze(a)
    b = await cluster.engine("b", workers=10, memory_limit=50)

    # A's leases expire (ttl 1 s); B's rescuer returns all ten, B claims and runs them.
    await wait_for(lambda: b.rescuer.rescued == 10, timeout=5)
    await wait_for(lambda: len(b.workers.running_ids()) == 10, timeout=5)

    # A wakes: its next heartbeat learns it was declared dead, and it drops what it held.
    assert a.memory.ready_count == 6
    registered = await a.dispatch.heartbeat(
        a.node_id, a.settings.heartbeat_ttl_s, a.clock(), a.reports.replica_info()
    )
    assert registered is False
    await a.repair.check(registered)
    assert a.memory.ready_count == 0
    assert set(a.workers.running_ids()) == running  # running handlers finish on their own

    # A's handlers finish while B's attempts still run; A's flush is refused by the fence.
    await wait_for(lambda: a.workers.busy == 0, timeout=5)
    assert a.flusher.backlog == 4
    await a.flusher.run_once()
    assert a.flusher.backlog == 0
    assert counter_value(a, "tierq_stale_reports_total") == 4
    assert counter_value(a, "tierq_tasks_completed_total", type="dummy") == 0
    mid = {t.id: t for t in await b.store.task_get_many(ids)}
    assert all(t.state is TaskState.RUNNING and t.attempt == 2 for t in mid.values()), mid

    await wait_for(lambda: succeeded(cluster, ids), timeout=10)
    executions = await cluster.executions()
    for task_id in ids:
        rows = executions[task_id]
        assert [(r["attempt"], r["outcome"]) for r in rows] == [
            (1, "abandoned"),
            (2, "succeeded"),
        ], rows
        assert rows[1]["worker"].startswith("b/")
        if task_id in running:
            assert rows[0]["worker"].startswith("a/")  # it had started on A
        else:
            assert rows[0]["worker"] is None  # leased to A, never started
        task = await b.store.task_get(task_id)
        assert task is not None and task.attempt == 2 and task.lease_owner is None
    assert counter_value(b, "tierq_tasks_completed_total", type="dummy") == 10
    assert len(held) == 6


class RunLog:
    """A handler that records every completed run, on whichever replica it ran."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()

    async def run(self, ctx: TaskContext) -> Any:
        await asyncio.sleep(0.03)
        self.runs[ctx.task_id] += 1
        return None

    def install(self, engine: Engine) -> None:
        engine.registry.add(Handler(name="counted", run=self.run))


async def test_dispatch_tier_rebuilt_after_losing_its_data(cluster: Cluster) -> None:
    log = RunLog()
    a = await cluster.engine("a", workers=2, memory_limit=5)
    b = await cluster.engine("b", workers=2, memory_limit=5)
    log.install(a)
    log.install(b)
    generation = a.repair.generation
    assert b.repair.generation == generation

    delayed = [make_task(a, type="counted", delay_seconds=1.5) for _ in range(50)]
    queued = [make_task(a, type="counted") for _ in range(40)]
    ids = await submit(a, *delayed, *queued)
    await wait_for(lambda: sum(log.runs.values()) >= 6, timeout=5)

    # Tasks some replica holds (queued, running, or finished but not yet flushed) may run
    # again after the wipe: their leases and acks vanish with it. Nothing else may.
    at_risk = a.held.ids() | b.held.ids()
    wiped = await cluster.wipe_redis()
    at_risk |= a.held.ids() | b.held.ids()
    assert wiped > 0
    assert len(at_risk) <= 2 * 5 + 10

    # So may tasks a replica takes in before it notices the wipe: a claim in flight at the
    # wipe lands after the line above (the test's first version missed those and failed
    # about one run in eight without anything being wrong).
    def noticed() -> bool:
        at_risk.update(a.held.ids(), b.held.ids())
        return a.repair.generation != generation and b.repair.generation != generation

    await wait_for(noticed, 3)
    assert a.repair.generation == b.repair.generation

    await wait_for(lambda: succeeded(cluster, ids), timeout=15)
    assert set(log.runs) == set(ids)
    twice = {i for i, n in log.runs.items() if n > 1}
    assert twice <= at_risk, f"ran again without being held at the wipe: {twice - at_risk}"
    assert all(n <= 2 for n in log.runs.values())
    executions = await cluster.executions()
    for task_id in ids:
        outcomes = [r["outcome"] for r in executions[task_id]]
        assert outcomes.count("succeeded") == 1, executions[task_id]
    assert await a.dispatch.depth() == {"ready": 0, "delayed": 0, "leased": 0}


async def test_write_through_failure_is_repaired_by_rebuild(cluster: Cluster) -> None:
    a = await cluster.engine("a", workers=2)
    backend = a.dispatch.inner  # type: ignore[attr-defined]  # Redis, behind the metrics wrapper
    healthy = backend._client
    # A client for a port nobody listens on: every call fails to connect, as when Redis is
    # down. Only the submission runs while it is in place.
    broken = aioredis.from_url("redis://127.0.0.1:1/0", decode_responses=False)
    backend._client = broken
    try:
        results = await a.submit_many([make_task(a, payload={"sleep_ms": 1})])
    finally:
        backend._client = healthy
        await broken.aclose()
    task = results[0].task
    assert results[0].created
    assert a.repair.needs_rebuild is True
    assert a.memory.held == 0  # not held: its lease was never written
    rows = await cluster.sql("SELECT state FROM {s}.tasks WHERE id = $1", task.id)
    assert [r["state"] for r in rows] == ["queued"]  # durable in the record tier

    # Redis answers again: the next heartbeat offers the record tier, and the task runs.
    await wait_for(lambda: succeeded(cluster, [task.id]), timeout=5)
    assert a.repair.needs_rebuild is False
    executions = await cluster.executions()
    assert [(r["attempt"], r["outcome"]) for r in executions[task.id]] == [(1, "succeeded")]


async def test_write_through_failing_during_a_rebuild_keeps_the_rebuild_pending(
    cluster: Cluster,
) -> None:
    """A rebuild scans the record tier in creation order, so a group commit that lands behind
    its cursor and then fails its write-through is not in what the scan offers. The rebuild
    must not clear the flag that failure set, or those tasks wait in the record tier forever
    (seen in CI: a Redis restart left one 200-task batch queued for good)."""
    a = await cluster.engine("a", workers=2)
    # Only this test rebuilds, at the moments it chooses: stop() also waits for a heartbeat
    # already under way, whose repair step would otherwise run a rebuild of its own.
    await a.heartbeat.stop()
    a.repair.needs_rebuild = True
    rebuild = asyncio.create_task(a.repair.rebuild())
    await asyncio.sleep(0)  # the rebuild is now waiting on its first record-tier page
    assert not rebuild.done()
    # What a failed write-through does meanwhile (DispatchRepair.write_through):
    a.repair.needs_rebuild = True
    await rebuild
    assert a.repair.needs_rebuild is True
    await a.repair.rebuild()  # nothing failed during this one
    assert a.repair.needs_rebuild is False


async def test_a_task_running_through_a_data_loss_is_reclaimed_not_run_again(
    cluster: Cluster,
) -> None:
    """Redis loses its data while a task runs here: this replica, alive, leases it back in
    the new generation (for the token it runs under) before it rebuilds the tier, so the
    rebuild skips it, its report is accepted, and it runs once."""
    gate = asyncio.Event()
    runs: Counter[str] = Counter()

    async def gated(ctx: TaskContext) -> Any:
        runs[ctx.task_id] += 1
        await gate.wait()
        return None

    a = await cluster.engine("a", workers=1, memory_limit=5)
    a.registry.add(Handler(name="gated", run=gated))
    (task_id,) = await submit(a, make_task(a, type="gated"))
    await wait_for(lambda: runs[task_id] == 1, timeout=5)
    generation = a.repair.generation
    await cluster.wipe_redis()
    await wait_for(lambda: a.repair.generation != generation, timeout=5)
    lease_key = a.dispatch.inner.keys.queue("default").lease  # type: ignore[attr-defined]
    assert await cluster.redis.hget(lease_key, task_id) == b"a|1"
    gate.set()
    await wait_for(lambda: succeeded(cluster, [task_id]), timeout=10)
    assert runs[task_id] == 1

    async def gone() -> bool:  # its terminal ack is confirmed after the record write
        return await a.dispatch.depth() == {"ready": 0, "delayed": 0, "leased": 0}

    await wait_for(gone, timeout=5)


async def test_lease_claimed_under_a_stale_running_copy_is_handed_back(cluster: Cluster) -> None:
    """Redis loses its data while a task runs here, and the tier is rebuilt and the task
    claimed again before this replica notices (another replica rebuilt first: here the test
    does it by hand). The old copy's report is refused (stale token); the new lease must not
    stay with a replica that no longer holds the task, or the task waits forever (seen: one
    task of a test stuck 'running' with its lease held by a live replica)."""
    gate = asyncio.Event()
    runs: Counter[str] = Counter()

    async def gated(ctx: TaskContext) -> Any:
        runs[ctx.task_id] += 1
        if runs[ctx.task_id] == 1:
            await gate.wait()
        return None

    a = await cluster.engine("a", workers=1, memory_limit=5)
    a.registry.add(Handler(name="gated", run=gated))
    (task_id,) = await submit(a, make_task(a, type="gated"))
    await wait_for(lambda: runs[task_id] == 1, timeout=5)
    # This replica does not notice until the test says so; nor does its rescuer take its
    # own leases while its heartbeat is stopped (under load, 1 s passes quickly).
    await a.heartbeat.stop()
    await a.rescuer.stop()
    await cluster.wipe_redis()
    await a.dispatch.generation()  # what the other replica's heartbeat did
    await a.repair.rebuild()
    lease_key = a.dispatch.inner.keys.queue("default").lease  # type: ignore[attr-defined]

    async def claimed_again() -> bool:
        await a.pager.run_once()
        return bool(await cluster.redis.hget(lease_key, task_id) == b"a|2")

    await wait_for(claimed_again, timeout=5)
    # Now it notices: the running copy cannot be reclaimed (its lease is the new one).
    await a.heartbeat.run_once()
    assert runs[task_id] == 1  # the old copy still runs; the new lease is not running
    gate.set()

    # The old copy's report is refused; the superseded lease goes back; it runs again.
    async def settled() -> bool:
        await a.heartbeat.run_once()
        return await succeeded(cluster, [task_id])

    await wait_for(settled, timeout=10)
    assert runs[task_id] == 2
    assert not a.held.superseded()
    assert await a.dispatch.depth() == {"ready": 0, "delayed": 0, "leased": 0}
