"""One suite for every queue store (SQLite, PostgreSQL): controls survive a reopen, depths
count live and dead-lettered tasks per queue and tenant, a bulk operation's answer is kept
once per key."""

from __future__ import annotations

from tests.helpers import record_task
from tierq.model import TaskState
from tierq.storage.base import RecordStore
from tierq.storage.factory import make_queue_store
from tierq.storage.queues import QueueControl


async def test_controls_are_saved_and_replaced(record_store: RecordStore) -> None:
    store = make_queue_store(record_store)
    assert await store.controls() == []
    await store.save_control(QueueControl("mail", paused=True, updated_at=1.0))
    await store.save_control(QueueControl("api", max_running=3, rate_limit=10, rate_per_s=1.0))
    await store.save_control(QueueControl("mail", paused=False, max_running=2, updated_at=2.0))
    assert await store.controls() == [
        QueueControl("api", False, 3, 10, 1.0, 0.0),
        QueueControl("mail", False, 2, None, None, 2.0),
    ]


async def test_depths_by_queue_state_and_tenant(record_store: RecordStore) -> None:
    tasks = [
        record_task(queue="a", state=TaskState.QUEUED, run_at=100.0),
        record_task(queue="a", state=TaskState.QUEUED, run_at=50.0),
        record_task(queue="a", state=TaskState.FAILED),
        record_task(queue="b", state=TaskState.SCHEDULED, run_at=500.0),
        record_task(queue="b", state=TaskState.SUCCEEDED),
        record_task(queue="b", state=TaskState.QUEUED, tenant="acme", run_at=7.0),
    ]
    await record_store.task_insert_many(tasks)
    store = make_queue_store(record_store)
    depths = {d.queue: d for d in await store.depths()}
    assert depths["a"].counts == {"queued": 2, "failed": 1}
    assert depths["a"].oldest_queued_at == 50.0
    assert depths["b"].counts == {"scheduled": 1, "queued": 1}  # succeeded is not walked
    acme = await store.depths("acme")
    assert [(d.queue, d.counts, d.oldest_queued_at) for d in acme] == [("b", {"queued": 1}, 7.0)]


async def test_an_operation_runs_once_per_key(record_store: RecordStore) -> None:
    store = make_queue_store(record_store)
    assert await store.begin_operation("t", "k", 10.0) is None  # this call runs it
    assert await store.begin_operation("t", "k", 10.1) == b""  # a retry meanwhile: running
    await store.finish_operation("t", "k", b'{"changed": 1}')
    assert await store.begin_operation("t", "k", 11.0) == b'{"changed": 1}'
    assert await store.begin_operation("other", "k", 11.0) is None  # keys are per tenant
    # A call that failed gives its key back: the retry runs it.
    await store.abandon_operation("other", "k")
    assert await store.begin_operation("other", "k", 12.0) is None
    # A finished answer is never abandoned; old answers are forgotten.
    await store.abandon_operation("t", "k")
    assert await store.begin_operation("t", "k", 12.0) == b'{"changed": 1}'
    # "other" was begun at 12.0 and never finished: given back once stale, like old answers.
    assert await store.forget_operations(11.5, 11.9) == 1
    assert await store.begin_operation("other", "k", 12.5) == b""
    assert await store.forget_operations(11.5, 12.1) == 1
    assert await store.begin_operation("other", "k", 12.5) is None
    assert await store.begin_operation("t", "k", 13.0) is None


async def test_a_task_keeps_the_breaker_it_names(record_store: RecordStore) -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    named = record_task(breaker="payments-api", request_id="req-1", traceparent=trace)
    plain = record_task()
    await record_store.task_insert_many([named, plain])
    got = {t.id: t for t in await record_store.task_get_many([named.id, plain.id])}
    assert (got[named.id].breaker, got[named.id].request_id) == ("payments-api", "req-1")
    assert (got[plain.id].breaker, got[plain.id].request_id) == (None, None)
    claimed = {t.id: t for t in await record_store.task_claim("me", 10, named.run_at + 1)}
    assert claimed[named.id].breaker == "payments-api"
    assert claimed[named.id].request_id == "req-1"
    assert (claimed[named.id].traceparent, got[plain.id].traceparent) == (trace, None)
    assert await record_store.task_claim("me", 10, named.run_at + 1, skip_queues=["default"]) == []
