"""Retention's primitive, one suite for both record stores: finished tasks past their state's
cutoff go (with executions and dependency edges), nothing else does, counts stay exact, and
a batch never exceeds its limit."""

from __future__ import annotations

import time

import pytest

from tests.helpers import id_time
from tierq.model import Outcome, TaskState, Transition
from tierq.storage.base import RecordStore

from .test_record_conformance import (
    NOW,
    _assert_counts_exact,
    all_tasks,
    insert,
    make_task,
    start,
)

S = TaskState
DAY = 86_400.0


def base_of(*task_ids: str) -> float:
    """Finish times and cutoffs are taken from the ids' own time: a purge walks ids older
    than its cutoff, and this process never mints ids back in time (a test before this one
    may have minted ids far ahead of the clock), whatever created_at says."""
    return max(time.time(), *(id_time(t) for t in task_ids))


async def finish(store: RecordStore, task_id: str, state: TaskState, at: float) -> None:
    outcome = {S.SUCCEEDED: Outcome.SUCCEEDED, S.FAILED: Outcome.FAILED}[state]
    tr = Transition(task_id, 1, state, at, started_at=NOW + 1, finished_at=at, outcome=outcome)
    assert await store.task_transition_many([tr]) == []


async def test_purge_takes_finished_tasks_past_their_cutoff(record_store: RecordStore) -> None:
    st = record_store
    old_ok, new_ok, old_bad, running, queued = (make_task() for _ in range(5))
    old_cancelled = make_task()
    child = make_task(state=S.PENDING, depends_on=(old_ok.id, queued.id))
    await insert(st, old_ok, new_ok, old_bad, running, queued, old_cancelled, child)
    base = base_of(old_ok.id, new_ok.id, old_bad.id, running.id, queued.id, child.id)
    base = max(base, id_time(old_cancelled.id))
    for t in (old_ok, new_ok, old_bad, running):
        await start(st, t)
    await finish(st, old_ok.id, S.SUCCEEDED, base + 10)
    await finish(st, new_ok.id, S.SUCCEEDED, base + 5 * DAY)
    await finish(st, old_bad.id, S.FAILED, base + 10)
    assert await st.task_cancel_many([old_cancelled.id], base + 10) == [old_cancelled.id]

    later = base + 8 * DAY
    gone = await st.task_purge({S.SUCCEEDED: later - 7 * DAY, S.FAILED: later - 30 * DAY}, 100)
    assert gone == [old_ok.id]  # failed: kept 30 days; cancelled: not asked for
    assert await st.execution_list(old_ok.id) == []
    left = {t.id for t in await all_tasks(st)}
    assert left == {new_ok.id, old_bad.id, running.id, queued.id, old_cancelled.id, child.id}
    await _assert_counts_exact(st)
    # The child no longer waits on a task that is gone (it had succeeded): it waits on queued.
    await finish_queued(st, queued.id, base + 20)
    released = await st.task_release_dependents([queued.id], later)
    assert [t.id for t in released.ready] == [child.id]

    much_later = base + 40 * DAY
    cutoffs = {s: much_later - 7 * DAY for s in (S.SUCCEEDED, S.FAILED, S.CANCELLED)}
    gone = await st.task_purge(cutoffs, 100)
    assert set(gone) == {new_ok.id, old_bad.id, old_cancelled.id, queued.id}
    assert {t.id for t in await all_tasks(st)} == {running.id, child.id}
    await _assert_counts_exact(st)


async def finish_queued(store: RecordStore, task_id: str, at: float) -> None:
    start_tr = Transition(task_id, 1, S.RUNNING, NOW + 1, started_at=NOW + 1, lease_owner="w1")
    assert await store.task_transition_many([start_tr]) == []
    await finish(store, task_id, S.SUCCEEDED, at)


async def test_purge_is_batched(record_store: RecordStore) -> None:
    tasks = [make_task() for _ in range(25)]
    await insert(record_store, *tasks)
    base = base_of(*(t.id for t in tasks))
    for t in tasks:
        await start(record_store, t)
        await finish(record_store, t.id, S.SUCCEEDED, base + 10)
    cutoffs = {S.SUCCEEDED: base + DAY}
    sizes = []
    while gone := await record_store.task_purge(cutoffs, 10):
        sizes.append(len(gone))
    assert sizes == [10, 10, 5]
    assert await all_tasks(record_store) == []
    await _assert_counts_exact(record_store)


async def test_purge_refuses_live_states(record_store: RecordStore) -> None:
    with pytest.raises(ValueError):
        await record_store.task_purge({S.QUEUED: NOW}, 10)
    with pytest.raises(ValueError):
        await record_store.task_purge({S.SUCCEEDED: NOW}, 0)
    assert await record_store.task_purge({}, 10) == []
