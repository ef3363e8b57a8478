"""The engine end to end on a real SQLite file: ordering, timers, timeouts, retries, the memory
bound, idempotency, cancel/retry, dependencies, graceful stop and the batching machinery."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tierq.engine.engine import Engine
from tierq.engine.errors import Conflict, ShuttingDown
from tierq.engine.handlers.base import TaskContext
from tierq.model import Outcome, TaskFilter, TaskState
from tierq.storage.sqlite.store import SQLiteRecordStore

from .conftest import EngineFactory, make_task, submit, wait_all, wait_for, wait_state


def recorder(engine: Engine, name: str = "record") -> list[tuple[str, float]]:
    """Register a task type that records (task id, clock at start) of every run."""
    runs: list[tuple[str, float]] = []

    async def run(ctx: TaskContext) -> None:
        runs.append((ctx.task_id, time.time()))
        await asyncio.sleep(0)

    engine.registry.register(name, run)
    return runs


async def blocker(engine: Engine, ms: int = 300) -> str:
    """A running task that keeps the only worker busy while the test lines others up."""
    (task_id,) = await submit(engine, make_task(engine, "dummy", {"sleep_ms": ms}))
    await wait_state(engine, task_id, TaskState.RUNNING)
    return task_id


async def stored(db: Path, *ids: str) -> dict[str, object]:
    """Read tasks and executions straight from the file (the engine is stopped)."""
    store = SQLiteRecordStore(str(db))
    await store.open()
    try:
        tasks = {t.id: t for t in await store.task_get_many(list(ids))}
        return {i: (tasks.get(i), await store.execution_list(i)) for i in ids}
    finally:
        await store.close()


# ---- ordering and timing --------------------------------------------------------------------


async def test_priority_then_run_at_then_arrival(make_engine: EngineFactory) -> None:
    engine = await make_engine(workers=1)
    runs = recorder(engine)
    await blocker(engine)
    now = engine.clock()
    specs = [  # (priority, seconds before now)
        (0, 0.0),
        (10, 0.0),
        (5, 1.0),
        (5, 2.0),
        (10, 0.0),
        (5, 2.0),
        (-3, 5.0),
        (5, 1.0),
    ]
    tasks = []
    for priority, ago in specs:
        task = make_task(engine, "record", priority=priority)
        task.run_at = now - ago
        tasks.append(task)
    await submit(engine, *tasks)
    await wait_for(lambda: len(runs) == len(tasks))
    expected = [t.id for t in sorted(tasks, key=lambda t: (-t.priority, t.run_at, t.id))]
    assert [task_id for task_id, _ in runs] == expected


async def test_delayed_task_fires_on_its_timer(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    runs = recorder(engine)
    submitted = time.time()
    (task_id,) = await submit(engine, make_task(engine, "record", delay_seconds=0.3))
    assert (await engine.get(task_id)).state is TaskState.SCHEDULED
    await wait_for(lambda: bool(runs), timeout=3)
    waited = runs[0][1] - submitted
    assert 0.3 <= waited <= 0.6, waited  # the memory tier's timer, not the 1 s pager tick
    await wait_state(engine, task_id, TaskState.SUCCEEDED)


async def test_timeout_fails_the_attempt(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    task = make_task(engine, "dummy", {"sleep_ms": 5000}, timeout_seconds=0.1, max_retries=0)
    started = time.monotonic()
    (task_id,) = await submit(engine, task)
    done = await wait_state(engine, task_id, TaskState.FAILED, timeout=3)
    assert time.monotonic() - started < 2
    assert done.last_error is not None and "timed out" in done.last_error
    (execution,) = await engine.executions(task_id)
    assert execution.outcome is Outcome.TIMED_OUT
    assert execution.attempt == 1


async def test_retries_with_backoff_then_dead_letter(make_engine: EngineFactory) -> None:
    engine = await make_engine(retry_base_ms=40, retry_max_ms=1000)
    task = make_task(engine, "dummy", {"fail_always": True}, max_retries=2)
    (task_id,) = await submit(engine, task)
    done = await wait_state(engine, task_id, TaskState.FAILED, timeout=5)
    assert done.attempt == 3
    executions = await engine.executions(task_id)
    assert [e.attempt for e in executions] == [1, 2, 3]
    assert all(e.outcome is Outcome.FAILED for e in executions)
    assert all(e.error and "fail_always" in e.error for e in executions)
    starts = [e.started_at for e in executions]
    ends = [e.finished_at for e in executions]
    assert None not in starts and None not in ends
    # retry n waits at least half of base * 2**(n-1): 20 ms, then 40 ms
    for n, (end, start) in enumerate(zip(ends, starts[1:], strict=False), start=1):
        assert start - end >= 0.040 * 2 ** (n - 1) / 2 - 0.002  # type: ignore[operator]


# ---- the memory bound -----------------------------------------------------------------------


async def test_memory_bound_holds_and_backlog_is_paged_in(make_engine: EngineFactory) -> None:
    engine = await make_engine(memory_limit=20, workers=4)
    peak = 0
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, engine.memory.held)
            # Every loop iteration is sampled, and the GIL is handed over each time: a loop
            # that is never idle otherwise keeps the SQLite threads waiting a switch interval
            # (5 ms) per hand-over, and the drain took 8-33 s against the 30 s wait below.
            time.sleep(0)
            await asyncio.sleep(0)

    sampler = asyncio.create_task(sample())
    try:
        ids: list[str] = []
        for _ in range(5):
            batch = [make_task(engine, "dummy", {"sleep_ms": 1}) for _ in range(100)]
            ids += await submit(engine, *batch)
            peak = max(peak, engine.memory.held)
        await wait_all(engine, ids, TaskState.SUCCEEDED, timeout=30)
    finally:
        stop.set()
        await sampler
    assert len(ids) == 500
    assert 0 < peak <= 20
    assert engine.pager.claimed > 0  # the backlog waited in the store and was paged in
    assert engine.memory.held == 0


# ---- submission -----------------------------------------------------------------------------


async def test_idempotency_key_returns_the_first_task(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    first = await engine.submit_many([make_task(engine, "noop", idempotency_key="k1")])
    again = await engine.submit_many(
        [make_task(engine, "noop", idempotency_key="k1"), make_task(engine, "noop")]
    )
    assert first[0].created
    assert not again[0].created
    assert again[0].task.id == first[0].task.id
    assert again[1].created
    twins = await engine.submit_many(
        [make_task(engine, "noop", idempotency_key="k2") for _ in range(3)]
    )
    assert [r.created for r in twins] == [True, False, False]
    assert len({r.task.id for r in twins}) == 1
    await wait_all(engine, [first[0].task.id, twins[0].task.id], TaskState.SUCCEEDED)
    counts = await engine.store.task_counts()
    assert sum(counts.values()) == 3


async def test_group_commit_shares_transactions(make_engine: EngineFactory) -> None:
    engine = await make_engine(commit_window_ms=2.0)
    before = engine.committer.commits
    calls = 200
    results = await asyncio.gather(
        *(engine.submit_many([make_task(engine, "noop")]) for _ in range(calls))
    )
    commits = engine.committer.commits - before
    assert all(r[0].created for r in results)
    assert 1 <= commits <= calls // 10, commits
    ids = [r[0].task.id for r in results]
    await wait_all(engine, ids, TaskState.SUCCEEDED)


# ---- cancel and retry -----------------------------------------------------------------------


async def test_cancel_queued_scheduled_and_running(make_engine: EngineFactory) -> None:
    engine = await make_engine(workers=1)
    running_id = await blocker(engine, ms=5000)
    queued_id, scheduled_id = await submit(
        engine,
        make_task(engine, "dummy"),
        make_task(engine, "dummy", delay_seconds=60),
    )
    assert (await engine.get(queued_id)).state is TaskState.QUEUED
    assert (await engine.get(scheduled_id)).state is TaskState.SCHEDULED
    for task_id in (queued_id, scheduled_id, running_id):
        assert (await engine.cancel(task_id)).state is TaskState.CANCELLED
    await wait_all(engine, [queued_id, scheduled_id, running_id], TaskState.CANCELLED)
    assert await engine.executions(queued_id) == []
    assert await engine.executions(scheduled_id) == []
    (execution,) = await engine.executions(running_id)
    assert execution.outcome is Outcome.CANCELLED
    assert engine.memory.held == 0
    with pytest.raises(Conflict, match="cancel") as refused:
        await engine.cancel(queued_id)
    assert refused.value.state is TaskState.CANCELLED


async def test_cancelled_while_backing_off_then_retried_runs_once(
    make_engine: EngineFactory,
) -> None:
    # Cancelled while its retry waits in the timer heap, then retried at once: the old heap
    # entry must not run the task a second time (nor hide the fresh copy).
    engine = await make_engine(retry_base_ms=300, retry_max_ms=300)
    task = make_task(engine, "dummy", {"fail_times": 1}, max_retries=3)
    (task_id,) = await submit(engine, task)
    await wait_state(engine, task_id, TaskState.SCHEDULED)
    assert (await engine.cancel(task_id)).state is TaskState.CANCELLED
    await engine.retry(task_id)
    done = await wait_state(engine, task_id, TaskState.SUCCEEDED, timeout=5)
    assert done.attempt == 2
    await wait_for(lambda: engine.memory.held == 0, timeout=2)
    await asyncio.sleep(0.4)  # past the cancelled entry's run_at: it must stay dead
    assert engine.memory.held == 0
    assert [e.attempt for e in await engine.executions(task_id)] == [1, 2]


async def test_retry_from_failed(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    task = make_task(engine, "dummy", {"fail_times": 1}, max_retries=0)
    (task_id,) = await submit(engine, task)
    await wait_state(engine, task_id, TaskState.FAILED)
    retried = await engine.retry(task_id)
    assert retried.state is TaskState.QUEUED
    done = await wait_state(engine, task_id, TaskState.SUCCEEDED)
    assert done.attempt == 2
    outcomes = [e.outcome for e in await engine.executions(task_id)]
    assert outcomes == [Outcome.FAILED, Outcome.SUCCEEDED]
    with pytest.raises(Conflict, match="retried") as refused:
        await engine.retry(task_id)
    assert refused.value.state is TaskState.SUCCEEDED


# ---- dependencies ---------------------------------------------------------------------------


async def test_dependent_runs_after_its_dependency(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    (dep_id,) = await submit(engine, make_task(engine, "dummy", {"sleep_ms": 100}))
    (child_id,) = await submit(engine, make_task(engine, "dummy", depends_on=[dep_id]))
    assert (await engine.get(child_id)).state is TaskState.PENDING
    child = await wait_state(engine, child_id, TaskState.SUCCEEDED)
    dep = await engine.get(dep_id)
    assert dep.finished_at is not None and child.started_at is not None
    assert child.started_at >= dep.finished_at


async def test_dependent_cancelled_when_dependency_fails(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    (dep_id,) = await submit(
        engine, make_task(engine, "dummy", {"fail_always": True, "sleep_ms": 50}, max_retries=0)
    )
    (child_id,) = await submit(engine, make_task(engine, "dummy", depends_on=[dep_id]))
    (grandchild_id,) = await submit(engine, make_task(engine, "noop", depends_on=[child_id]))
    await wait_state(engine, dep_id, TaskState.FAILED)
    child = await wait_state(engine, child_id, TaskState.CANCELLED)
    assert child.last_error is not None and dep_id in child.last_error
    await wait_state(engine, grandchild_id, TaskState.CANCELLED)
    assert await engine.executions(child_id) == []


async def test_dependency_already_dead_cancels_at_once(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    (failed_id,) = await submit(
        engine, make_task(engine, "dummy", {"fail_always": True}, max_retries=0)
    )
    (cancelled_id,) = await submit(engine, make_task(engine, "dummy", delay_seconds=60))
    await engine.cancel(cancelled_id)
    await wait_all(engine, [failed_id], TaskState.FAILED)
    ids = await submit(
        engine,
        make_task(engine, "noop", depends_on=[failed_id]),
        make_task(engine, "noop", depends_on=[cancelled_id]),
    )
    for task_id in ids:
        await wait_state(engine, task_id, TaskState.CANCELLED, timeout=3)


# ---- graceful stop and restart --------------------------------------------------------------


async def test_stop_hands_back_running_task(make_engine: EngineFactory, tmp_path: Path) -> None:
    engine = await make_engine(shutdown_grace_s=0.2)
    (task_id,) = await submit(engine, make_task(engine, "dummy", {"sleep_ms": 1500}))
    await wait_state(engine, task_id, TaskState.RUNNING)
    await wait_for(lambda: engine.flusher.backlog == 0)
    started = time.monotonic()
    await engine.stop()
    assert time.monotonic() - started < 1.5  # the grace period, not the task's length
    task, executions = (await stored(tmp_path / "t.db", task_id))[task_id]  # type: ignore[misc]
    assert task.state is TaskState.QUEUED
    assert task.lease_owner is None
    assert [e.outcome for e in executions] == [Outcome.INTERRUPTED]

    fresh = await make_engine()
    done = await wait_state(fresh, task_id, TaskState.SUCCEEDED, timeout=5)
    assert done.attempt == 2
    outcomes = [e.outcome for e in await fresh.executions(task_id)]
    assert outcomes == [Outcome.INTERRUPTED, Outcome.SUCCEEDED]


async def test_stop_releases_queued_tasks(make_engine: EngineFactory, tmp_path: Path) -> None:
    engine = await make_engine(workers=1, shutdown_grace_s=2.0)
    running_id = await blocker(engine, ms=200)
    queued = await submit(engine, *(make_task(engine, "dummy") for _ in range(50)))
    assert engine.memory.held == 51
    await engine.stop()
    rows = await stored(tmp_path / "t.db", running_id, *queued)
    assert rows[running_id][0].state is TaskState.SUCCEEDED  # type: ignore[index,union-attr]
    for task_id in queued:
        task = rows[task_id][0]  # type: ignore[index]
        assert task.state is TaskState.QUEUED, task  # type: ignore[union-attr]
        assert task.lease_owner is None  # type: ignore[union-attr]

    fresh = await make_engine(workers=4)
    await wait_all(fresh, queued, TaskState.SUCCEEDED)


async def test_stopped_engine_refuses_submissions(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    task = make_task(engine, "noop")
    await engine.stop()
    with pytest.raises(ShuttingDown, match="shutting down"):
        await engine.submit_many([task])


# ---- batching -------------------------------------------------------------------------------


def transition_writes(engine: Engine) -> tuple[float, float]:
    """(record-tier transition writes, rows they carried) so far, from the store metrics."""
    sample = engine.metrics.registry.get_sample_value
    labels = {"tier": "record", "operation": "transition"}
    return (
        sample("tierq_store_batch_size_count", labels) or 0.0,
        sample("tierq_store_batch_size_sum", labels) or 0.0,
    )


async def test_flusher_coalesces_running_and_finished(make_engine: EngineFactory) -> None:
    engine = await make_engine(workers=16, flush_interval_ms=20.0)
    writes_before, rows_before = transition_writes(engine)
    ids = await submit(engine, *(make_task(engine, "dummy") for _ in range(1000)))
    await wait_all(engine, ids, TaskState.SUCCEEDED, timeout=30)
    writes_after, rows_after = transition_writes(engine)
    writes, rows = writes_after - writes_before, rows_after - rows_before
    # Rows per task: a dummy task reports running, then succeeded; both reports of a task
    # that land in one flush interval are one row. Without coalescing every task costs two
    # rows (2,000); with it, only tasks whose start and end straddle a flush cost two.
    assert 1000 <= rows < 1500, rows
    assert 1 <= writes <= 100, writes  # batched: never a write per task
    sample = await engine.executions(ids[0])
    assert [(e.attempt, e.outcome) for e in sample] == [(1, Outcome.SUCCEEDED)]
    assert sample[0].started_at is not None


async def test_statistics_counts_match(make_engine: EngineFactory) -> None:
    engine = await make_engine(workers=1)
    ok = await submit(engine, *(make_task(engine, "noop") for _ in range(7)))
    bad = await submit(
        engine,
        *(make_task(engine, "dummy", {"fail_always": True}, max_retries=0) for _ in range(3)),
    )
    later = await submit(engine, *(make_task(engine, "noop", delay_seconds=60) for _ in range(4)))
    await wait_all(engine, ok, TaskState.SUCCEEDED)
    await wait_all(engine, bad, TaskState.FAILED)
    await engine.cancel(later[0])
    await engine.flusher.run_once()
    counts = await engine.store.task_counts()
    assert counts[TaskState.SUCCEEDED] == 7
    assert counts[TaskState.FAILED] == 3
    assert counts[TaskState.CANCELLED] == 1
    assert counts[TaskState.SCHEDULED] == 3
    assert sum(counts.values()) == 14
    page = await engine.list_tasks(TaskFilter(states=(TaskState.SCHEDULED,), size=10))
    assert sorted(t.id for t in page.items) == sorted(later[1:])
    noop_done = await engine.list_tasks(
        TaskFilter(states=(TaskState.SUCCEEDED,), type="noop", size=50)
    )
    assert len(noop_done.items) == 7
    dummy_failed = await engine.list_tasks(
        TaskFilter(states=(TaskState.FAILED,), type="dummy", size=50)
    )
    assert len(dummy_failed.items) == 3
    await engine.stop()
