"""The Redis dispatch tier's claim obeys a queue's controls (lua/claim.lua, enqueue.lua): a
paused queue hands out nothing, max_running caps leases across owners, a rate hands out start
slots, and a controlled queue's submissions are never leased at enqueue."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.helpers import REDIS_URL, purge_redis_prefix, record_task
from tierq.model import TaskState
from tierq.storage.base import Ack
from tierq.storage.queues import QueueControl
from tierq.storage.redis.dispatch import RedisDispatch

NOW = 1_800_000_000.0


@pytest.fixture
async def dispatch() -> AsyncIterator[RedisDispatch]:
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    d = RedisDispatch(REDIS_URL, prefix=prefix)
    await d.open()
    try:
        yield d
    finally:
        await d.close()
        await purge_redis_prefix(prefix)


async def test_paused_queue_hands_out_nothing(dispatch: RedisDispatch) -> None:
    await dispatch.enqueue_many([record_task(NOW) for _ in range(5)], None, NOW)
    await dispatch.set_controls([QueueControl("default", paused=True)])
    assert await dispatch.claim("a", 10, NOW) == []
    await dispatch.set_controls([QueueControl("default")])  # lifted
    assert len(await dispatch.claim("a", 10, NOW)) == 5


async def test_max_running_counts_leases_of_every_owner(dispatch: RedisDispatch) -> None:
    waits: list[int] = []
    dispatch.listen_limit_waits(waits.append)
    await dispatch.enqueue_many([record_task(NOW) for _ in range(10)], None, NOW)
    await dispatch.set_controls([QueueControl("default", max_running=3)])
    first = await dispatch.claim("a", 10, NOW)
    assert len(first) == 3
    assert await dispatch.claim("b", 10, NOW) == []
    assert waits == [7, 7]  # ready tasks each claim left because of the limit
    # One ends: one slot frees, for whoever claims next.
    done = first[0]
    await dispatch.ack_many("a", [Ack(done.id, done.attempt + 1, TaskState.SUCCEEDED)], NOW)
    assert len(await dispatch.claim("b", 10, NOW)) == 1
    assert await dispatch.claim("a", 10, NOW) == []


async def test_a_rate_hands_out_start_slots(dispatch: RedisDispatch) -> None:
    await dispatch.enqueue_many([record_task(NOW) for _ in range(100)], None, NOW)
    await dispatch.set_controls([QueueControl("default", rate_limit=10, rate_per_s=1.0)])
    a = await dispatch.claim("a", 100, NOW)
    b = await dispatch.claim("b", 100, NOW)
    slots = sorted(t.run_at - NOW for t in a + b)
    # One second of look-ahead: slots at 0, 0.1, ... 1.0 (11), shared by both owners.
    assert len(slots) == 11
    assert slots == pytest.approx([i / 10 for i in range(11)])
    later = await dispatch.claim("b", 100, NOW + 0.5)
    assert [round(t.run_at - NOW, 3) for t in later] == pytest.approx([1.1, 1.2, 1.3, 1.4, 1.5])


async def test_a_controlled_queue_is_never_leased_at_enqueue(dispatch: RedisDispatch) -> None:
    await dispatch.set_controls([QueueControl("limited", max_running=1)])
    mine = [record_task(NOW, queue="limited"), record_task(NOW)]
    assert await dispatch.enqueue_many(mine, "a", NOW) == [mine[0].id]
    # The free one is leased to "a"; the limited one waits for a claim.
    assert [t.id for t in await dispatch.claim("b", 10, NOW)] == [mine[0].id]


async def test_a_deferred_ack_spends_no_attempt(dispatch: RedisDispatch) -> None:
    await dispatch.enqueue_many([record_task(NOW)], None, NOW)
    (task,) = await dispatch.claim("a", 1, NOW)
    assert task.attempt == 0
    ack = Ack(task.id, task.attempt + 1, TaskState.SCHEDULED, NOW + 5, started=False)
    assert await dispatch.ack_many("a", [ack], NOW) == []
    assert await dispatch.claim("a", 1, NOW + 4) == []
    (again,) = await dispatch.claim("b", 1, NOW + 5)
    assert again.attempt == 0  # the lease is for attempt 1 again


async def test_after_a_data_loss_acks_wait_for_the_reclaim(dispatch: RedisDispatch) -> None:
    from tierq.storage.base import GenerationChanged

    old, _ = await dispatch.generation()
    await dispatch.enqueue_many([record_task(NOW) for _ in range(3)], None, NOW)
    running, queued, done = await dispatch.claim("a", 3, NOW)
    await purge_redis_prefix(dispatch.keys.prefix)  # what FLUSHDB does to these keys
    new, created = await dispatch.generation()
    assert created and new != old
    finished = Ack(done.id, done.attempt + 1, TaskState.SUCCEEDED)
    with pytest.raises(GenerationChanged):
        await dispatch.ack_many("a", [finished], NOW, old)
    # The rebuild got there first for one of them: it is taken back from the ready set.
    await dispatch.enqueue_many([queued], None, NOW)
    held = [(running, running.attempt + 1), (queued, queued.attempt + 1), (done, done.attempt + 1)]
    assert await dispatch.reclaim("a", held, NOW) == []
    assert await dispatch.claim("b", 10, NOW) == []  # nothing left to hand out
    assert await dispatch.ack_many("a", [finished], NOW, new) == []
    # A task leased to someone else meanwhile stays theirs.
    other = record_task(NOW)
    await dispatch.enqueue_many([other], None, NOW)
    (taken,) = await dispatch.claim("b", 1, NOW)
    assert await dispatch.reclaim("a", [(taken, taken.attempt + 1)], NOW) == [taken.id]


async def test_a_rebuild_never_takes_an_acked_task_back(dispatch: RedisDispatch) -> None:
    """A rebuild's read of the record tier may predate a terminal ack: offering that task
    again must not make it live (an explicit retry does: take_back)."""
    task = record_task(NOW)
    await dispatch.enqueue_many([task], None, NOW)
    (got,) = await dispatch.claim("a", 1, NOW)
    await dispatch.ack_many("a", [Ack(got.id, got.attempt + 1, TaskState.SUCCEEDED)], NOW)
    await dispatch.enqueue_many([task], None, NOW, take_back=False)
    assert await dispatch.claim("b", 1, NOW) == []
    await dispatch.enqueue_many([task], None, NOW)  # a retry
    assert [t.id for t in await dispatch.claim("b", 1, NOW)] == [task.id]
