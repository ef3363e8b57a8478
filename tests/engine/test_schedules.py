"""The scheduler in a real engine (SQLite): ticks become tasks exactly once, restarts neither
repeat nor lose a tick, policies hold, and a stale second leader changes nothing. The
scheduler is stepped with explicit times (``step(now)``): no test waits for a real tick."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

from tests.engine.conftest import EngineFactory, wait_all, wait_for
from tierq.engine.engine import Engine
from tierq.engine.schedules.scheduler import Scheduler
from tierq.engine.schedules.service import Schedules
from tierq.engine.schedules.spec import ScheduleIn
from tierq.model import TaskFilter, TaskState
from tierq.storage.leader import AlwaysLeader

# Schedules start in the past, so the tasks they make are due at once in real time.
T0 = float(int(time.time()) - 40 * 86400)


def spec(**fields: Any) -> ScheduleIn:
    fields.setdefault("name", "s")
    fields.setdefault("task", {"type": "noop"})
    if "start_at" in fields and isinstance(fields["start_at"], float):
        fields["start_at"] = datetime.fromtimestamp(fields["start_at"], UTC).isoformat()
    return msgspec.json.decode(orjson.dumps(fields), type=ScheduleIn)


def schedules_of(engine: Engine) -> Schedules:
    assert engine.schedules is not None
    return engine.schedules


async def tasks_of(engine: Engine, schedule_id: str) -> list[Any]:
    page = await engine.list_tasks(TaskFilter(schedule_id=schedule_id, size=1000))
    return sorted(page.items, key=lambda t: t.scheduled_for or 0)


async def test_ticks_fire_once_each_and_run(make_engine: EngineFactory) -> None:
    engine = await make_engine(schedules=False)  # stepped by hand
    service = schedules_of(engine)
    view = await service.create(spec(every_seconds=60, start_at=T0, catchup="all"))
    sid = view.schedule.id
    scheduler = service.scheduler
    await scheduler.step(T0 + 0.1)
    await scheduler.step(T0 + 0.2)  # nothing new is due
    await scheduler.step(T0 + 180.3)  # three more ticks
    tasks = await tasks_of(engine, sid)
    assert [t.scheduled_for for t in tasks] == [T0, T0 + 60, T0 + 120, T0 + 180]
    await wait_all(engine, [t.id for t in tasks], TaskState.SUCCEEDED)
    stored = await service.store.get(sid)
    assert stored is not None and stored.runs == 4 and stored.last_tick == T0 + 180
    runs = await service.runs(sid, None, 10)
    assert [r.state for r in runs] == [TaskState.SUCCEEDED] * 4


def fresh_scheduler(engine: Engine, node_id: str) -> Scheduler:
    """A scheduler that knows only what the store holds: a replica just started (or one
    that still believes it leads)."""
    service = schedules_of(engine)
    return Scheduler(
        service.store,
        AlwaysLeader(),
        service.accept_fired,
        service._states,
        service._cancel_runs,
        service.prototype,
        engine.instruments,
        engine.clock,
        node_id,
        grace_s=5.0,
        renew_s=60.0,
        sync_s=60.0,
    )


async def test_restarts_every_hour_still_run_the_weekly_tick(make_engine: EngineFactory) -> None:
    # River and RedBeat users lose weekly runs to frequent restarts; here each restart
    # derives the next tick from the last one fired. Ahead of real time: a cron schedule's
    # first tick follows its creation.
    day = datetime.fromtimestamp(time.time() + 86400, UTC)
    start = day.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    engine = await make_engine(schedules=False)
    view = await schedules_of(engine).create(
        spec(cron="0 12 * * 3", start_at=start, catchup="none")  # Wednesdays at noon
    )
    sid = view.schedule.id
    for hour in range(21 * 24):  # three weeks, a restart every hour
        if hour % (7 * 24) == 100:  # and a whole engine restarted once a week
            await engine.stop()
            engine = await make_engine(schedules=False)
        await fresh_scheduler(engine, f"r{hour}").step(start + hour * 3600 + 1)
    tasks = await tasks_of(engine, sid)
    fired = [datetime.fromtimestamp(t.scheduled_for, UTC) for t in tasks]
    assert len(fired) == 3 and all((d.weekday(), d.hour) == (2, 12) for d in fired)
    assert len({d.date() for d in fired}) == 3


async def test_a_stale_second_leader_fires_nothing(make_engine: EngineFactory) -> None:
    engine = await make_engine(schedules=False)
    service = schedules_of(engine)
    view = await service.create(spec(every_seconds=10, start_at=T0, catchup="all"))
    leader = service.scheduler
    other = fresh_scheduler(engine, "stale")
    await leader.step(T0 + 0.5)
    await other.step(T0 + 0.5)  # loaded after the first fire: nothing due for it
    await leader.step(T0 + 20.5)
    await other.step(T0 + 20.5)  # planned from an old last_tick: refused, nothing inserted
    await other.step(T0 + 20.6)  # reloaded: nothing due
    tasks = await tasks_of(engine, view.schedule.id)
    assert [t.scheduled_for for t in tasks] == [T0, T0 + 10, T0 + 20]


async def test_overlap_skip_waits_for_the_running_task(make_engine: EngineFactory) -> None:
    engine = await make_engine(schedules=False)
    service = schedules_of(engine)
    view = await service.create(
        spec(
            every_seconds=1,
            start_at=T0,
            overlap="skip",
            catchup="all",
            task={"type": "dummy", "payload": {"sleep_ms": 60_000}},
        )
    )
    sid = view.schedule.id
    await service.scheduler.step(T0 + 0.1)
    (first,) = await tasks_of(engine, sid)

    async def running() -> bool:
        return (await engine.get(first.id)).state is TaskState.RUNNING

    await wait_for(running, 10)
    await service.scheduler.step(T0 + 3.1)
    assert len(await tasks_of(engine, sid)) == 1
    runs = await service.runs(sid, None, 10)
    assert [r.reason.value if r.reason else None for r in runs] == [
        "overlap",
        "overlap",
        "overlap",
        None,
    ]
    await engine.cancel(first.id)
    await wait_all(engine, [first.id], TaskState.CANCELLED)
    await service.scheduler.step(T0 + 4.1)
    assert len(await tasks_of(engine, sid)) == 2


async def test_replace_cancels_the_previous_run(make_engine: EngineFactory) -> None:
    engine = await make_engine(schedules=False)
    service = schedules_of(engine)
    view = await service.create(
        spec(
            every_seconds=5,
            start_at=T0,
            overlap="replace",
            task={"type": "dummy", "payload": {"sleep_ms": 60_000}},
        )
    )
    await service.scheduler.step(T0 + 0.1)
    (first,) = await tasks_of(engine, view.schedule.id)

    async def running() -> bool:
        return (await engine.get(first.id)).state is TaskState.RUNNING

    await wait_for(running, 10)
    await service.scheduler.step(T0 + 5.1)
    await wait_all(engine, [first.id], TaskState.CANCELLED)
    tasks = await tasks_of(engine, view.schedule.id)
    assert len(tasks) == 2 and tasks[1].state is not TaskState.CANCELLED


async def test_consecutive_failures_pause_the_schedule(make_engine: EngineFactory) -> None:
    engine = await make_engine(schedules=False, default_max_retries=0)
    service = schedules_of(engine)
    view = await service.create(
        spec(
            every_seconds=1,
            start_at=T0,
            pause_after_failures=2,
            task={"type": "dummy", "payload": {"fail_always": True}, "max_retries": 0},
        )
    )
    sid = view.schedule.id
    for n in range(2):
        await service.scheduler.step(T0 + n + 0.1)
        ids = [t.id for t in await tasks_of(engine, sid)]
        await wait_all(engine, ids, TaskState.FAILED)

    async def paused() -> bool:
        row = await service.store.get(sid)
        return row is not None and row.paused

    await wait_for(paused, 10)
    await service.scheduler.step(T0 + 2.1)  # the announced edit is taken in: paused
    assert len(await tasks_of(engine, sid)) == 2
    assert (await service.runs(sid, None, 1))[0].reason is not None
    resumed = await service.set_paused(sid, False)
    assert not resumed.schedule.paused and resumed.schedule.failures == 0


async def test_an_edit_takes_effect_on_the_next_pass(make_engine: EngineFactory) -> None:
    engine = await make_engine(schedules=False)
    service = schedules_of(engine)
    view = await service.create(spec(every_seconds=60, start_at=T0))
    sid = view.schedule.id
    await service.scheduler.step(T0 + 0.1)
    await service.update(sid, {"every_seconds": msgspec.Raw(b"10")})
    await service.scheduler.step(T0 + 10.1)
    ticks = [t.scheduled_for for t in await tasks_of(engine, sid)]
    assert ticks == [T0, T0 + 10]
    await service.update(sid, {"task": msgspec.Raw(b'{"queue": "edited"}')})
    await service.scheduler.step(T0 + 20.1)
    last = (await tasks_of(engine, sid))[-1]
    assert last.queue == "edited" and last.type == "noop"


async def test_trigger_with_a_key_fires_once(make_engine: EngineFactory) -> None:
    engine = await make_engine(schedules=False)
    service = schedules_of(engine)
    view = await service.create(spec(every_seconds=3600, start_at=T0 + 86400 * 100))
    sid = view.schedule.id
    first = await service.trigger(sid, "k1")
    again = await service.trigger(sid, "k1")
    assert first.created and not again.created and again.task.id == first.task.id
    third = await service.trigger(sid, None)
    fourth = await service.trigger(sid, None)
    assert third.created and fourth.created and third.task.id != fourth.task.id
    runs = await service.runs(sid, None, 10)
    assert len(runs) == 3 and all(r.trigger for r in runs)
