"""Task events on a real embedded engine: each state change once, in order, after it is
durable, with the fields its type carries; and the event log they land in."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import engine_with_event_log
from tests.system.cluster import RedisServer
from tierq.engine.engine import Engine
from tierq.engine.events import Batch
from tierq.engine.feed import Listener
from tierq.engine.handlers import close_registry
from tierq.model import Event, EventFilter, TaskState
from tierq.storage.redis.events import RedisEventLog

from .conftest import EngineFactory, engine_settings, make_task, submit, wait_for, wait_state


class Recorder:
    """A bus subscriber keeping every event, and what the record tier said at that moment."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.events: list[Event] = []
        self.stored_state: dict[tuple[str, str], str] = {}
        engine.bus.subscribe(self.on_events)

    async def on_events(self, batch: Batch) -> None:
        found = {
            t.id: t
            for t in await self.engine.store.task_get_many([e.task_id for e in batch.events])
        }
        for event in batch.events:
            self.events.append(event)
            task = found.get(event.task_id)
            self.stored_state[(event.task_id, event.event)] = task.state.value if task else "-"

    def of(self, task_id: str) -> list[str]:
        return [e.event for e in self.events if e.task_id == task_id]

    async def until(self, task_id: str, *kinds: str) -> None:
        async def seen() -> bool:
            return all(k in self.of(task_id) for k in kinds)

        await wait_for(seen, 10.0)


async def test_a_task_that_succeeds_emits_submitted_started_succeeded(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine()
    rec = Recorder(engine)
    (quick,) = await submit(engine, make_task(engine, "noop"))
    (slow,) = await submit(engine, make_task(engine, "dummy", {"sleep_ms": 100}))
    await rec.until(quick, "succeeded")
    await rec.until(slow, "succeeded")
    # Coalesced into one write (an instant handler reports no start): still one started.
    assert rec.of(quick) == ["submitted", "started", "succeeded"]
    assert rec.of(slow) == ["submitted", "started", "succeeded"]
    done = next(e for e in rec.events if e.task_id == slow and e.event == "succeeded")
    assert done.duration_s is not None and done.duration_s >= 0.09
    assert (done.queue, done.type, done.priority, done.attempt) == ("default", "dummy", 5, 1)
    assert done.node == engine.node_id and done.tenant == "default" and done.error is None
    # After it was durable: the record tier already said so when the event arrived.
    assert rec.stored_state[(slow, "succeeded")] == "succeeded"
    assert rec.stored_state[(slow, "started")] in ("running", "succeeded")
    assert rec.stored_state[(slow, "submitted")] == "queued"


async def test_failed_attempts_then_the_dead_letter(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    rec = Recorder(engine)
    task = make_task(engine, "dummy", {"fail_always": True}, max_retries=1)
    (task_id,) = await submit(engine, task)
    await rec.until(task_id, "failed")
    assert rec.of(task_id) == [
        "submitted",
        "started",
        "attempt_failed",
        "started",
        "failed",
    ]
    retry = next(e for e in rec.events if e.event == "attempt_failed")
    assert retry.retry_at is not None and retry.retry_at > retry.at
    assert retry.error is not None and retry.error.startswith("TaskError: dummy: fail_always")
    assert "\n" not in retry.error  # a summary, not the traceback
    final = next(e for e in rec.events if e.event == "failed")
    assert final.attempt == 2 and rec.stored_state[(task_id, "failed")] == "failed"
    # A replay by hand is an event too.
    await engine.retry(task_id)
    await rec.until(task_id, "retried")
    assert rec.of(task_id)[5] == "retried"
    assert rec.stored_state[(task_id, "retried")] in ("queued", "running", "failed")


async def test_cancels_of_held_scheduled_and_dependent_tasks(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    rec = Recorder(engine)
    later = make_task(engine, "noop", delay_seconds=3600)  # in the record tier only
    soon = make_task(engine, "noop", delay_seconds=2)  # held in memory (its timer)
    (later_id, soon_id) = await submit(engine, later, soon)
    child = make_task(engine, "noop", depends_on=[later_id])
    (child_id,) = await submit(engine, child)
    await engine.cancel(soon_id)
    await engine.cancel(later_id)
    await rec.until(soon_id, "cancelled")
    await rec.until(later_id, "cancelled")
    await rec.until(child_id, "cancelled")
    assert rec.of(later_id) == ["submitted", "cancelled"]
    assert rec.of(soon_id) == ["submitted", "cancelled"]
    assert rec.of(child_id) == ["submitted", "cancelled"]
    for task_id in (soon_id, later_id, child_id):
        assert rec.stored_state[(task_id, "cancelled")] == "cancelled"


async def test_each_event_is_in_the_log_with_a_cursor(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    assert engine.bus.log is not None
    ids = await submit(engine, *(make_task(engine, "noop") for _ in range(50)))
    for task_id in ids:
        await wait_state(engine, task_id, TaskState.SUCCEEDED)
    await engine.flusher.run_once()
    await engine.bus.written()
    page = await engine.bus.log.read_after(None, 1000)
    by_task: dict[str, list[str]] = {}
    for event in page.events:
        by_task.setdefault(event.task_id, []).append(event.event)
    assert by_task == {i: ["submitted", "started", "succeeded"] for i in ids}
    cursors = [int(e.cursor) for e in page.events]
    assert cursors == list(range(cursors[0], cursors[0] + 150))


async def test_the_log_survives_a_restart(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    (task_id,) = await submit(engine, make_task(engine, "noop"))
    await wait_state(engine, task_id, TaskState.SUCCEEDED)
    await engine.flusher.run_once()
    await engine.bus.written()
    assert engine.bus.log is not None
    before = await engine.bus.log.end()
    await engine.stop()
    again = await make_engine()
    assert again.bus.log is not None and await again.bus.log.end() == before
    (second,) = await submit(again, make_task(again, "noop"))
    page = await again.bus.log.read_after(str(before), 10)
    assert (page.events[0].task_id, page.events[0].event) == (second, "submitted")
    assert page.events[0].cursor == str(before + 1)


async def test_with_the_log_off_subscribers_still_hear_every_event(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine(event_log=False)
    assert engine.bus.log is None
    rec = Recorder(engine)
    (task_id,) = await submit(engine, make_task(engine, "noop"))
    await rec.until(task_id, "succeeded")
    assert rec.of(task_id) == ["submitted", "started", "succeeded"]
    sample = engine.metrics.registry.get_sample_value
    assert sample("tierq_tasks_completed_total", {"type": "noop"}) == 1


# ---- the live feed -------------------------------------------------------------------------------


def _event(i: int, kind: str = "succeeded") -> Event:
    event = Event(float(i), kind, f"t{i}")
    event.cursor = str(i)
    return event


def test_a_listener_filters_and_overflows_only_when_it_falls_behind() -> None:
    listener = Listener(EventFilter(events=frozenset({"succeeded"})), limit=3)
    dropped: list[bool] = []
    listener.on_overflow = lambda: dropped.append(True)
    # One batch larger than the limit is no sign of falling behind.
    listener.offer([_event(i) for i in range(5)] + [_event(9, "started")])
    assert [e.task_id for e in listener.buffer] == ["t0", "t1", "t2", "t3", "t4"]
    assert not listener.overflowed
    # The next batch finds more than the limit still untaken: dropped, and told.
    listener.offer([_event(10)])
    assert listener.overflowed and not listener.buffer and dropped == [True]
    listener.offer([_event(11)])
    assert not listener.buffer  # nothing more is kept once it overflowed


async def test_the_feed_reads_only_while_someone_listens(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    feed = engine.feed
    assert feed.position is None and feed.listeners == 0
    (first,) = await submit(engine, make_task(engine, "noop"))
    await wait_state(engine, first, TaskState.SUCCEEDED)
    await engine.flusher.run_once()
    await engine.bus.written()
    listener = await feed.listen(EventFilter(task_id=None))
    assert engine.bus.log is not None and feed.position == await engine.bus.log.end()
    (second,) = await submit(engine, make_task(engine, "noop"))
    got: list[Event] = []

    async def heard() -> bool:
        got.extend(await listener.take(0.05))
        return any(e.task_id == second and e.event == "succeeded" for e in got)

    await wait_for(heard, 10.0)
    assert {e.task_id for e in got} == {second}  # nothing from before it listened
    feed.unlisten(listener)
    assert feed.position is None
    # Shutdown ends every listener.
    other = await feed.listen()
    feed.close_all()
    assert other.closed and await other.take(5.0) == []


# ---- an event log that is down ---------------------------------------------------------------


async def test_tasks_go_on_while_the_event_log_is_down_and_it_catches_up(
    tmp_path: Path,
) -> None:
    """The log is a real redis-server that is killed mid-run (the tasks live in SQLite): the
    tasks' changes stand, the failures are counted, the writer keeps what it could not append
    (bounded) and appends it, in order, once the server is back on the same port."""
    server = RedisServer(tmp_path)
    server.start()
    event_log = RedisEventLog(server.url, "t")
    engine = engine_with_event_log(engine_settings(tmp_path, workers=2), event_log)
    metrics = engine.metrics
    await engine.start()
    try:
        (first,) = await submit(engine, make_task(engine, "noop"))
        await wait_state(engine, first, TaskState.SUCCEEDED)
        await engine.flusher.run_once()
        await engine.bus.written()
        assert [e.event for e in (await event_log.read_after(None, 10)).events] == [
            "submitted",
            "started",
            "succeeded",
        ]
        server.kill()
        ids = await submit(engine, *(make_task(engine, "noop") for _ in range(5)))
        for task_id in ids:  # the tasks do not wait for the log
            await wait_state(engine, task_id, TaskState.SUCCEEDED)
        await engine.flusher.run_once()
        assert engine.log_writer is not None

        async def failed() -> bool:
            return (metrics.registry.get_sample_value("tierq_event_log_failures_total") or 0) > 0

        await wait_for(failed, 10.0)
        assert engine.log_writer.backlog == 15  # kept for the retry, in order
        stored = await engine.store.task_get_many(ids)
        assert all(t.state is TaskState.SUCCEEDED for t in stored)
        server.start_on_same_port()
        await wait_for(lambda: engine.log_writer is not None and engine.log_writer.backlog == 0)
        page = await event_log.read_after(None, 100)
        # Redis came back empty: the log starts again, with what the writer kept.
        by_task: dict[str, list[str]] = {}
        for event in page.events:
            by_task.setdefault(event.task_id, []).append(event.event)
        assert by_task == {i: ["submitted", "started", "succeeded"] for i in ids}
    finally:
        await engine.stop()
        await close_registry(engine.registry)
        server.kill()
