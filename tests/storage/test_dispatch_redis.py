"""RedisDispatch against the real Redis at TIERQ_TEST_REDIS_URL (unique key prefix per test)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.helpers import REDIS_URL, purge_redis_prefix, record_task
from tierq.ids import new_id
from tierq.model import Task, TaskState
from tierq.storage.base import Ack, StoreUnavailable
from tierq.storage.redis.dispatch import SCRIPT_CHUNK, RedisDispatch
from tierq.storage.redis.eviction import EvictionPolicyError, judge_policy
from tierq.storage.redis.keys import member, run_at_from_member

NOW = 1_800_000_000.0


def make_task(**kw: Any) -> Task:
    return record_task(NOW, **{"payload": b'{"n": 1}', **kw})


async def purge(d: RedisDispatch) -> None:
    await purge_redis_prefix(d.keys.prefix)


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    """The test's own connection to the Redis the dispatch tier uses, to look at its keys."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def dispatch(prefix: str) -> AsyncIterator[RedisDispatch]:
    d = RedisDispatch(REDIS_URL, prefix=prefix, heartbeat_ttl=6.0)
    await d.open()
    try:
        yield d
    finally:
        await purge(d)
        await d.close()


@pytest.fixture
async def other(prefix: str, dispatch: RedisDispatch) -> AsyncIterator[RedisDispatch]:
    """A second replica on the same prefix (its own client and no routing cache)."""
    d = RedisDispatch(REDIS_URL, prefix=prefix)
    await d.open()
    try:
        yield d
    finally:
        await d.close()


# ---- encoding -------------------------------------------------------------------------


def test_member_order_matches_sort_key() -> None:
    ids = sorted(new_id(NOW) for _ in range(4))
    cases = [
        (p, r, i)
        for p in (-(2**63), -7, 0, 5, 2**53 + 1, 2**63 - 1)
        for r in (0.0, NOW, NOW + 1e-7, NOW + 2e-7, 1e300)
        for i in ids
    ]
    by_member = sorted(cases, key=lambda c: member(*c))
    by_key = sorted(cases, key=lambda c: (-c[0], c[1], c[2]))
    assert by_member == by_key
    assert run_at_from_member(member(3, NOW + 1e-7, ids[0])) == NOW + 1e-7
    with pytest.raises(ValueError):
        member(2**63, NOW, ids[0])


# ---- enqueue and claim ----------------------------------------------------------------


async def test_claim_in_run_order(dispatch: RedisDispatch) -> None:
    tasks = [
        make_task(priority=p, run_at=NOW - dt)
        for p in (0, 10, 5, -3, 2**60)
        for dt in (0.0, 1e-7, 5.0)  # sub-microsecond run_at differences must still order
    ]
    tasks += [make_task(priority=5, run_at=NOW - 1.0) for _ in range(3)]  # ties: by id
    await dispatch.enqueue_many(tasks[::-1], None, NOW)
    claimed = await dispatch.claim("a", 100, NOW)
    assert [t.id for t in claimed] == [t.id for t in sorted(tasks, key=lambda t: t.sort_key)]
    assert all(t.lease_owner == "a" and t.state is TaskState.QUEUED for t in claimed)
    assert {t.id: t.run_at for t in claimed} == {t.id: t.run_at for t in tasks}


async def test_claim_merges_queues_in_run_order(dispatch: RedisDispatch) -> None:
    tasks = [make_task(queue=q, priority=p) for q in ("a", "b", "c") for p in (1, 7, 3)]
    await dispatch.enqueue_many(tasks, None, NOW)
    first = await dispatch.claim("o", 4, NOW)
    order = sorted(tasks, key=lambda t: t.sort_key)
    assert [t.id for t in first] == [t.id for t in order[:4]]
    rest = await dispatch.claim("o", 100, NOW)
    assert [t.id for t in rest] == [t.id for t in order[4:]]


async def test_claim_limit(dispatch: RedisDispatch) -> None:
    await dispatch.enqueue_many([make_task() for _ in range(10)], None, NOW)
    assert len(await dispatch.claim("a", 3, NOW)) == 3
    assert len(await dispatch.claim("a", 0, NOW)) == 0
    assert len(await dispatch.claim("b", 100, NOW)) == 7
    assert await dispatch.claim("b", 100, NOW) == []
    assert await dispatch.depth() == {"ready": 0, "delayed": 0, "leased": 10}


async def test_enqueue_is_idempotent(dispatch: RedisDispatch) -> None:
    task = make_task()
    await dispatch.enqueue_many([task], None, NOW)
    changed = make_task(id=task.id, priority=99, attempt=4)
    await dispatch.enqueue_many([changed, changed], None, NOW)
    assert await dispatch.depth() == {"ready": 1, "delayed": 0, "leased": 0}
    (claimed,) = await dispatch.claim("a", 10, NOW)
    assert (claimed.priority, claimed.attempt) == (5, 0)
    await dispatch.enqueue_many([task], None, NOW)  # leased: still not added again
    assert await dispatch.depth() == {"ready": 0, "delayed": 0, "leased": 1}


async def test_enqueue_leased_to_owner(dispatch: RedisDispatch) -> None:
    tasks = [make_task(attempt=2), make_task(run_at=NOW + 60)]
    await dispatch.enqueue_many(tasks, "me", NOW)
    assert await dispatch.depth() == {"ready": 0, "delayed": 0, "leased": 2}
    assert await dispatch.claim("other", 10, NOW + 100) == []
    acks = [Ack(tasks[0].id, 3, TaskState.SUCCEEDED), Ack(tasks[1].id, 1, TaskState.SUCCEEDED)]
    assert await dispatch.ack_many("me", acks, NOW) == []
    assert await dispatch.depth() == {"ready": 0, "delayed": 0, "leased": 0}


async def test_body_bytes_round_trip_exactly(dispatch: RedisDispatch) -> None:
    task = make_task(
        payload=b'{ "x" : [1, 2.50, "\\u00e9\xc3\xa9"],\n "big": 123456789012345678901234567890 }',
        notify=b'{"webhook": "http://h/x"}',
        result=b"null",
        name="n",
        description="d",
        idempotency_key="k",
        depends_on=(new_id(NOW),),
        attempt_base=1,
        last_error="boom",
        max_retries=7,
        timeout_s=2.5,
        tenant="acme",
    )
    await dispatch.enqueue_many([task], None, NOW)
    (got,) = await dispatch.claim("a", 1, NOW)
    fields = ("payload", "notify", "result", "name", "description", "idempotency_key", "tenant")
    for name in fields:
        assert getattr(got, name) == getattr(task, name), name
    assert (got.depends_on, got.attempt_base, got.last_error) == (
        task.depends_on,
        1,
        "boom",
    )
    assert (got.max_retries, got.timeout_s, got.created_at) == (7, 2.5, NOW)


async def test_delayed_promotion_at_injected_time(dispatch: RedisDispatch) -> None:
    late = make_task(run_at=NOW + 10)
    await dispatch.enqueue_many([late], None, NOW)
    assert await dispatch.depth() == {"ready": 0, "delayed": 1, "leased": 0}
    assert await dispatch.claim("a", 10, NOW + 9.999) == []
    assert await dispatch.promote(NOW + 9.999) == 0
    assert await dispatch.promote(NOW + 10) == 1
    assert await dispatch.depth() == {"ready": 1, "delayed": 0, "leased": 0}
    later = make_task(run_at=NOW + 20)
    await dispatch.enqueue_many([later], None, NOW)
    claimed = await dispatch.claim("a", 10, NOW + 20)
    assert [t.id for t in claimed] == [late.id, later.id]


# ---- acks and fencing -----------------------------------------------------------------


async def test_lease_token_is_attempt_plus_one(
    dispatch: RedisDispatch, raw: aioredis.Redis
) -> None:
    task = make_task(attempt=2)
    await dispatch.enqueue_many([task], None, NOW)
    (got,) = await dispatch.claim("a", 1, NOW)
    assert got.attempt == 2
    lease = await raw.hget(dispatch.keys.queue("default").lease, task.id)
    assert lease == b"a|3"
    assert await dispatch.ack_many("a", [Ack(task.id, 2, TaskState.SUCCEEDED)], NOW) == [task.id]
    assert await dispatch.ack_many("a", [Ack(task.id, 3, TaskState.SUCCEEDED)], NOW) == []


async def test_ack_terminal_keeps_task_until_confirm(
    dispatch: RedisDispatch, raw: aioredis.Redis
) -> None:
    tasks = [make_task() for _ in range(3)]
    await dispatch.enqueue_many(tasks, None, NOW)
    await dispatch.claim("a", 3, NOW)
    states = (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)
    acks = [Ack(t.id, 1, s) for t, s in zip(tasks, states, strict=True)]
    assert await dispatch.ack_many("a", acks, NOW) == []
    assert await dispatch.depth() == {"ready": 0, "delayed": 0, "leased": 0}
    qk = dispatch.keys.queue("default")
    client = raw
    # Not claimable, but kept (with the acked token) until the outcome is recorded.
    assert await dispatch.claim("b", 10, NOW) == []
    assert await client.hlen(qk.body) == 3
    assert await client.hgetall(qk.acked("a")) == {t.id.encode(): b"1" for t in tasks}
    await dispatch.confirm_many("a", [t.id for t in tasks])
    assert await client.hlen(qk.body) == 0
    assert await client.hlen(qk.meta) == 0
    assert await client.exists(qk.acked("a")) == 0
    # The task is gone, so it can be enqueued again (e.g. an explicit retry).
    await dispatch.enqueue_many([tasks[0]], None, NOW)
    assert (await dispatch.depth())["ready"] == 1


async def test_unconfirmed_terminal_ack_is_rescued_when_owner_dies(
    dispatch: RedisDispatch, raw: aioredis.Redis
) -> None:
    """The replica acked (Redis ended the lease) and died before its record write: the
    task must run again, not vanish."""
    done, leased = make_task(attempt=1), make_task()
    await dispatch.enqueue_many([done, leased], None, NOW)
    await dispatch.heartbeat("a", 5.0, NOW, {})
    await dispatch.claim("a", 2, NOW)
    assert await dispatch.ack_many("a", [Ack(done.id, 2, TaskState.SUCCEEDED)], NOW) == []
    (info,) = await dispatch.replicas(NOW)
    assert info.leased == 2  # what rescue would hand back
    assert await dispatch.rescue(NOW + 4.9) == []
    rescued = await dispatch.rescue(NOW + 5)
    assert {(r.task_id, r.attempt, r.owner) for r in rescued} == {
        (done.id, 2, "a"),
        (leased.id, 1, "a"),
    }
    assert await dispatch.rescue(NOW + 6) == []  # each exactly once
    assert await dispatch.depth() == {"ready": 2, "delayed": 0, "leased": 0}
    again = {t.id: t for t in await dispatch.claim("b", 2, NOW + 5)}
    assert again[done.id].attempt == 2  # the next run is attempt 3: a's token is used up
    # a's late confirm (its record write landed after all) leaves b's run alone.
    await dispatch.confirm_many("a", [done.id])
    qk = dispatch.keys.queue("default")
    assert await raw.hexists(qk.body, done.id)
    assert await dispatch.ack_many("b", [Ack(done.id, 3, TaskState.SUCCEEDED)], NOW + 6) == []
    await dispatch.confirm_many("b", [done.id])
    assert not await raw.hexists(qk.body, done.id)


async def test_confirm_of_unknown_or_foreign_ids_is_harmless(
    dispatch: RedisDispatch, other: RedisDispatch, raw: aioredis.Redis
) -> None:
    acked, ready, leased = make_task(queue="q1"), make_task(queue="q2"), make_task(queue="q1")
    await dispatch.enqueue_many([acked, leased], "a", NOW)
    await dispatch.enqueue_many([ready], None, NOW)
    assert await dispatch.ack_many("a", [Ack(acked.id, 1, TaskState.FAILED)], NOW) == []
    ids = [acked.id, ready.id, leased.id, new_id(NOW)]
    await dispatch.confirm_many("b", ids)  # not b's acks
    await dispatch.confirm_many("a", [ready.id, leased.id, new_id(NOW)])
    await dispatch.confirm_many("a", [])
    assert await dispatch.depth() == {"ready": 1, "delayed": 0, "leased": 1}
    client = raw
    assert await client.hexists(dispatch.keys.queue("q1").body, acked.id)
    # Another replica (no routing cache) confirms a's ack by id alone; twice is harmless.
    await other.confirm_many("a", [acked.id])
    await dispatch.confirm_many("a", [acked.id])
    assert not await client.hexists(dispatch.keys.queue("q1").body, acked.id)
    assert await dispatch.depth() == {"ready": 1, "delayed": 0, "leased": 1}
    assert {t.id for t in await dispatch.claim("c", 5, NOW)} == {ready.id}


async def test_refused_acks_never_enter_the_acked_hash(
    dispatch: RedisDispatch, raw: aioredis.Redis
) -> None:
    task = make_task()
    await dispatch.enqueue_many([task], None, NOW)
    await dispatch.heartbeat("a", 5.0, NOW, {})
    await dispatch.claim("a", 1, NOW)
    stale = [Ack(task.id, 2, TaskState.SUCCEEDED)]
    assert await dispatch.ack_many("a", stale, NOW) == [task.id]  # wrong token
    foreign = [Ack(task.id, 1, TaskState.SUCCEEDED)]
    assert await dispatch.ack_many("b", foreign, NOW) == [task.id]  # wrong owner
    qk = dispatch.keys.queue("default")
    for owner in ("a", "b"):
        assert await raw.exists(qk.acked(owner)) == 0
    # Rescue returns the lease once, not a second time as an acked task.
    rescued = await dispatch.rescue(NOW + 5)
    assert [(r.task_id, r.attempt) for r in rescued] == [(task.id, 1)]


async def test_cancel_leaves_unconfirmed_tasks(
    dispatch: RedisDispatch, raw: aioredis.Redis
) -> None:
    task = make_task()
    await dispatch.enqueue_many([task], "a", NOW)
    assert await dispatch.ack_many("a", [Ack(task.id, 1, TaskState.SUCCEEDED)], NOW) == []
    assert await dispatch.cancel_many([task.id]) == []
    qk = dispatch.keys.queue("default")
    assert await raw.hexists(qk.body, task.id)
    assert await raw.hexists(qk.acked("a"), task.id)


async def test_enqueue_takes_back_an_unconfirmed_task(dispatch: RedisDispatch) -> None:
    """An explicit retry racing the confirm: the task is live again, and neither the late
    confirm nor a rescue of the acking owner may remove or duplicate it."""
    task, other_task = make_task(attempt=3), make_task(attempt=3)
    await dispatch.enqueue_many([task, other_task], "a", NOW)
    acks = [Ack(t.id, 4, TaskState.FAILED) for t in (task, other_task)]
    assert await dispatch.ack_many("a", acks, NOW) == []
    retried = [make_task(id=t.id, attempt=0, run_at=NOW + 9) for t in (task, other_task)]
    await dispatch.enqueue_many(retried, None, NOW)
    assert await dispatch.depth() == {"ready": 0, "delayed": 2, "leased": 0}
    await dispatch.enqueue_many([task], None, NOW)  # live now: skipped
    assert await dispatch.depth() == {"ready": 0, "delayed": 2, "leased": 0}
    await dispatch.confirm_many("a", [task.id])  # late confirm: keeps the live task
    assert await dispatch.rescue(NOW + 60) == []  # a never heartbeated: declared dead
    assert await dispatch.depth() == {"ready": 0, "delayed": 2, "leased": 0}
    claimed = await dispatch.claim("b", 5, NOW + 9)
    assert len(claimed) == 2
    for again in claimed:
        assert again.attempt == 4  # a's token is used up; the stored attempt never goes back
    # b re-runs one and acks it; a's orphaned entry for it is stale and must not let a's
    # late confirm drop b's unrecorded outcome: b dying still gets it rescued.
    assert await dispatch.ack_many("b", [Ack(other_task.id, 5, TaskState.SUCCEEDED)], NOW) == []
    await dispatch.confirm_many("a", [other_task.id])
    rescued = await dispatch.rescue(NOW + 120)
    assert {(r.task_id, r.attempt, r.owner) for r in rescued} == {
        (task.id, 5, "b"),  # still leased
        (other_task.id, 5, "b"),  # acked, never confirmed
    }


async def test_ack_scheduled_goes_to_delayed_with_attempt_token(dispatch: RedisDispatch) -> None:
    task = make_task()
    await dispatch.enqueue_many([task], None, NOW)
    await dispatch.claim("a", 1, NOW)
    ack = Ack(task.id, 1, TaskState.SCHEDULED, run_at=NOW + 30)
    assert await dispatch.ack_many("a", [ack], NOW) == []
    assert await dispatch.depth() == {"ready": 0, "delayed": 1, "leased": 0}
    assert await dispatch.claim("b", 1, NOW + 29) == []
    (again,) = await dispatch.claim("b", 1, NOW + 30)
    assert (again.attempt, again.run_at, again.lease_owner) == (1, NOW + 30, "b")


async def test_ack_queued_goes_back_to_ready(dispatch: RedisDispatch) -> None:
    task = make_task()
    await dispatch.enqueue_many([task], None, NOW)
    await dispatch.claim("a", 1, NOW)
    assert await dispatch.ack_many("a", [Ack(task.id, 1, TaskState.QUEUED)], NOW) == []
    assert await dispatch.depth() == {"ready": 1, "delayed": 0, "leased": 0}
    (again,) = await dispatch.claim("b", 1, NOW)
    assert (again.attempt, again.run_at) == (1, NOW)
    with pytest.raises(ValueError):
        await dispatch.ack_many("b", [Ack(task.id, 2, TaskState.RUNNING)], NOW)


async def test_stale_ack_refused_after_rescue_and_reclaim(dispatch: RedisDispatch) -> None:
    task = make_task()
    await dispatch.enqueue_many([task], None, NOW)
    await dispatch.heartbeat("a", 5.0, NOW, {})
    await dispatch.claim("a", 1, NOW)
    rescued = await dispatch.rescue(NOW + 5)
    assert [(r.task_id, r.attempt, r.owner) for r in rescued] == [(task.id, 1, "a")]
    (theirs,) = await dispatch.claim("b", 1, NOW + 5)
    assert theirs.attempt == 1  # the next run is attempt 2
    # "a" wakes up and reports its old attempt: refused, b's lease untouched.
    assert await dispatch.ack_many("a", [Ack(task.id, 1, TaskState.SUCCEEDED)], NOW + 6) == [
        task.id
    ]
    assert await dispatch.ack_many("b", [Ack(task.id, 2, TaskState.SUCCEEDED)], NOW + 6) == []


async def test_foreign_owner_refused(dispatch: RedisDispatch, other: RedisDispatch) -> None:
    tasks = [make_task(queue=q) for q in ("q1", "q2")]
    await dispatch.enqueue_many(tasks, None, NOW)
    await dispatch.claim("a", 2, NOW)
    acks = [Ack(t.id, 1, TaskState.SUCCEEDED) for t in tasks]
    assert await dispatch.ack_many("b", acks, NOW) == [t.id for t in tasks]
    assert await dispatch.ack_many("a", [Ack(new_id(NOW), 1, TaskState.SUCCEEDED)], NOW) != []
    # Another replica (no routing cache) settles a's leases across queues by id alone.
    assert await other.ack_many("a", acks, NOW) == []
    assert await dispatch.depth() == {"ready": 0, "delayed": 0, "leased": 0}


async def test_cancel_leaves_leased_tasks(dispatch: RedisDispatch) -> None:
    leased, ready, delayed = make_task(), make_task(), make_task(run_at=NOW + 99)
    await dispatch.enqueue_many([leased], "a", NOW)
    await dispatch.enqueue_many([ready, delayed], None, NOW)
    ids = [leased.id, ready.id, delayed.id, new_id(NOW)]
    assert await dispatch.cancel_many(ids) == [ready.id, delayed.id]
    assert await dispatch.depth() == {"ready": 0, "delayed": 0, "leased": 1}


async def test_release_hands_back_with_attempt_unchanged(dispatch: RedisDispatch) -> None:
    tasks = [make_task(attempt=1) for _ in range(3)]
    await dispatch.enqueue_many(tasks, None, NOW)
    await dispatch.claim("a", 2, NOW)
    await dispatch.claim("b", 1, NOW)
    ids = [t.id for t in tasks]
    assert await dispatch.release("a", ids) == 2  # b's lease is not a's to release
    assert await dispatch.depth() == {"ready": 2, "delayed": 0, "leased": 1}
    again = await dispatch.claim("c", 10, NOW)
    assert [t.attempt for t in again] == [1, 1]


# ---- liveness -------------------------------------------------------------------------


async def test_rescue_only_after_heartbeat_expiry(dispatch: RedisDispatch) -> None:
    tasks = [make_task(attempt=a) for a in (0, 3)]
    await dispatch.enqueue_many(tasks, None, NOW)
    await dispatch.heartbeat("a", 5.0, NOW, {})
    await dispatch.heartbeat("b", 5.0, NOW, {})
    await dispatch.claim("a", 2, NOW)
    assert await dispatch.rescue(NOW + 4.99) == []
    await dispatch.heartbeat("a", 5.0, NOW + 4, {})  # renewed until NOW + 9
    assert await dispatch.rescue(NOW + 8) == []
    rescued = await dispatch.rescue(NOW + 9)
    assert sorted((r.task_id, r.attempt) for r in rescued) == sorted(
        [(tasks[0].id, 1), (tasks[1].id, 4)]
    )
    assert await dispatch.depth() == {"ready": 2, "delayed": 0, "leased": 0}
    assert await dispatch.rescue(NOW + 100) == []  # b expired but held nothing
    assert await dispatch.replicas(NOW) == []  # both forgotten
    claimed = await dispatch.claim("c", 10, NOW + 100)
    assert sorted(t.attempt for t in claimed) == [1, 4]


async def test_owner_that_never_heartbeats_is_rescued(dispatch: RedisDispatch) -> None:
    await dispatch.enqueue_many([make_task()], None, NOW)
    await dispatch.claim("silent", 1, NOW)  # registered with heartbeat_ttl = 6
    assert await dispatch.rescue(NOW + 5.9) == []
    assert len(await dispatch.rescue(NOW + 6)) == 1


async def test_heartbeat_reports_being_declared_dead(dispatch: RedisDispatch) -> None:
    tasks = [make_task() for _ in range(3)]
    await dispatch.enqueue_many(tasks, None, NOW)
    assert await dispatch.heartbeat("z", 5.0, NOW, {}) is True  # first beat: alive
    assert await dispatch.heartbeat("z", 5.0, NOW + 1, {}) is True
    await dispatch.claim("z", 1, NOW + 1)
    assert len(await dispatch.rescue(NOW + 6)) == 1  # z is declared dead
    # z wakes up and claims before it heartbeats: still dead, so the next rescue sweeps it.
    await dispatch.claim("z", 1, NOW + 7)
    assert [r.owner for r in await dispatch.rescue(NOW + 7)] == ["z"]
    # A claim racing between rescue and heartbeat: the heartbeat itself takes it back.
    (late,) = await dispatch.claim("z", 1, NOW + 8)
    assert late.attempt == 2  # the same task, rescued twice so far
    assert await dispatch.heartbeat("z", 5.0, NOW + 8, {}) is False
    assert await dispatch.depth() == {"ready": 3, "delayed": 0, "leased": 0}
    assert await dispatch.heartbeat("z", 5.0, NOW + 9, {}) is True  # alive again
    assert await dispatch.rescue(NOW + 9) == []


async def test_generation_changes_when_redis_loses_data(
    dispatch: RedisDispatch, other: RedisDispatch
) -> None:
    gen, created = await dispatch.generation()
    assert created is True
    assert await other.generation() == (gen, False)
    assert await dispatch.generation() == (gen, False)
    await purge(dispatch)  # what a Redis restart without persistence looks like
    new, created = await other.generation()
    assert created is True and new != gen
    assert await dispatch.generation() == (new, False)


async def test_replicas_listing(dispatch: RedisDispatch, raw: aioredis.Redis) -> None:
    await dispatch.enqueue_many([make_task(queue=q) for q in ("x", "y", "y")], None, NOW)
    await dispatch.heartbeat("a", 10.0, NOW, {"host": "h1", "workers": 4})
    await dispatch.heartbeat("b", 2.0, NOW, {})
    await dispatch.claim("a", 3, NOW)
    live = await dispatch.replicas(NOW + 1)
    assert [(r.owner, r.leased, r.expires_at) for r in live] == [
        ("a", 3, NOW + 10),
        ("b", 0, NOW + 2),
    ]
    assert live[0].info == {"host": "h1", "workers": 4} and live[0].last_heartbeat == NOW
    assert [r.owner for r in await dispatch.replicas(NOW + 2)] == ["a"]
    ttl = await raw.pttl(dispatch.keys.replica("a"))
    assert 0 < ttl <= 10_000


# ---- wake-ups, depth, batches, config -------------------------------------------------


async def test_wait_for_work_wakes_on_enqueue(
    dispatch: RedisDispatch, other: RedisDispatch
) -> None:
    await dispatch.wait_for_work(0)  # drain wake-ups from before the test
    started = time.monotonic()
    waiter = asyncio.create_task(dispatch.wait_for_work(5.0))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await other.enqueue_many([make_task()], None, NOW)
    await asyncio.wait_for(waiter, 2.0)
    assert time.monotonic() - started < 1.0


async def test_wait_for_work_times_out_without_work(dispatch: RedisDispatch) -> None:
    await dispatch.wait_for_work(0)
    started = time.monotonic()
    await dispatch.enqueue_many([make_task(run_at=NOW + 60)], None, NOW)  # delayed: no wake
    await dispatch.wait_for_work(0.2)
    assert time.monotonic() - started >= 0.19


async def test_depth_counts_every_queue(dispatch: RedisDispatch) -> None:
    assert await dispatch.depth() == {"ready": 0, "delayed": 0, "leased": 0}
    await dispatch.enqueue_many([make_task(queue="a"), make_task(queue="b")], None, NOW)
    await dispatch.enqueue_many([make_task(queue="c", run_at=NOW + 1)], None, NOW)
    await dispatch.enqueue_many([make_task(queue="a")], "o", NOW)
    assert await dispatch.depth() == {"ready": 2, "delayed": 1, "leased": 1}


async def test_ten_thousand_task_round_trip(dispatch: RedisDispatch) -> None:
    tasks = [make_task(priority=i % 3, queue=f"q{i % 2}") for i in range(10_000)]
    await dispatch.enqueue_many(tasks, None, NOW)
    assert await dispatch.depth() == {"ready": 10_000, "delayed": 0, "leased": 0}
    claimed = await dispatch.claim("a", 10_000, NOW)
    assert [t.id for t in claimed] == [t.id for t in sorted(tasks, key=lambda t: t.sort_key)]
    acks = [Ack(t.id, 1, TaskState.SUCCEEDED) for t in claimed]
    assert await dispatch.ack_many("a", acks, NOW) == []
    assert await dispatch.depth() == {"ready": 0, "delayed": 0, "leased": 0}


async def test_eviction_policy(dispatch: RedisDispatch) -> None:
    policy = await dispatch.check_eviction_policy()  # open() already ran it
    assert policy is None or policy == "noeviction" or policy.startswith("volatile-")
    judge_policy("noeviction")
    judge_policy("volatile-lru")
    for bad in ("allkeys-lru", "allkeys-random", "allkeys-lfu"):
        with pytest.raises(EvictionPolicyError, match="noeviction"):
            judge_policy(bad)


async def test_lifecycle_and_unreachable_redis(prefix: str) -> None:
    d = RedisDispatch(REDIS_URL, prefix=prefix)
    with pytest.raises(RuntimeError):
        await d.depth()
    await d.open()
    await d.open()
    await d.close()
    await d.close()
    down = RedisDispatch("redis://127.0.0.1:1/0", prefix=prefix)
    with pytest.raises(StoreUnavailable):
        await down.open()


async def script_calls() -> int:
    """Script calls (EVALSHA/EVAL) the Redis server has run so far, all clients (the tests
    are its only client while they run). Calls made inside a script count under their own
    command names, not here: this counts what clients sent."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


async def test_throughput(dispatch: RedisDispatch) -> None:
    """Enqueue, claim, ack and confirm 1,000 tasks per round: a handful of commands per
    batch, never one per task. Prints microseconds per task (measured, not asserted)."""
    rounds = int(os.environ.get("TIERQ_BENCH_ROUNDS", "5"))
    spent = {"enqueue": 0.0, "claim": 0.0, "ack": 0.0, "confirm": 0.0}
    calls_before = await script_calls()
    for _ in range(rounds):
        tasks = [make_task(priority=i % 3) for i in range(1000)]
        t0 = time.perf_counter()
        await dispatch.enqueue_many(tasks, None, NOW)
        t1 = time.perf_counter()
        claimed = await dispatch.claim("a", 1000, NOW)
        t2 = time.perf_counter()
        refused = await dispatch.ack_many(
            "a", [Ack(t.id, 1, TaskState.SUCCEEDED) for t in claimed], NOW
        )
        t3 = time.perf_counter()
        await dispatch.confirm_many("a", [t.id for t in claimed])
        t4 = time.perf_counter()
        assert len(claimed) == 1000 and refused == []
        spent["enqueue"] += t1 - t0
        spent["claim"] += t2 - t1
        spent["ack"] += t3 - t2
        spent["confirm"] += t4 - t3
    calls = await script_calls() - calls_before
    per_task = {k: v / (rounds * 1000) * 1e6 for k, v in spent.items()}
    print("µs per task over", rounds, "rounds:", {k: round(v, 1) for k, v in per_task.items()})
    print("Redis script calls per round of 1,000 tasks:", calls / rounds)
    # Four batch calls of 1,000 tasks each, in script chunks of SCRIPT_CHUNK: a few script
    # calls per batch call and queue. One per task would be 4,000 per round.
    assert 0 < calls / rounds <= 4 * (1000 // SCRIPT_CHUNK + 2), calls


async def test_a_round_trip_cancelled_mid_reply_never_leaves_its_reply_behind(
    dispatch: RedisDispatch, prefix: str
) -> None:
    # BLPOP answers only after 0.5 s; cancelled before that, its reply is still on the way.
    blocked = asyncio.ensure_future(dispatch._run([("BLPOP", f"{{{prefix}}}:nothing", 0.5)]))
    await asyncio.sleep(0.1)
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    # The next round trip (likely on the same pooled connection) reads its own replies:
    # redis-py drops a connection interrupted mid-read, _pipeline one interrupted anywhere.
    for n in range(3):
        assert await dispatch._run([("ECHO", f"e{n}"), ("ECHO", "second")]) == [
            f"e{n}".encode(),
            b"second",
        ]
    await asyncio.sleep(0.6)  # past the moment the BLPOP reply would have arrived
    assert await dispatch._run([("ECHO", "late")]) == [b"late"]


async def test_an_error_reply_takes_its_own_place_in_a_round_trip(
    dispatch: RedisDispatch, prefix: str
) -> None:
    key = f"{{{prefix}}}:str"
    from redis.exceptions import ResponseError

    with pytest.raises(ResponseError):
        await dispatch._run([("SET", key, "v"), ("LPUSH", key, "x"), ("ECHO", "after")])
    # The replies after the error were read: the connection is usable and in step.
    assert await dispatch._run([("GET", key), ("ECHO", "ok")]) == [b"v", b"ok"]


async def test_depth_sees_queues_added_since_its_last_call(
    dispatch: RedisDispatch, other: RedisDispatch
) -> None:
    await dispatch.enqueue_many([make_task(queue="a")], None, NOW)
    assert await dispatch.depth() == {"ready": 1, "delayed": 0, "leased": 0}
    # Another replica opens a queue this one has never seen: counted on the next call.
    await other.enqueue_many([make_task(queue="b"), make_task(queue="b")], None, NOW)
    await other.enqueue_many([make_task(queue="c", run_at=NOW + 1)], None, NOW)
    assert await dispatch.depth() == {"ready": 3, "delayed": 1, "leased": 0}
    assert await dispatch.depth() == {"ready": 3, "delayed": 1, "leased": 0}
    # The tier wiped (a Redis restart without persistence): nothing of the old queues counts.
    await purge(dispatch)
    assert await dispatch.depth() == {"ready": 0, "delayed": 0, "leased": 0}
    await dispatch.enqueue_many([make_task(queue="b")], None, NOW)
    assert await dispatch.depth() == {"ready": 1, "delayed": 0, "leased": 0}
