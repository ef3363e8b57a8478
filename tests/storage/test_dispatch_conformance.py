"""One dispatch conformance suite: every test runs against each ``Dispatch`` backend, the
in-process one (embedded: the record store is the queue) and Redis (distributed), through the
public methods the engine uses. Tasks are put where the engine puts them: inserted into a real
SQLite record store, then handed to the dispatch tier (the group commit's write-through)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REDIS_URL, purge_redis_prefix, record_task
from tierq.model import Task, TaskState
from tierq.storage.base import Ack, Dispatch, RecordStore
from tierq.storage.inprocess import InProcessDispatch
from tierq.storage.redis.dispatch import RedisDispatch
from tierq.storage.sqlite.store import SQLiteRecordStore

NOW = 1_800_000_000.0


@dataclass
class Tiers:
    store: RecordStore
    dispatch: Dispatch

    async def put(self, tasks: Sequence[Task]) -> None:
        await self.store.task_insert_many(tasks)
        await self.dispatch.enqueue_many(tasks, None, NOW)


@pytest.fixture(params=["inprocess", "redis"])
async def tiers(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Tiers]:
    store = SQLiteRecordStore(str(tmp_path / "dispatch.db"))
    await store.open()
    dispatch: Dispatch
    if request.param == "inprocess":
        dispatch = InProcessDispatch(store, horizon_s=0.0)
    else:
        dispatch = RedisDispatch(REDIS_URL, prefix=f"conf-{uuid.uuid4().hex[:12]}")
    await dispatch.open()
    try:
        yield Tiers(store, dispatch)
    finally:
        if isinstance(dispatch, RedisDispatch):
            await purge_redis_prefix(dispatch.keys.prefix)
        await dispatch.close()
        await store.close()


async def test_empty_batches_are_answered_without_work(tiers: Tiers) -> None:
    d = tiers.dispatch
    await d.enqueue_many([], None, NOW)
    assert await d.claim("a", 0, NOW) == []
    assert await d.ack_many("a", [], NOW) == []
    await d.confirm_many("a", [])
    assert await d.cancel_many([]) == []
    await d.announce_cancel([])
    assert await d.release("a", []) == 0


@pytest.mark.parametrize("state", [TaskState.RUNNING, TaskState.PENDING])
async def test_an_ack_of_a_live_state_it_cannot_mean_is_refused(
    tiers: Tiers, state: TaskState
) -> None:
    task = record_task(NOW)
    await tiers.put([task])
    (claimed,) = await tiers.dispatch.claim("a", 10, NOW)
    with pytest.raises(ValueError, match="cannot ack"):
        await tiers.dispatch.ack_many("a", [Ack(claimed.id, 1, state)], NOW)


async def test_claim_leases_due_tasks_once_in_run_order_up_to_the_limit(tiers: Tiers) -> None:
    # Created in this order (ids are time-ordered: arrival); run order is priority, then
    # run_at, then arrival.
    low = record_task(NOW, priority=0)
    medium = [record_task(NOW, priority=5) for _ in range(2)]
    high = record_task(NOW, priority=10)
    early = record_task(NOW, priority=5, run_at=NOW - 10)  # due before the other mediums
    later = record_task(NOW, priority=10, run_at=NOW + 3600, state=TaskState.SCHEDULED)
    await tiers.put([low, *medium, high, early, later])
    first = await tiers.dispatch.claim("a", 3, NOW)
    assert [t.id for t in first] == [high.id, early.id, medium[0].id]
    rest = await tiers.dispatch.claim("b", 10, NOW)
    assert [t.id for t in rest] == [medium[1].id, low.id]  # the delayed one is not due
    assert await tiers.dispatch.claim("c", 10, NOW) == []
    assert all(t.attempt == 0 for t in first + rest)  # the lease is for attempt 1


async def test_a_released_lease_is_claimed_again_with_its_attempt_unchanged(
    tiers: Tiers,
) -> None:
    task = record_task(NOW)
    await tiers.put([task])
    (claimed,) = await tiers.dispatch.claim("a", 10, NOW)
    assert await tiers.dispatch.release("a", [claimed.id]) == 1
    (again,) = await tiers.dispatch.claim("b", 10, NOW)
    assert (again.id, again.attempt) == (task.id, 0)


async def test_cancel_removes_tasks_nobody_holds(tiers: Tiers) -> None:
    tasks = [record_task(NOW) for _ in range(2)]
    await tiers.put(tasks)
    removed = await tiers.dispatch.cancel_many([tasks[0].id])
    assert removed == [tasks[0].id]
    await tiers.store.task_cancel_many([tasks[0].id], NOW)  # as the engine does next
    assert [t.id for t in await tiers.dispatch.claim("a", 10, NOW)] == [tasks[1].id]


async def test_heartbeat_registers_a_replica_and_the_generation_is_stable(tiers: Tiers) -> None:
    d = tiers.dispatch
    assert await d.heartbeat("a", 6.0, NOW, {"workers": 4}) is True
    (replica,) = await d.replicas(NOW)
    assert (replica.owner, replica.last_heartbeat, replica.expires_at) == ("a", NOW, NOW + 6.0)
    assert replica.info["workers"] == 4
    generation, _ = await d.generation()
    assert await d.generation() == (generation, False)


async def test_a_terminal_ack_and_its_confirm_end_the_task_there(tiers: Tiers) -> None:
    task = record_task(NOW)
    await tiers.put([task])
    (claimed,) = await tiers.dispatch.claim("a", 10, NOW)
    assert await tiers.dispatch.ack_many("a", [Ack(claimed.id, 1, TaskState.SUCCEEDED)], NOW) == []
    await tiers.dispatch.confirm_many("a", [claimed.id])
    await tiers.dispatch.confirm_many("a", [claimed.id])  # a repeated confirm is harmless
    assert await tiers.dispatch.claim("a", 10, NOW + 60) == []
    assert await tiers.dispatch.rescue(NOW + 3600) == []  # nothing of it is left to rescue
