"""Several replicas sharing one queue: work spreads over both, the shared queue keeps priority
order, idempotency keys and dependencies hold across replicas, and a graceful stop hands the
held tasks to the other replica."""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.distributed.conftest import Cluster, make_task, submit, wait_for
from tierq.engine.engine import Engine
from tierq.engine.handlers.base import Handler, TaskContext
from tierq.model import TaskState

pytestmark = pytest.mark.distributed


async def count_states(cluster: Cluster) -> dict[str, int]:
    rows = await cluster.sql("SELECT state, count(*) AS n FROM {s}.tasks GROUP BY state")
    return {r["state"]: r["n"] for r in rows}


async def all_in(cluster: Cluster, state: str, n: int) -> bool:
    return (await count_states(cluster)).get(state, 0) == n


async def test_two_replicas_share_the_queue(cluster: Cluster) -> None:
    a = await cluster.engine("a", memory_limit=20)
    b = await cluster.engine("b", memory_limit=20)
    rng = random.Random(7)
    tasks = [make_task(a, payload={"sleep_ms": rng.randint(1, 5)}) for _ in range(300)]
    ids = await submit(a, *tasks)
    assert len(set(ids)) == 300

    await wait_for(lambda: all_in(cluster, "succeeded", 300), timeout=30)

    executions = await cluster.executions()
    assert set(executions) == set(ids)
    nodes = {row["worker"].split("/")[0] for rows in executions.values() for row in rows}
    assert nodes == {"a", "b"}, f"work did not spread over both replicas: {nodes}"
    for task_id, rows in executions.items():
        succeeded = [r for r in rows if r["outcome"] == "succeeded"]
        assert len(succeeded) == 1, (task_id, rows)
    # Both replicas read the same record tier, and its maintained counters match the rows.
    expected = {TaskState.SUCCEEDED: 300}
    for engine in (a, b):
        counts = await engine.store.task_counts()
        assert {s: n for s, n in counts.items() if n} == expected
    assert await count_states(cluster) == {"succeeded": 300}
    # Nothing is left in the dispatch tier.
    assert await a.dispatch.depth() == {"ready": 0, "delayed": 0, "leased": 0}


async def test_other_replica_claims_in_priority_order(cluster: Cluster) -> None:
    # A can hold one task and is busy with it; B takes one task at a time from the shared
    # queue, so B's run order is the dispatch tier's claim order.
    a = await cluster.engine("a", workers=1, memory_limit=1)
    b = await cluster.engine("b", workers=1, memory_limit=1)
    (blocker,) = await submit(a, make_task(a, payload={"sleep_ms": 3000}))
    await wait_for(lambda: a.workers.busy == 1, timeout=5)
    assert a.held.room() == 0

    rng = random.Random(3)
    priorities = [rng.choice([-5, 0, 1, 5, 10, 100]) for _ in range(14)]
    tasks = [make_task(a, payload={"sleep_ms": 5}, priority=p) for p in priorities]
    expected = [t.id for t in sorted(tasks, key=lambda t: t.sort_key)]
    await submit(a, *tasks)  # one batch: it reaches the shared queue in one atomic step

    async def done() -> bool:
        rows = await cluster.sql(
            "SELECT count(*) AS n FROM {s}.tasks WHERE state = 'succeeded' AND id <> $1",
            blocker,
        )
        return bool(rows[0]["n"] == len(tasks))

    await wait_for(done, timeout=15)
    rows = await cluster.sql(
        "SELECT task_id::text AS id, worker FROM {s}.task_executions"
        " WHERE task_id <> $1 ORDER BY started_at",
        blocker,
    )
    assert [r["id"] for r in rows] == expected
    assert {r["worker"] for r in rows} == {"b/w0"}
    assert a.workers.running_ids() == [blocker]
    assert b.pager.claimed == len(tasks)


async def test_idempotency_key_across_replicas(cluster: Cluster) -> None:
    a = await cluster.engine("a")
    b = await cluster.engine("b")
    first = await a.submit_many([make_task(a, idempotency_key="order-1")])
    again = await b.submit_many([make_task(b, idempotency_key="order-1")])
    assert first[0].created and not again[0].created
    assert again[0].task.id == first[0].task.id

    # Racing submissions of one key on both replicas: exactly one is created.
    racing = await asyncio.gather(
        a.submit_many([make_task(a, idempotency_key="order-2")]),
        b.submit_many([make_task(b, idempotency_key="order-2")]),
    )
    created = [r[0] for r in racing if r[0].created]
    assert len(created) == 1
    assert {r[0].task.id for r in racing} == {created[0].task.id}

    await wait_for(lambda: all_in(cluster, "succeeded", 2), timeout=10)
    executions = await cluster.executions()
    assert len(executions) == 2
    assert all(len(rows) == 1 for rows in executions.values())


async def test_dependency_finishing_on_one_replica_releases_dependent_on_other(
    cluster: Cluster,
) -> None:
    a = await cluster.engine("a", workers=2)
    b = await cluster.engine("b", workers=2)
    (dep,) = await submit(b, make_task(b, payload={"sleep_ms": 400}))
    await wait_for(lambda: dep in b.workers.running_ids(), timeout=5)
    (child,) = await submit(a, make_task(a, payload={"sleep_ms": 1}, depends_on=[dep]))
    grandchild_task = make_task(a, type="noop", depends_on=[child])
    (grandchild,) = await submit(a, grandchild_task)
    assert (await a.get(child)).state is TaskState.PENDING
    assert (await b.get(grandchild)).state is TaskState.PENDING

    # B was started before any dependent existed: it must still release A's dependents.
    await wait_for(lambda: all_in(cluster, "succeeded", 3), timeout=10)
    executions = await cluster.executions()
    assert executions[dep][0]["worker"].startswith("b/")
    # Each ran only after the one it waits for had finished.
    assert executions[child][0]["started_at"] >= executions[dep][0]["finished_at"]
    assert executions[grandchild][0]["started_at"] >= executions[child][0]["finished_at"]
    assert all(len(executions[t]) == 1 for t in (dep, child, grandchild))


async def test_graceful_stop_hands_held_tasks_to_the_other_replica(cluster: Cluster) -> None:
    a = await cluster.engine("a", workers=1, memory_limit=10, shutdown_grace_s=0)
    b = await cluster.engine("b", workers=2)
    (blocker,) = await submit(a, make_task(a, payload={"sleep_ms": 1500}))
    await wait_for(lambda: a.workers.busy == 1, timeout=5)
    held = await submit(a, *[make_task(a, payload={"sleep_ms": 5}) for _ in range(9)])
    assert a.memory.ready_count == 9  # all leased to A, none in the shared ready set
    assert (await a.dispatch.depth())["ready"] == 0

    await a.stop()
    await wait_for(lambda: all_in(cluster, "succeeded", 10), timeout=10)

    executions = await cluster.executions()
    for task_id in held:
        rows = executions[task_id]
        # Never started on A: handed back with the attempt unchanged, run once by B.
        assert [(r["attempt"], r["outcome"]) for r in rows] == [(1, "succeeded")], rows
        assert rows[0]["worker"].startswith("b/")
        task = await b.get(task_id)
        assert task.attempt == 1
    # The running one was interrupted by the stop (no grace) and ran again on B.
    rows = executions[blocker]
    assert [(r["attempt"], r["outcome"]) for r in rows] == [
        (1, "interrupted"),
        (2, "succeeded"),
    ]
    assert rows[0]["worker"] == "a/w0" and rows[1]["worker"].startswith("b/")


async def test_cancel_announced_before_the_claim_lands_is_honoured(cluster: Cluster) -> None:
    # Replica b hears a cancel for a task it does not hold yet (its claim is in flight, say),
    # then claims it: it must settle the lease as cancelled, never run the handler.
    b = await cluster.engine("b", workers=2)
    ran: list[str] = []

    async def probe(ctx: TaskContext) -> None:
        ran.append(ctx.task_id)

    b.registry.add(Handler(name="probe", run=probe))
    task = make_task(b, type="probe")
    b.cancellation.on_announced([task.id])
    await b.store.task_insert_many([task])
    await b.store.task_cancel_many([task.id], b.clock())  # what the announcing replica did
    await b.dispatch.enqueue_many([task], None, b.clock())
    await wait_for(lambda: b.pager.claimed >= 1)
    await b.flusher.run_once()
    await asyncio.sleep(0.05)  # give a wrongly queued copy the chance to run
    assert ran == [], "a task cancelled before its claim landed ran"
    stored = await b.store.task_get(task.id)
    assert stored is not None and stored.state is TaskState.CANCELLED
    # The lease was settled and confirmed: nothing of the task is left in Redis.
    await wait_for(lambda: _depth_is_empty(b), timeout=5.0)


async def _depth_is_empty(engine: Engine) -> bool:
    depth = await engine.dispatch.depth()
    return sum(depth.values()) == 0
