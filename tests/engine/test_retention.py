"""Retention as a service against a real engine and store, with an injected clock: finished
tasks go after their state's retention (succeeded before failed and cancelled), live ones
never, statistics follow, and 0 keeps a state for ever."""

from __future__ import annotations

from tests.engine.conftest import EngineFactory, wait_all, wait_state
from tests.helpers import id_time, make_task, submit
from tierq.engine.retention import Retention
from tierq.model import TaskState

DAY = 86_400.0


async def test_finished_tasks_go_after_their_states_retention(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    assert engine.retention.enabled and engine.retention in engine._services
    ok = await submit(engine, *(make_task(engine) for _ in range(3)))
    (bad,) = await submit(engine, make_task(engine, "dummy", {"fail_always": True}, max_retries=0))
    (later,) = await submit(engine, make_task(engine, delay_seconds=3600))
    await wait_all(engine, ok, TaskState.SUCCEEDED)
    await wait_state(engine, bad, TaskState.FAILED)
    await engine.flusher.run_once()
    cancelled = await engine.cancel(later)
    assert cancelled.state is TaskState.CANCELLED or cancelled.id == later
    # From the ids' own time: a purge walks ids older than its cutoff, and an earlier test
    # may have made this process mint ids ahead of the clock.
    now = max(engine.clock(), *(id_time(i) for i in [*ok, bad, later]))
    clock = [now + 8 * DAY]
    retention = Retention(engine.settings, engine.store, None, lambda: clock[0])

    await retention.run_once()
    assert retention.deleted == 3 and retention.next_wait() > 1
    assert await engine.store.task_get_many(ok) == []
    counts = await engine.store.task_counts()
    assert counts[TaskState.SUCCEEDED] == 0
    assert counts[TaskState.FAILED] == 1 and counts[TaskState.CANCELLED] == 1

    clock[0] = now + 31 * DAY
    await retention.run_once()
    assert retention.deleted == 5
    assert sum((await engine.store.task_counts()).values()) == 0


async def test_zero_keeps_a_state_for_ever(make_engine: EngineFactory) -> None:
    engine = await make_engine(retention_succeeded_s=0, retention_batch=2)
    ids = await submit(engine, *(make_task(engine) for _ in range(3)))
    await wait_all(engine, ids, TaskState.SUCCEEDED)
    now = max(engine.clock(), *(id_time(i) for i in ids))
    retention = Retention(engine.settings, engine.store, None, lambda: now + 365 * DAY)
    assert TaskState.SUCCEEDED not in retention.ages
    await retention.run_once()
    assert len(await engine.store.task_get_many(ids)) == 3


async def test_no_retention_no_service(make_engine: EngineFactory) -> None:
    off = await make_engine(retention_succeeded_s=0, retention_failed_s=0, retention_cancelled_s=0)
    assert not off.retention.enabled and off.retention not in off._services
