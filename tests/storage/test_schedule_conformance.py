"""One suite for both schedule stores (SQLite file, PostgreSQL schema): definitions, edits
by version, and the fire: one transaction, compare-and-set on (version, last tick), so a
stale fire inserts nothing."""

from __future__ import annotations

import pytest

from tests.storage.test_record_conformance import make_task
from tierq.ids import new_id
from tierq.model import (
    Schedule,
    ScheduleFilter,
    ScheduleFire,
    ScheduleSkip,
    SkipReason,
    Task,
    TaskFilter,
    TaskState,
)
from tierq.storage.base import RecordStore
from tierq.storage.factory import make_schedule_store
from tierq.storage.schedules import ScheduleNameTaken, ScheduleStore

NOW = 1_800_000_000.0
SPEC = (
    b'{"name":"s","task":{"type":"noop"},"anchor":1800000000.0,"every_seconds":60,'
    b'"pause_after_failures":2}'
)


def schedule(name: str = "nightly", **changes: object) -> Schedule:
    values: dict[str, object] = dict(
        id=new_id(NOW),
        name=name,
        spec=SPEC,
        paused=False,
        version=1,
        created_at=NOW,
        updated_at=NOW,
        next_fire_at=NOW + 60,
    )
    values.update(changes)
    return Schedule(**values)  # type: ignore[arg-type]


def tick_task(s: Schedule, tick: float) -> Task:
    return make_task(
        idempotency_key=f"tierq:schedule:{s.id}:tick:{tick:.6f}",
        schedule_id=s.id,
        scheduled_for=tick,
        created_at=NOW,
    )


async def created(record_store: RecordStore, *rows: Schedule) -> ScheduleStore:
    store = make_schedule_store(record_store)
    for row in rows:
        await store.create(row)
    return store


async def test_create_get_page_and_unique_names(record_store: RecordStore) -> None:
    a, b = schedule("a"), schedule("b", paused=True)
    store = await created(record_store, a, b)
    assert await store.get(a.id) == a
    assert await store.get(new_id(NOW)) is None
    with pytest.raises(ScheduleNameTaken):
        await store.create(schedule("a"))
    page, more = await store.page(ScheduleFilter(size=1))
    assert [s.id for s in page] == [a.id] and more
    page, more = await store.page(ScheduleFilter(after_id=a.id))
    assert [s.id for s in page] == [b.id] and not more
    assert [s.id for s in (await store.page(ScheduleFilter(paused=True)))[0]] == [b.id]
    assert [s.id for s in (await store.page(ScheduleFilter(name_prefix="b")))[0]] == [b.id]
    assert {s.id for s in await store.load()} == {a.id, b.id}
    assert [s.id for s in await store.load([b.id, new_id(NOW)])] == [b.id]


async def test_update_applies_only_to_the_version_read(record_store: RecordStore) -> None:
    a = schedule()
    store = await created(record_store, a, schedule("other"))
    updated = await store.update(a.id, 1, name="renamed", spec=SPEC, paused=True, now=NOW + 5)
    assert updated is not None
    assert (updated.name, updated.paused, updated.version, updated.updated_at) == (
        "renamed",
        True,
        2,
        NOW + 5,
    )
    assert await store.update(a.id, 1, name="x", spec=SPEC, paused=False, now=NOW) is None
    with pytest.raises(ScheduleNameTaken):
        await store.update(a.id, 2, name="other", spec=SPEC, paused=False, now=NOW)
    assert [s.id for s in await store.changed_since(NOW + 1)] == [a.id]
    assert await store.delete(a.id) and not await store.delete(a.id)
    assert await store.get(a.id) is None


async def test_fire_advances_inserts_and_refuses_a_stale_fire(record_store: RecordStore) -> None:
    a = schedule()
    store = await created(record_store, a)
    t1 = tick_task(a, NOW + 60)
    skip = ScheduleSkip(a.id, NOW, NOW + 61, SkipReason.OVERLAP)
    fire = ScheduleFire(a.id, 1, None, NOW + 60, NOW + 120, [t1], [skip])
    applied, stored = await store.fire([fire], NOW + 61)
    assert applied == [True] and stored == [t1.id]
    row = await store.get(a.id)
    assert row is not None
    assert (row.last_tick, row.runs, row.last_task_id, row.next_fire_at, row.version) == (
        NOW + 60,
        1,
        t1.id,
        NOW + 120,
        1,
    )
    assert row.updated_at == NOW  # a fire is not an edit
    # A second leader planned from the same state: refused, its task not inserted.
    t2 = tick_task(a, NOW + 60)
    stale = ScheduleFire(a.id, 1, None, NOW + 60, NOW + 120, [t2])
    assert await store.fire([stale], NOW + 62) == ([False], [None])
    assert await record_store.task_get(t2.id) is None
    # An edit meanwhile (version 2) refuses a fire planned from version 1.
    await store.update(a.id, 1, name=a.name, spec=SPEC, paused=False, now=NOW + 63)
    late = ScheduleFire(a.id, 1, NOW + 60, NOW + 120, NOW + 180, [tick_task(a, NOW + 120)])
    assert (await store.fire([late], NOW + 121))[0] == [False]
    page = await record_store.task_list(TaskFilter(schedule_id=a.id))
    assert [t.id for t in page.items] == [t1.id]
    assert page.items[0].scheduled_for == NOW + 60


async def test_one_fire_for_many_schedules_and_a_tick_stored_once(
    record_store: RecordStore,
) -> None:
    rows = [schedule(f"s{i}") for i in range(50)]
    store = await created(record_store, *rows)
    fires = [
        ScheduleFire(s.id, 1, None, NOW + 60, NOW + 120, [tick_task(s, NOW + 60)]) for s in rows
    ]
    applied, stored = await store.fire(fires, NOW + 60)
    assert applied == [True] * 50 and stored == [f.tasks[0].id for f in fires]
    # The same tick again (a trigger-free replay: a fire whose CAS passes but whose key exists)
    # maps to the task already stored.
    again = ScheduleFire(
        rows[0].id, 1, NOW + 60, NOW + 60, NOW + 120, [tick_task(rows[0], NOW + 60)]
    )
    applied, stored = await store.fire([again], NOW + 61)
    assert applied == [True] and stored == [fires[0].tasks[0].id]


async def test_triggers_skip_the_compare_and_set(record_store: RecordStore) -> None:
    a = schedule()
    store = await created(record_store, a)
    task = make_task(schedule_id=a.id, scheduled_for=NOW + 5, created_at=NOW + 5)
    fire = ScheduleFire(a.id, 99, 123.0, None, None, [task], trigger=True)
    assert await store.fire([fire], NOW + 5) == ([True], [task.id])
    row = await store.get(a.id)
    assert row is not None and row.last_tick is None and row.runs == 0
    (run,) = await store.runs(a.id, None, 10)
    assert run.trigger and run.task_id == task.id and run.state is TaskState.QUEUED


async def test_runs_merge_fired_and_skipped_newest_first(record_store: RecordStore) -> None:
    a = schedule()
    store = await created(record_store, a)
    t1, t3 = tick_task(a, NOW + 60), tick_task(a, NOW + 180)
    skip = ScheduleSkip(a.id, NOW + 120, NOW + 120, SkipReason.PAUSED)
    await store.fire([ScheduleFire(a.id, 1, None, NOW + 60, None, [t1])], NOW + 60)
    await store.fire([ScheduleFire(a.id, 1, NOW + 60, NOW + 120, None, [], [skip])], NOW + 120)
    await store.fire([ScheduleFire(a.id, 1, NOW + 120, NOW + 180, None, [t3])], NOW + 180)
    runs = await store.runs(a.id, None, 10)
    assert [(r.tick, r.reason) for r in runs] == [
        (NOW + 180, None),
        (NOW + 120, SkipReason.PAUSED),
        (NOW + 60, None),
    ]
    assert not runs[0].trigger and runs[0].task_id == t3.id
    assert [r.tick for r in await store.runs(a.id, NOW + 180, 1)] == [NOW + 120]
    assert await store.trim_skips(NOW + 121) == 1
    assert [r.reason for r in await store.runs(a.id, None, 10)] == [None, None]


async def test_outcomes_count_consecutive_failures_and_pause(record_store: RecordStore) -> None:
    a, b = schedule("a"), schedule("b")
    store = await created(record_store, a, b)
    assert await store.record_outcomes([(a.id, True), (b.id, True), (b.id, False)], NOW) == []
    row = await store.get(a.id)
    assert row is not None and row.failures == 1 and not row.paused
    # pause_after_failures is 2 in SPEC: the second consecutive failure pauses (an edit).
    assert await store.record_outcomes([(a.id, True)], NOW + 1) == [a.id]
    row = await store.get(a.id)
    assert row is not None and row.paused and row.version == 2 and row.updated_at == NOW + 1
    other = await store.get(b.id)
    assert other is not None and other.failures == 0 and not other.paused
    assert await store.record_outcomes([(a.id, True)], NOW + 2) == []  # already paused
