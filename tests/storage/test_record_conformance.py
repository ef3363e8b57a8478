"""Record-store conformance: the behaviour every RecordStore backend must share.

Written against the RecordStore interface only and run once per backend (the
``record_store`` fixture in conftest.py). Times are fixed numbers, never the wall clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from typing import Any

import orjson
import pytest

from tierq.ids import new_id
from tierq.model import (
    SORT_FIELDS,
    Outcome,
    Task,
    TaskFilter,
    TaskState,
    Transition,
)
from tierq.storage.base import RecordStore, StoreDataError

NOW = 1_700_000_000.0
S = TaskState


def make_task(
    *,
    state: TaskState = S.QUEUED,
    priority: int = 5,
    run_at: float | None = None,
    created_at: float = NOW,
    **fields: Any,
) -> Task:
    fields.setdefault("type", "noop")
    fields.setdefault("queue", "default")
    return Task(
        id=new_id(created_at),
        priority=priority,
        payload=b'{"n": 1}',
        state=state,
        run_at=created_at if run_at is None else run_at,
        created_at=created_at,
        updated_at=created_at,
        max_retries=3,
        timeout_s=30.0,
        **fields,
    )


async def insert(store: RecordStore, *tasks: Task) -> list[Task]:
    ids = await store.task_insert_many(list(tasks))
    assert ids == [t.id for t in tasks]
    return list(tasks)


async def get(store: RecordStore, task_id: str) -> Task:
    found = await store.task_get(task_id)
    assert found is not None
    return found


async def start(store: RecordStore, t: Task, attempt: int = 1, owner: str = "w1") -> None:
    tr = Transition(
        t.id, attempt, S.RUNNING, NOW + 1, started_at=NOW + 1, lease_owner=owner, worker="wk"
    )
    assert await store.task_transition_many([tr]) == []


async def all_tasks(store: RecordStore) -> list[Task]:
    out: list[Task] = []
    after: str | None = None
    while True:
        page = await store.task_list(TaskFilter(size=500, descending=False, after_id=after))
        out.extend(page.items)
        if not page.has_more:
            return out
        after = page.items[-1].id


# ---- insert and read -----------------------------------------------------------------------


async def test_insert_get_roundtrip_every_field(record_store: RecordStore) -> None:
    dep = make_task()
    full = make_task(
        state=S.PENDING,
        priority=-7,
        run_at=NOW + 12.5,
        type="http",
        queue="emails",
        name="send",
        description="send the mail ✉",
        idempotency_key="key-1",
        depends_on=(dep.id, "01890000-0000-7000-8000-000000000000"),
        notify=b'{"webhook": "https://example.test/h"}',
        result=b'{"ok": true, "s": "\xc3\xa9"}',
        last_error="boom",
        started_at=NOW + 1.25,
        finished_at=NOW + 2.5,
        lease_owner="node-a",
        attempt=3,
        attempt_base=1,
    )
    full = dataclasses.replace(full, updated_at=NOW + 3.0, payload=b'{"x": [1, 2, "\xe2\x82\xac"]}')
    await insert(record_store, dep, full)
    got = await get(record_store, full.id)
    # payload travels byte for byte; result and notify must be the same JSON (a backend may
    # store them as a JSON type that normalises key order and spacing).
    assert dataclasses.replace(got, result=full.result, notify=full.notify) == full
    assert got.payload == full.payload
    assert got.result is not None and orjson.loads(got.result) == orjson.loads(full.result)
    assert got.notify is not None and orjson.loads(got.notify) == orjson.loads(full.notify)
    assert await record_store.task_get(dep.id) == dep
    assert isinstance(got.state, TaskState)
    assert isinstance(got.payload, bytes)
    assert isinstance(got.depends_on, tuple)


async def test_get_many_skips_unknown_ids(record_store: RecordStore) -> None:
    a, b = await insert(record_store, make_task(), make_task())
    found = await record_store.task_get_many([a.id, new_id(), b.id])
    assert sorted(t.id for t in found) == sorted([a.id, b.id])
    assert await record_store.task_get(new_id()) is None


async def test_idempotency_key_across_batches(record_store: RecordStore) -> None:
    first = make_task(idempotency_key="once")
    await insert(record_store, first)
    again = make_task(idempotency_key="once", type="other")
    other = make_task(idempotency_key="different")
    ids = await record_store.task_insert_many([again, other])
    assert ids == [first.id, other.id]
    assert await record_store.task_get(again.id) is None
    assert (await get(record_store, first.id)).type == "noop"


async def test_idempotency_key_within_one_batch(record_store: RecordStore) -> None:
    a = make_task(idempotency_key="k")
    b = make_task(idempotency_key="k", depends_on=(new_id(),), state=S.PENDING)
    c = make_task()
    assert await record_store.task_insert_many([a, b, c]) == [a.id, a.id, c.id]
    assert await record_store.task_get(b.id) is None
    assert (await record_store.task_counts())[S.QUEUED] == 2
    assert (await record_store.task_counts())[S.PENDING] == 0


async def test_dependencies_are_stored(record_store: RecordStore) -> None:
    d1, d2 = make_task(), make_task()
    child = make_task(state=S.PENDING, depends_on=(d1.id, d2.id))
    await insert(record_store, d1, d2, child)
    assert (await get(record_store, child.id)).depends_on == (d1.id, d2.id)
    # Stored as edges too: finishing both dependencies releases the child.
    for d in (d1, d2):
        await start(record_store, d)
        done = Transition(d.id, 1, S.SUCCEEDED, NOW + 2, outcome=Outcome.SUCCEEDED)
        assert await record_store.task_transition_many([done]) == []
    rel = await record_store.task_release_dependents([d1.id], NOW + 3)
    assert [t.id for t in rel.ready] == [child.id]


# ---- transitions -----------------------------------------------------------------------------


async def test_transition_start_then_finish_writes_execution(record_store: RecordStore) -> None:
    (t,) = await insert(record_store, make_task())
    await start(record_store, t)
    running = await get(record_store, t.id)
    assert (running.state, running.attempt, running.lease_owner) == (S.RUNNING, 1, "w1")
    assert running.started_at == NOW + 1
    execs = await record_store.execution_list(t.id)
    assert [(e.attempt, e.started_at, e.outcome, e.worker) for e in execs] == [
        (1, NOW + 1, None, "wk")
    ]
    done = Transition(
        t.id, 1, S.SUCCEEDED, NOW + 5, finished_at=NOW + 5, result=b'{"r": 1}',
        outcome=Outcome.SUCCEEDED,
    )  # fmt: skip
    assert await record_store.task_transition_many([done]) == []
    final = await get(record_store, t.id)
    assert final.state == S.SUCCEEDED
    assert final.result == b'{"r": 1}'
    assert final.finished_at == NOW + 5
    assert final.updated_at == NOW + 5
    assert final.lease_owner is None
    (e,) = await record_store.execution_list(t.id)
    assert (e.started_at, e.finished_at, e.outcome, e.worker) == (
        NOW + 1, NOW + 5, Outcome.SUCCEEDED, "wk",
    )  # fmt: skip


async def test_transition_coalesced_start_and_finish(record_store: RecordStore) -> None:
    (t,) = await insert(record_store, make_task())
    tr = Transition(
        t.id, 1, S.FAILED, NOW + 3, started_at=NOW + 1, finished_at=NOW + 3,
        error="ValueError: x", outcome=Outcome.FAILED, worker="wk",
    )  # fmt: skip
    assert await record_store.task_transition_many([tr]) == []
    stored = await get(record_store, t.id)
    assert (stored.state, stored.attempt, stored.last_error) == (S.FAILED, 1, "ValueError: x")
    (e,) = await record_store.execution_list(t.id)
    assert e == dataclasses.replace(
        e, attempt=1, started_at=NOW + 1, finished_at=NOW + 3, outcome=Outcome.FAILED
    )
    assert e.error == "ValueError: x"


async def test_transition_stale_attempt_refused(record_store: RecordStore) -> None:
    (t,) = await insert(record_store, make_task())
    await start(record_store, t, attempt=2, owner="new")
    late = Transition(t.id, 1, S.SUCCEEDED, NOW + 9, result=b"1", outcome=Outcome.SUCCEEDED)
    assert await record_store.task_transition_many([late]) == [t.id]
    stored = await get(record_store, t.id)
    assert (stored.state, stored.attempt, stored.lease_owner, stored.result) == (
        S.RUNNING, 2, "new", None,
    )  # fmt: skip
    assert [e.attempt for e in await record_store.execution_list(t.id)] == [2]


async def test_transition_on_terminal_refused(record_store: RecordStore) -> None:
    (t,) = await insert(record_store, make_task())
    await start(record_store, t)
    ok = Transition(t.id, 1, S.SUCCEEDED, NOW + 2, outcome=Outcome.SUCCEEDED)
    assert await record_store.task_transition_many([ok]) == []
    again = Transition(t.id, 2, S.RUNNING, NOW + 3, started_at=NOW + 3, lease_owner="x")
    assert await record_store.task_transition_many([again]) == [t.id]
    stored = await get(record_store, t.id)
    assert (stored.state, stored.attempt) == (S.SUCCEEDED, 1)
    assert len(await record_store.execution_list(t.id)) == 1


async def test_transition_batch_reports_only_refused(record_store: RecordStore) -> None:
    a, b, c = await insert(record_store, make_task(), make_task(), make_task())
    await start(record_store, b, attempt=3)
    batch = [
        Transition(a.id, 1, S.RUNNING, NOW + 2, started_at=NOW + 2, lease_owner="w"),
        Transition(b.id, 1, S.RUNNING, NOW + 2, started_at=NOW + 2, lease_owner="w"),
        Transition(c.id, 1, S.RUNNING, NOW + 2, started_at=NOW + 2, lease_owner="w"),
    ]
    assert await record_store.task_transition_many(batch) == [b.id]
    assert (await get(record_store, a.id)).state == S.RUNNING
    assert (await get(record_store, c.id)).state == S.RUNNING
    assert [e.attempt for e in await record_store.execution_list(b.id)] == [3]


async def test_transition_same_task_twice_in_one_batch(record_store: RecordStore) -> None:
    (t,) = await insert(record_store, make_task())
    batch = [
        Transition(t.id, 1, S.RUNNING, NOW + 1, started_at=NOW + 1, lease_owner="w"),
        Transition(t.id, 1, S.SUCCEEDED, NOW + 2, finished_at=NOW + 2, outcome=Outcome.SUCCEEDED),
        Transition(t.id, 1, S.FAILED, NOW + 3, outcome=Outcome.FAILED),
    ]
    assert await record_store.task_transition_many(batch) == [t.id]
    stored = await get(record_store, t.id)
    assert stored.state == S.SUCCEEDED
    # Applied in order: what the second report leaves NULL keeps the first one's value,
    # except the lease, which each report writes as given.
    assert (stored.started_at, stored.finished_at, stored.lease_owner) == (NOW + 1, NOW + 2, None)
    (e,) = await record_store.execution_list(t.id)
    assert (e.outcome, e.started_at, e.finished_at) == (Outcome.SUCCEEDED, NOW + 1, NOW + 2)


async def test_transition_none_fields_keep_stored_values(record_store: RecordStore) -> None:
    (t,) = await insert(record_store, make_task(last_error="earlier", run_at=NOW + 1))
    await start(record_store, t)
    back = Transition(t.id, 1, S.SCHEDULED, NOW + 4, run_at=NOW + 60, error="try again")
    assert await record_store.task_transition_many([back]) == []
    s1 = await get(record_store, t.id)
    assert (s1.state, s1.run_at, s1.last_error, s1.started_at) == (
        S.SCHEDULED, NOW + 60, "try again", NOW + 1,
    )  # fmt: skip
    assert s1.lease_owner is None  # lease_owner is written as given
    keep = Transition(t.id, 1, S.QUEUED, NOW + 5, lease_owner="w9")
    assert await record_store.task_transition_many([keep]) == []
    s2 = await get(record_store, t.id)
    assert (s2.run_at, s2.last_error, s2.lease_owner) == (NOW + 60, "try again", "w9")


# ---- cancel and retry ------------------------------------------------------------------------


async def test_cancel_only_from_waiting_states(record_store: RecordStore) -> None:
    by_state = {s: make_task(state=s) for s in TaskState}
    await insert(record_store, *by_state.values())
    cancelled = await record_store.task_cancel_many([t.id for t in by_state.values()], NOW + 1)
    expect = {by_state[s].id for s in (S.PENDING, S.SCHEDULED, S.QUEUED)}
    assert set(cancelled) == expect
    for s, t in by_state.items():
        stored = await get(record_store, t.id)
        assert stored.state == (S.CANCELLED if t.id in expect else s)
    assert (await get(record_store, by_state[S.QUEUED].id)).finished_at == NOW + 1


async def test_retry_only_from_failed_or_cancelled(record_store: RecordStore) -> None:
    by_state = {
        s: make_task(state=s, attempt=4, attempt_base=0, last_error="e", lease_owner=None)
        for s in TaskState
    }
    await insert(record_store, *by_state.values())
    changed = await record_store.task_retry_many([t.id for t in by_state.values()], NOW + 7)
    assert set(changed) == {by_state[S.FAILED].id, by_state[S.CANCELLED].id}
    for s in (S.FAILED, S.CANCELLED):
        t = await get(record_store, by_state[s].id)
        assert (t.state, t.run_at, t.attempt, t.attempt_base) == (S.QUEUED, NOW + 7, 4, 4)
        assert (t.last_error, t.lease_owner, t.attempts_left) == ("e", None, 4)
    assert (await get(record_store, by_state[S.SUCCEEDED].id)).state == S.SUCCEEDED


# ---- claim, release, recover ----------------------------------------------------------------


async def test_claim_run_order(record_store: RecordStore) -> None:
    low = make_task(priority=0, run_at=NOW - 50)
    high_late = make_task(priority=10, run_at=NOW - 1)
    high_early = make_task(priority=10, run_at=NOW - 2)
    mid_a = make_task(priority=5, run_at=NOW - 5)
    mid_b = make_task(priority=5, run_at=NOW - 5)
    await insert(record_store, low, high_late, high_early, mid_b, mid_a)
    first = await record_store.task_claim("w", 3, NOW)
    assert [t.id for t in first] == [high_early.id, high_late.id, mid_a.id]
    assert all(t.lease_owner == "w" for t in first)
    rest = await record_store.task_claim("w", 10, NOW)
    assert [t.id for t in rest] == [mid_b.id, low.id]


async def test_claim_skips_leased_not_due_and_other_states(record_store: RecordStore) -> None:
    due = make_task()
    leased = make_task(lease_owner="other")
    # Not due: a scheduled task later than now + horizon. (A queued task is due by
    # definition; whether its run_at is re-checked at claim time is left to the backend.)
    future = make_task(state=S.SCHEDULED, run_at=NOW + 100)
    pending = make_task(state=S.PENDING)
    running = make_task(state=S.RUNNING)
    await insert(record_store, due, leased, future, pending, running)
    claimed = await record_store.task_claim("me", 10, NOW)
    assert [t.id for t in claimed] == [due.id]
    assert await record_store.task_claim("me", 10, NOW) == []
    assert (await get(record_store, leased.id)).lease_owner == "other"


async def test_claim_horizon_and_due_scheduled_become_queued(record_store: RecordStore) -> None:
    due = make_task(state=S.SCHEDULED, run_at=NOW - 1)
    soon = make_task(state=S.SCHEDULED, run_at=NOW + 5)
    later = make_task(state=S.SCHEDULED, run_at=NOW + 50)
    await insert(record_store, due, soon, later)
    claimed = {t.id: t for t in await record_store.task_claim("me", 10, NOW, horizon=10.0)}
    assert set(claimed) == {due.id, soon.id}
    assert claimed[due.id].state == S.QUEUED
    assert claimed[soon.id].state == S.SCHEDULED
    assert (await get(record_store, due.id)).state == S.QUEUED
    stored_soon = await get(record_store, soon.id)
    assert (stored_soon.state, stored_soon.lease_owner) == (S.SCHEDULED, "me")
    counts = await record_store.task_counts()
    assert (counts[S.QUEUED], counts[S.SCHEDULED]) == (1, 2)
    assert await record_store.task_claim("me", 10, NOW, horizon=0.0) == []


async def test_claim_limit(record_store: RecordStore) -> None:
    await insert(record_store, *[make_task() for _ in range(7)])
    assert len(await record_store.task_claim("a", 4, NOW)) == 4
    assert len(await record_store.task_claim("b", 4, NOW)) == 3
    assert await record_store.task_claim("c", 0, NOW) == []


async def test_release(record_store: RecordStore) -> None:
    a, b, c = await insert(record_store, make_task(), make_task(), make_task())
    assert len(await record_store.task_claim("w", 10, NOW)) == 3
    await start(record_store, c, owner="w")
    assert await record_store.task_release("w", [a.id]) == 1
    assert (await get(record_store, a.id)).lease_owner is None
    assert (await get(record_store, b.id)).lease_owner == "w"
    assert await record_store.task_release("w") == 1  # b; c is running and keeps it
    assert (await get(record_store, b.id)).lease_owner is None
    assert (await get(record_store, c.id)).lease_owner == "w"
    assert [t.id for t in await record_store.task_claim("x", 10, NOW)] == [a.id, b.id]


async def test_recover_requeues_running_and_abandons_executions(record_store: RecordStore) -> None:
    r1, r2, q, other = await insert(record_store, *[make_task() for _ in range(4)])
    await start(record_store, r1, attempt=1, owner="dead")
    await start(record_store, r2, attempt=2, owner="dead")
    await start(record_store, other, attempt=1, owner="alive")
    assert len(await record_store.task_claim("dead", 10, NOW)) == 1  # q
    report = await record_store.task_recover(NOW + 30, ["dead"])
    assert (report.requeued_running, report.released_leases) == (2, 1)
    for t, attempt in ((r1, 1), (r2, 2)):
        s = await get(record_store, t.id)
        assert (s.state, s.attempt, s.lease_owner) == (S.QUEUED, attempt, None)
        (e,) = await record_store.execution_list(t.id)
        assert (e.outcome, e.finished_at) == (Outcome.ABANDONED, NOW + 30)
    assert (await get(record_store, q.id)).lease_owner is None
    assert (await get(record_store, other.id)).state == S.RUNNING
    (e,) = await record_store.execution_list(other.id)
    assert e.outcome is None
    everyone = await record_store.task_recover(NOW + 40)
    assert everyone.requeued_running == 1
    assert (await record_store.task_counts())[S.RUNNING] == 0


# ---- dependencies ----------------------------------------------------------------------------


async def _finish(store: RecordStore, t: Task, state: TaskState) -> None:
    outcome = {S.SUCCEEDED: Outcome.SUCCEEDED, S.FAILED: Outcome.FAILED}.get(state)
    if state == S.CANCELLED:
        assert await store.task_cancel_many([t.id], NOW + 2) == [t.id]
        return
    tr = Transition(t.id, 1, state, NOW + 2, started_at=NOW + 1, outcome=outcome)
    assert await store.task_transition_many([tr]) == []


async def test_release_dependents_ready(record_store: RecordStore) -> None:
    d1, d2 = make_task(), make_task()
    now_child = make_task(state=S.PENDING, depends_on=(d1.id,))
    late_child = make_task(state=S.PENDING, depends_on=(d1.id,), run_at=NOW + 1000)
    both = make_task(state=S.PENDING, depends_on=(d1.id, d2.id))
    await insert(record_store, d1, d2, now_child, late_child, both)
    await _finish(record_store, d1, S.SUCCEEDED)
    rel = await record_store.task_release_dependents([d1.id], NOW + 3)
    ready = {t.id: t for t in rel.ready}
    assert set(ready) == {now_child.id, late_child.id}
    assert ready[now_child.id].state == S.QUEUED
    assert ready[late_child.id].state == S.SCHEDULED
    assert ready[now_child.id].payload == now_child.payload
    assert rel.cancelled == []
    assert (await get(record_store, both.id)).state == S.PENDING
    await _finish(record_store, d2, S.SUCCEEDED)
    rel2 = await record_store.task_release_dependents([d2.id], NOW + 4)
    assert [t.id for t in rel2.ready] == [both.id]
    assert (await get(record_store, both.id)).state == S.QUEUED


@pytest.mark.parametrize("dep_state", [S.FAILED, S.CANCELLED])
async def test_release_dependents_cancelled(record_store: RecordStore, dep_state: S) -> None:
    ok, bad = make_task(), make_task()
    child = make_task(state=S.PENDING, depends_on=(ok.id, bad.id))
    await insert(record_store, ok, bad, child)
    await _finish(record_store, ok, S.SUCCEEDED)
    await _finish(record_store, bad, dep_state)
    rel = await record_store.task_release_dependents([bad.id], NOW + 5)
    assert rel.ready == []
    assert rel.cancelled == [child.id]
    stored = await get(record_store, child.id)
    assert stored.state == S.CANCELLED
    assert stored.last_error is not None and bad.id in stored.last_error
    again = await record_store.task_release_dependents([bad.id, ok.id], NOW + 6)
    assert (again.ready, again.cancelled) == ([], [])


# ---- lists and counts ------------------------------------------------------------------------


async def _sample(store: RecordStore) -> list[Task]:
    tasks = []
    for i in range(23):
        tasks.append(
            make_task(
                state=[S.QUEUED, S.SUCCEEDED, S.FAILED, S.SCHEDULED][i % 4],
                priority=i % 3,
                type=["a", "b"][i % 2],
                queue=["q1", "q2", "q3"][i % 3],
                created_at=NOW + i,
                run_at=NOW + (i * 7) % 11,
            )
        )
    tasks = [dataclasses.replace(t, updated_at=NOW + (i * 5) % 13) for i, t in enumerate(tasks)]
    return await insert(store, *tasks)


async def test_list_filters(record_store: RecordStore) -> None:
    tasks = await _sample(record_store)
    cases = [
        (TaskFilter(states=(S.QUEUED,)), lambda t: t.state == S.QUEUED),
        (TaskFilter(states=(S.QUEUED, S.FAILED)), lambda t: t.state in (S.QUEUED, S.FAILED)),
        (TaskFilter(type="a"), lambda t: t.type == "a"),
        (TaskFilter(queue="q2", priority=1), lambda t: t.queue == "q2" and t.priority == 1),
        (
            TaskFilter(states=(S.SUCCEEDED,), type="b"),
            lambda t: t.state == S.SUCCEEDED and t.type == "b",
        ),
    ]
    for flt, pred in cases:
        page = await record_store.task_list(dataclasses.replace(flt, size=100))
        want = sorted((t.id for t in tasks if pred(t)), reverse=True)
        assert [t.id for t in page.items] == want, flt
        assert not page.has_more


@pytest.mark.parametrize("field", SORT_FIELDS)
@pytest.mark.parametrize("descending", [True, False])
async def test_list_sort(record_store: RecordStore, field: str, descending: bool) -> None:
    tasks = await _sample(record_store)
    page = await record_store.task_list(
        TaskFilter(sort_field=field, descending=descending, size=100)
    )
    want = sorted(tasks, key=lambda t: (getattr(t, field), t.id), reverse=descending)
    assert [t.id for t in page.items] == [t.id for t in want]


async def test_list_offset_paging(record_store: RecordStore) -> None:
    tasks = await _sample(record_store)
    seen: list[str] = []
    for page_no in range(5):
        page = await record_store.task_list(TaskFilter(sort_field="priority", page=page_no, size=5))
        seen.extend(t.id for t in page.items)
        assert page.has_more == (page_no < 4)
    want = sorted(tasks, key=lambda t: (t.priority, t.id), reverse=True)
    assert seen == [t.id for t in want]
    empty = await record_store.task_list(TaskFilter(page=9, size=5))
    assert (empty.items, empty.has_more) == ([], False)


@pytest.mark.parametrize("descending", [True, False])
async def test_list_keyset_paging(record_store: RecordStore, descending: bool) -> None:
    tasks = await _sample(record_store)
    flt = TaskFilter(states=(S.QUEUED, S.SUCCEEDED, S.FAILED), descending=descending, size=4)
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        # after_id overrides page
        page_no = 0 if after is None else 3
        page = await record_store.task_list(dataclasses.replace(flt, after_id=after, page=page_no))
        pages += 1
        seen.extend(t.id for t in page.items)
        if not page.has_more:
            break
        after = page.items[-1].id
    want = sorted((t.id for t in tasks if t.state != S.SCHEDULED), reverse=descending)
    assert seen == want
    assert pages == 5  # 18 rows in pages of 4


async def test_list_exact_page_has_no_more(record_store: RecordStore) -> None:
    await insert(record_store, *[make_task() for _ in range(4)])
    page = await record_store.task_list(TaskFilter(size=4))
    assert (len(page.items), page.has_more) == (4, False)
    page = await record_store.task_list(TaskFilter(size=3))
    assert (len(page.items), page.has_more) == (3, True)


async def test_counts_empty_store_has_every_state(record_store: RecordStore) -> None:
    assert await record_store.task_counts() == {s: 0 for s in TaskState}


async def test_counts_follow_inserts_and_transitions(record_store: RecordStore) -> None:
    tasks = await _sample(record_store)
    queued = [t for t in tasks if t.state == S.QUEUED]
    await start(record_store, queued[0])
    await start(record_store, queued[1])
    done = Transition(queued[1].id, 1, S.SUCCEEDED, NOW + 9, outcome=Outcome.SUCCEEDED)
    await record_store.task_transition_many([done])
    await record_store.task_cancel_many([queued[2].id], NOW + 9)
    await record_store.task_retry_many([t.id for t in tasks if t.state == S.FAILED][:2], NOW + 9)
    await record_store.task_claim("w", 100, NOW + 20, horizon=0.0)
    await record_store.task_recover(NOW + 30)
    brute = Counter(t.state for t in await all_tasks(record_store))
    assert await record_store.task_counts() == {s: brute.get(s, 0) for s in TaskState}
    assert sum((await record_store.task_counts()).values()) == len(tasks)


async def test_execution_list_oldest_first(record_store: RecordStore) -> None:
    (t,) = await insert(record_store, make_task())
    for attempt in (1, 2, 3):
        start_tr = Transition(
            t.id, attempt, S.RUNNING, NOW + attempt, started_at=NOW + attempt, lease_owner="w"
        )
        end_state, outcome = (
            (S.SCHEDULED, Outcome.TIMED_OUT) if attempt < 3 else (S.SUCCEEDED, Outcome.SUCCEEDED)
        )
        end = Transition(
            t.id, attempt, end_state, NOW + attempt + 0.5, finished_at=NOW + attempt + 0.5,
            outcome=outcome, run_at=NOW + attempt + 0.6,
        )  # fmt: skip
        assert await record_store.task_transition_many([start_tr, end]) == []
    execs = await record_store.execution_list(t.id)
    assert [(e.attempt, e.outcome) for e in execs] == [
        (1, Outcome.TIMED_OUT), (2, Outcome.TIMED_OUT), (3, Outcome.SUCCEEDED),
    ]  # fmt: skip
    assert await record_store.execution_list(new_id()) == []


# ---- lifecycle and volume --------------------------------------------------------------------


async def test_migrate_is_idempotent(record_store: RecordStore) -> None:
    (t,) = await insert(record_store, make_task())
    assert await record_store.migrate() == []
    assert await record_store.migrate() == []
    assert await record_store.task_get(t.id) == t
    await record_store.open()  # idempotent too
    await record_store.ping()


async def test_concurrent_writers_all_land(record_store: RecordStore) -> None:
    batches = [[make_task() for _ in range(10)] for _ in range(40)]
    results = await asyncio.gather(*(record_store.task_insert_many(b) for b in batches))
    assert results == [[t.id for t in b] for b in batches]
    assert (await record_store.task_counts())[S.QUEUED] == 400


async def test_batch_of_5000(record_store: RecordStore) -> None:
    tasks = [make_task(priority=i % 10) for i in range(5000)]
    assert await record_store.task_insert_many(tasks) == [t.id for t in tasks]
    claimed = await record_store.task_claim("w", 5000, NOW)
    assert len(claimed) == 5000
    assert [t.sort_key for t in claimed] == sorted(t.sort_key for t in claimed)
    starts = [
        Transition(t.id, 1, S.RUNNING, NOW + 1, started_at=NOW + 1, lease_owner="w") for t in tasks
    ]
    assert await record_store.task_transition_many(starts) == []
    ends = [
        Transition(t.id, 1, S.SUCCEEDED, NOW + 2, finished_at=NOW + 2, outcome=Outcome.SUCCEEDED)
        for t in tasks
    ]
    stale = [Transition(tasks[0].id, 0, S.FAILED, NOW + 2)]
    assert await record_store.task_transition_many(ends + stale) == [tasks[0].id]
    counts = await record_store.task_counts()
    assert (counts[S.SUCCEEDED], counts[S.QUEUED], counts[S.RUNNING]) == (5000, 0, 0)
    e = await record_store.execution_list(tasks[4321].id)
    assert [(x.attempt, x.outcome) for x in e] == [(1, Outcome.SUCCEEDED)]


# ---- SQLite backend specifics (not part of the shared contract) ------------------------------


async def test_sqlite_second_process_is_refused(tmp_path: Any) -> None:
    from tierq.storage.sqlite.store import DatabaseLocked, SQLiteRecordStore

    path = str(tmp_path / "one.db")
    first = SQLiteRecordStore(path)
    await first.open()
    (t,) = await insert(first, make_task())
    with pytest.raises(DatabaseLocked, match=r"one\.db\.lock"):
        await SQLiteRecordStore(path).open()
    await first.close()
    second = SQLiteRecordStore(path, synchronous="normal")
    await second.open()
    try:
        assert await second.task_get(t.id) == t
        assert await second.migrate() == []
    finally:
        await second.close()
    with pytest.raises(ValueError):
        SQLiteRecordStore(path, synchronous="sometimes")


async def test_sqlite_failing_write_fails_alone_and_close_drains(tmp_path: Any) -> None:
    import sqlite3

    from tierq.storage.sqlite.store import SQLiteRecordStore

    path = str(tmp_path / "g.db")
    store = SQLiteRecordStore(path)
    await store.open()
    bad = dataclasses.replace(make_task(), type=None)  # NOT NULL violation
    good = [[make_task()] for _ in range(20)]
    results = await asyncio.gather(
        *(store.task_insert_many(b) for b in good[:10]),
        store.task_insert_many([bad]),
        *(store.task_insert_many(b) for b in good[10:]),
        return_exceptions=True,
    )
    # Refused data surfaces at the seam as StoreDataError, with the database's error as cause.
    assert isinstance(results[10], StoreDataError)
    assert isinstance(results[10].__cause__, sqlite3.IntegrityError)
    assert [r for i, r in enumerate(results) if i != 10] == [[b[0].id] for b in good]
    # Writes queued but not yet run when close() starts are still committed.
    late = [make_task() for _ in range(50)]
    pending = [asyncio.ensure_future(store.task_insert_many([t])) for t in late]
    await asyncio.sleep(0)
    await store.close()
    await asyncio.gather(*pending)
    await store.open()
    try:
        assert (await store.task_counts())[S.QUEUED] == 70
    finally:
        await store.close()


async def _assert_counts_exact(store: RecordStore) -> None:
    brute = Counter(t.state for t in await all_tasks(store))
    assert await store.task_counts() == {s: brute.get(s, 0) for s in TaskState}


async def test_counts_exact_across_every_write_path(record_store: RecordStore) -> None:
    st = record_store
    ok_dep, bad_dep = make_task(), make_task()
    ready_child = make_task(state=S.PENDING, depends_on=(ok_dep.id,))
    late_child = make_task(state=S.PENDING, depends_on=(ok_dep.id,), run_at=NOW + 500)
    doomed_child = make_task(state=S.PENDING, depends_on=(bad_dep.id,))
    keyed = make_task(idempotency_key="k1")
    due_later = make_task(state=S.SCHEDULED, run_at=NOW + 5)
    far = make_task(state=S.SCHEDULED, run_at=NOW + 10_000)
    leased = make_task(lease_owner="dead")
    waiting = [make_task() for _ in range(6)]
    await insert(
        st, ok_dep, bad_dep, ready_child, late_child, doomed_child, keyed, due_later, far, leased
    )
    # A duplicate key, in the same batch and across batches, is neither stored nor counted.
    dup1, dup2 = make_task(idempotency_key="k1"), make_task(idempotency_key="k2")
    dup3 = make_task(idempotency_key="k2", state=S.SCHEDULED)
    ids = await st.task_insert_many([*waiting, dup1, dup2, dup3])
    assert ids == [*(t.id for t in waiting), keyed.id, dup2.id, dup2.id]
    await _assert_counts_exact(st)
    # claim promotes due scheduled tasks (due_later) and leases queued ones.
    claimed = await st.task_claim("w", 100, NOW + 6)
    assert due_later.id in {t.id for t in claimed}
    await _assert_counts_exact(st)
    # Transitions: a repeated id in one batch, a stale attempt, a terminal task, an unknown id.
    a, b, c = waiting[0], waiting[1], waiting[2]
    batch = [
        Transition(a.id, 1, S.RUNNING, NOW + 7, started_at=NOW + 7, lease_owner="w"),
        Transition(a.id, 1, S.SUCCEEDED, NOW + 8, outcome=Outcome.SUCCEEDED),
        Transition(a.id, 1, S.FAILED, NOW + 9, outcome=Outcome.FAILED),  # a is terminal now
        Transition(b.id, 2, S.RUNNING, NOW + 7, started_at=NOW + 7, lease_owner="dead"),
        Transition(b.id, 1, S.SUCCEEDED, NOW + 8, outcome=Outcome.SUCCEEDED),  # stale
        Transition(c.id, 1, S.RUNNING, NOW + 7, started_at=NOW + 7, lease_owner="w"),
        Transition(c.id, 1, S.FAILED, NOW + 8, outcome=Outcome.FAILED),
        Transition("01890000-0000-7000-8000-00000000dead", 1, S.QUEUED, NOW + 8),
        Transition(ok_dep.id, 1, S.SUCCEEDED, NOW + 8, outcome=Outcome.SUCCEEDED),
        Transition(bad_dep.id, 1, S.FAILED, NOW + 8, outcome=Outcome.FAILED),
    ]
    refused = await st.task_transition_many(batch)
    assert sorted(refused) == sorted([a.id, b.id, "01890000-0000-7000-8000-00000000dead"])
    assert (await get(st, a.id)).state == S.SUCCEEDED
    await _assert_counts_exact(st)
    rel = await st.task_release_dependents([ok_dep.id, bad_dep.id], NOW + 9)
    assert {t.id for t in rel.ready} == {ready_child.id, late_child.id}
    assert rel.cancelled == [doomed_child.id]
    await _assert_counts_exact(st)
    cancelled = await st.task_cancel_many([waiting[3].id, far.id, a.id, b.id], NOW + 10)
    assert sorted(cancelled) == sorted([waiting[3].id, far.id])
    await _assert_counts_exact(st)
    retried = await st.task_retry_many([c.id, far.id, bad_dep.id, waiting[4].id], NOW + 11)
    assert sorted(retried) == sorted([c.id, far.id, bad_dep.id])
    await _assert_counts_exact(st)
    assert await st.task_release("w", [waiting[5].id]) == 1
    report = await st.task_recover(NOW + 12, ["dead"])
    assert report.requeued_running == 1  # b
    await _assert_counts_exact(st)
    await st.task_recover(NOW + 13)
    await _assert_counts_exact(st)
    assert sum((await st.task_counts()).values()) == 16  # 9 + 6 + dup2


async def test_sqlite_database_from_migration_1_upgrades(tmp_path: Any) -> None:
    import sqlite3

    from tierq.storage.sqlite import rows
    from tierq.storage.sqlite.batches import execute_rows
    from tierq.storage.sqlite.sqlfiles import load, migrations, statements
    from tierq.storage.sqlite.store import SQLiteRecordStore

    path = str(tmp_path / "v1.db")
    old = [make_task(), make_task(state=S.SCHEDULED), make_task(lease_owner="n")]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(load("schema_migrations"))
    first = migrations()[0]
    assert first.version == 1
    for stmt in statements(first.sql):
        conn.execute(stmt)
    conn.execute(load("migration_record"), (1, NOW))
    # Rows as version 1 had them: its tasks table ends before the schedule columns (004),
    # the tenant (006), the breaker (007), the request id (008) and the traceparent (010).
    v1_insert = load("task_insert").replace(
        ",\n    schedule_id, scheduled_for, tenant, breaker, request_id, traceparent", ""
    )
    assert "schedule_id" not in v1_insert and "tenant" not in v1_insert
    assert "breaker" not in v1_insert and "request_id" not in v1_insert
    assert "traceparent" not in v1_insert
    params = [rows.task_params(t)[:23] for t in old]
    execute_rows(conn, v1_insert, 23, params)
    conn.close()
    store = SQLiteRecordStore(path)
    await store.open()
    try:
        assert await store.migrate() == []  # open() applied the rest already
        await _assert_counts_exact(store)
        (t,) = await insert(store, make_task())
        await start(store, t)
        assert await store.task_release("n") == 1
        await _assert_counts_exact(store)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert not names & {"tasks_count_insert", "tasks_count_update", "tasks_lease_owner"}
    assert "tasks_delete" in names


# ---- values PostgreSQL cannot store as given ---------------------------------------------


async def test_nul_in_error_and_result_is_stored(record_store: RecordStore) -> None:
    # Handler output may hold NUL (decoded bytes, shell output): PostgreSQL refuses it in text
    # and jsonb, so the store must write something in its place rather than fail the batch.
    a, b = await insert(record_store, make_task(), make_task())
    failed = Transition(
        a.id, 1, S.FAILED, NOW + 2, started_at=NOW + 1, finished_at=NOW + 2,
        error="boom\x00tail", outcome=Outcome.FAILED,
    )  # fmt: skip
    done = Transition(
        b.id, 1, S.SUCCEEDED, NOW + 2, started_at=NOW + 1, finished_at=NOW + 2,
        result=orjson.dumps({"out": "x\x00y", "raw": "\\u0000"}), outcome=Outcome.SUCCEEDED,
    )  # fmt: skip
    assert await record_store.task_transition_many([failed, done]) == []
    got_a = await get(record_store, a.id)
    assert got_a.state == S.FAILED
    assert got_a.last_error is not None and got_a.last_error.startswith("boom")
    assert got_a.last_error.endswith("tail")
    (ex,) = await record_store.execution_list(a.id)
    assert ex.error is not None and ex.error.startswith("boom") and ex.error.endswith("tail")
    got_b = await get(record_store, b.id)
    assert got_b.state == S.SUCCEEDED
    assert got_b.result is not None
    result = orjson.loads(got_b.result)
    assert result["out"] in ("x\x00y", "x\ufffdy")
    # An escaped backslash followed by "u0000" is text, not a NUL: it must stay as it was.
    assert result["raw"] == "\\u0000"


async def test_nul_in_submitted_text_fields_is_stored(record_store: RecordStore) -> None:
    t = make_task(name="n\x00", description="d\x00")
    t = dataclasses.replace(t, payload=b'{"p": "\\u0000"}')
    (stored,) = await record_store.task_insert_many([t])
    assert stored == t.id
    got = await get(record_store, t.id)
    assert got.name in ("n\x00", "n\ufffd")
    assert got.description in ("d\x00", "d\ufffd")
    assert orjson.loads(got.payload) == {"p": "\x00"}


async def test_idempotency_key_with_nul_keeps_its_first_task(record_store: RecordStore) -> None:
    # Stored with NUL replaced (both stores); the lookup that deduplicates must use the key
    # as stored, in a later batch and within one batch alike.
    first = make_task(idempotency_key="k\x00a")
    (kept,) = await record_store.task_insert_many([first])
    again, twin = make_task(idempotency_key="k\x00a"), make_task(idempotency_key="k\x00b")
    twin_again = make_task(idempotency_key="k\x00b")
    stored = await record_store.task_insert_many([again, twin, twin_again])
    assert stored == [kept, twin.id, twin.id]
    assert (await record_store.task_counts())[S.QUEUED] == 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (TaskFilter(size=0), "size"),
        (TaskFilter(page=-1), "page"),
        (TaskFilter(sort_field="payload"), "sort"),
        (TaskFilter(sort_field="priority", after_id=new_id(NOW)), "after_id"),
    ],
)
async def test_list_filters_are_checked_alike_by_every_backend(
    record_store: RecordStore, bad: TaskFilter, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await record_store.task_list(bad)


async def test_scan_yields_every_task_of_the_states_oldest_first_in_pages(
    record_store: RecordStore,
) -> None:
    tasks = [make_task(created_at=NOW + i) for i in range(7)]
    tasks += [make_task(created_at=NOW + 10, state=S.SCHEDULED, run_at=NOW + 100)]
    await insert(record_store, *tasks)
    pages = [p async for p in record_store.task_scan((S.QUEUED,), page_size=3)]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [t.id for p in pages for t in p] == [t.id for t in tasks[:7]]
    assert [p async for p in record_store.task_scan((S.FAILED,))] == []


async def test_search_by_name_prefix_and_payload_fields(record_store: RecordStore) -> None:
    def made(name: str | None, payload: dict[str, Any]) -> Task:
        return dataclasses.replace(make_task(name=name), payload=orjson.dumps(payload))

    rows = [
        made("invoice-1", {"customer": {"id": 42}, "vip": True}),
        made("invoice-2", {"customer": {"id": 7}, "vip": False}),
        made("refund-1", {"customer": {"id": 42}, "note": "x y"}),
        made(None, {"customer": "42"}),
    ]
    await insert(record_store, *rows)

    async def names(**search: Any) -> list[str | None]:
        page = await record_store.task_list(TaskFilter(descending=False, **search))
        return [t.name for t in page.items]

    assert await names(name_prefix="invoice-") == ["invoice-1", "invoice-2"]
    assert await names(payload=((("customer", "id"), 42),)) == ["invoice-1", "refund-1"]
    assert await names(payload=((("customer",), "42"),)) == [None]  # a string, not a number
    assert await names(payload=((("vip",), True),)) == ["invoice-1"]
    assert await names(payload=((("note",), "x y"),), name_prefix="ref") == ["refund-1"]
    # The newest N only: the oldest tasks are not looked at.
    assert await names(name_prefix="invoice-", search_cap=3) == ["invoice-2"]
    with pytest.raises(ValueError):
        await record_store.task_list(TaskFilter(payload=((("a'; DROP",), 1),)))


async def test_the_tasks_that_depend_on_one(record_store: RecordStore) -> None:
    parent, other = make_task(), make_task()
    kids = [make_task(state=S.PENDING, depends_on=(parent.id,)) for _ in range(2)]
    both = make_task(state=S.PENDING, depends_on=(parent.id, other.id))
    await insert(record_store, parent, other, *kids, both)
    page = await record_store.task_list(TaskFilter(dependent_of=parent.id, descending=False))
    assert [t.id for t in page.items] == [k.id for k in kids] + [both.id]
    page = await record_store.task_list(TaskFilter(dependent_of=other.id))
    assert [t.id for t in page.items] == [both.id]
