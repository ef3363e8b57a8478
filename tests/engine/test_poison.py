"""One value the record store refuses for good must not wedge the record tier.

Real stores only: SQLite with a trigger (created here) that aborts writes of one task id, and
PostgreSQL refusing invalid JSON in a json/jsonb column. The flusher must write everything else
and drop (log, count) only the refused transition; the group committer must fail only the
submission the store refuses.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import orjson
import pytest

from tests.helpers import postgres_store_in_fresh_schema, record_task, wait_for
from tierq.engine.committer import GroupCommitter
from tierq.engine.flusher import Flusher
from tierq.engine.instruments import EngineMetrics
from tierq.metrics import Metrics
from tierq.model import Outcome, Task, TaskState, Transition
from tierq.storage.base import Ack, RecordStore, StoreDataError, StoreUnavailable
from tierq.storage.sqlite.store import SQLiteRecordStore

NOW = 1_700_000_000.0
S = TaskState

# A backend, and how to make writes of one task fail there for good:
# poison(task_id) for sqlite (a trigger on that id); for postgres the test makes the value bad.
Poison = Callable[[str], None]


def make_task(payload: bytes = b"{}") -> Task:
    return record_task(NOW, payload=payload)


def done(task: Task, result: bytes = b'{"ok": true}') -> Transition:
    return Transition(
        task.id, 1, S.SUCCEEDED, NOW + 2, started_at=NOW + 1, finished_at=NOW + 2,
        result=result, outcome=Outcome.SUCCEEDED,
    )  # fmt: skip


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[tuple[RecordStore, Poison]]:
    path = tmp_path / "poison.db"
    store = SQLiteRecordStore(str(path))
    await store.open()

    def poison(task_id: str) -> None:
        # Created through a second connection, as an operator or a constraint added by a
        # later migration would: the store sees a real IntegrityError, not a stub.
        conn = sqlite3.connect(path)
        try:
            for event in ("INSERT", "UPDATE"):
                conn.execute(
                    f"CREATE TRIGGER poison_{event.lower()} BEFORE {event} ON tasks "
                    f"WHEN NEW.id = '{task_id}' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
                )
            conn.commit()
        finally:
            conn.close()

    try:
        yield store, poison
    finally:
        await store.close()


@pytest.fixture
async def postgres_store() -> AsyncIterator[RecordStore]:
    async for store in postgres_store_in_fresh_schema():
        yield store


class Recorder:
    """The flusher's callbacks, recording what they were given."""

    def __init__(self) -> None:
        self.flushed: list[Transition] = []
        self.refused: list[str] = []
        self.confirmed: list[str] = []

    async def ack_many(self, acks: Sequence[Ack]) -> list[str]:
        return []

    async def on_flushed(self, transitions: list[Transition], refused: list[str]) -> None:
        self.flushed += transitions
        self.refused += refused

    async def confirm_many(self, ids: Sequence[str]) -> None:
        self.confirmed += ids


def make_flusher(store: RecordStore, rec: Recorder, metrics: Metrics) -> Flusher:
    return Flusher(
        ack_many=rec.ack_many,
        transition_many=store.task_transition_many,
        on_flushed=rec.on_flushed,
        interval_s=0.001,
        confirm_many=rec.confirm_many,
        # What the engine wires: the count is kept by its metrics module.
        on_rejected=lambda _task_id: EngineMetrics(metrics).record_rejected(),
    )


def rejected_total(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("tierq_record_rejected_total")


async def states(store: RecordStore, tasks: Sequence[Task]) -> list[TaskState]:
    got = {t.id: t.state for t in await store.task_get_many([t.id for t in tasks])}
    return [got[t.id] for t in tasks]


# ---- flusher -------------------------------------------------------------------------------


async def test_flusher_drops_only_the_refused_transition_sqlite(
    sqlite_store: tuple[RecordStore, Poison], caplog: pytest.LogCaptureFixture
) -> None:
    store, poison = sqlite_store
    tasks = [make_task() for _ in range(7)]
    assert await store.task_insert_many(tasks) == [t.id for t in tasks]
    bad = tasks[4]
    poison(bad.id)
    rec, metrics = Recorder(), Metrics()
    flusher = make_flusher(store, rec, metrics)
    for t in tasks:
        flusher.add(done(t), Ack(t.id, 1, S.SUCCEEDED))
    with caplog.at_level(logging.ERROR, logger="tierq.engine"):
        await flusher.run_once()
    good = [t for t in tasks if t is not bad]
    assert await states(store, good) == [S.SUCCEEDED] * len(good)
    assert await states(store, [bad]) == [S.QUEUED]
    assert flusher.backlog == 0
    assert flusher.rejected == 1
    assert rejected_total(metrics) == 1.0
    assert [t.task_id for t in rec.flushed] == [t.id for t in good]
    assert rec.refused == []
    # The refused outcome is not in the record: the dispatch tier must not forget the task.
    assert sorted(rec.confirmed) == sorted(t.id for t in good)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert bad.id in errors[0].getMessage() and "poisoned" in errors[0].getMessage()


async def test_flusher_loop_keeps_running_after_a_refused_transition(
    sqlite_store: tuple[RecordStore, Poison],
) -> None:
    store, poison = sqlite_store
    tasks = [make_task() for _ in range(4)]
    await store.task_insert_many(tasks)
    poison(tasks[0].id)
    rec, metrics = Recorder(), Metrics()
    flusher = make_flusher(store, rec, metrics)
    await flusher.start()
    try:
        for t in tasks[:3]:
            flusher.add(done(t))

        async def first_batch_done() -> bool:
            return flusher.backlog == 0 and flusher.rejected == 1

        await wait_for(first_batch_done, timeout=5)
        # Not wedged: a later report is written as usual.
        flusher.add(done(tasks[3]))

        async def later_written() -> bool:
            return (await states(store, [tasks[3]])) == [S.SUCCEEDED]

        await wait_for(later_written, timeout=5)
    finally:
        await flusher.stop()
    assert await states(store, tasks) == [S.QUEUED, S.SUCCEEDED, S.SUCCEEDED, S.SUCCEEDED]
    assert rejected_total(metrics) == 1.0


async def test_flusher_drops_only_the_refused_transition_postgres(
    postgres_store: RecordStore,
) -> None:
    # A result that is not JSON: jsonb refuses it (DataError), which is not an outage.
    store = postgres_store
    tasks = [make_task() for _ in range(5)]
    await store.task_insert_many(tasks)
    rec, metrics = Recorder(), Metrics()
    flusher = make_flusher(store, rec, metrics)
    for i, t in enumerate(tasks):
        flusher.add(done(t, b"{not json" if i == 1 else b'{"ok": true}'))
    await flusher.run_once()
    assert await states(store, tasks) == [S.SUCCEEDED, S.QUEUED, S.SUCCEEDED, S.SUCCEEDED,
                                          S.SUCCEEDED]  # fmt: skip
    assert flusher.backlog == 0
    assert rejected_total(metrics) == 1.0


async def test_flusher_keeps_a_task_s_transitions_in_order_while_isolating(
    sqlite_store: tuple[RecordStore, Poison],
) -> None:
    # Start and finish of one task in one batch, with a refused neighbour: bisecting must
    # still write the start before the finish.
    store, poison = sqlite_store
    a, bad = make_task(), make_task()
    await store.task_insert_many([a, bad])
    poison(bad.id)
    rec, metrics = Recorder(), Metrics()
    flusher = make_flusher(store, rec, metrics)
    flusher.add(Transition(a.id, 1, S.RUNNING, NOW + 1, started_at=NOW + 1, worker="w"))
    flusher.add(Transition(bad.id, 1, S.RUNNING, NOW + 1, started_at=NOW + 1, worker="w"))
    flusher.add(Transition(a.id, 2, S.SUCCEEDED, NOW + 3, started_at=NOW + 2,
                           finished_at=NOW + 3, outcome=Outcome.SUCCEEDED))  # fmt: skip
    await flusher.run_once()
    (got,) = await store.task_get_many([a.id])
    assert (got.state, got.attempt) == (S.SUCCEEDED, 2)
    assert [e.attempt for e in await store.execution_list(a.id)] == [1, 2]
    assert flusher.rejected == 1


# ---- group committer -----------------------------------------------------------------------


async def commit_three(store: RecordStore, submissions: list[list[Task]]) -> list[object]:
    committer = GroupCommitter(store.task_insert_many)
    waiting = [asyncio.create_task(committer.submit(s)) for s in submissions]
    await asyncio.sleep(0)  # every submission is pending: one group
    await committer.run_once()
    return list(await asyncio.gather(*waiting, return_exceptions=True))


async def test_group_commit_fails_only_the_refused_submission_sqlite(
    sqlite_store: tuple[RecordStore, Poison],
) -> None:
    store, poison = sqlite_store
    first, second, third = [make_task(), make_task()], [make_task()], [make_task(), make_task()]
    poison(second[0].id)
    results = await commit_three(store, [first, second, third])
    assert results[0] == [t.id for t in first]
    # The seam reports a refusal of the data as StoreDataError, the database's error as cause.
    assert isinstance(results[1], StoreDataError)
    assert isinstance(results[1].__cause__, sqlite3.IntegrityError)
    assert results[2] == [t.id for t in third]
    stored = {t.id for t in await store.task_get_many([t.id for t in first + second + third])}
    assert stored == {t.id for t in first + third}


async def test_group_commit_fails_only_the_refused_submission_postgres(
    postgres_store: RecordStore,
) -> None:
    import asyncpg

    store = postgres_store
    first, second, third = [make_task()], [make_task(payload=b"{bad")], [make_task()]
    results = await commit_three(store, [first, second, third])
    assert results[0] == [first[0].id]
    assert isinstance(results[1], StoreDataError)
    assert isinstance(results[1].__cause__, asyncpg.DataError)
    assert results[2] == [third[0].id]
    stored = {t.id for t in await store.task_get_many([first[0].id, second[0].id, third[0].id])}
    assert stored == {first[0].id, third[0].id}


async def test_flusher_keeps_the_batch_while_the_store_is_unavailable(
    sqlite_store: tuple[RecordStore, Poison],
) -> None:
    # An outage is not poison: the batch is kept whole and written once the store is back.
    store, _ = sqlite_store
    tasks = [make_task() for _ in range(3)]
    await store.task_insert_many(tasks)
    rec, metrics = Recorder(), Metrics()
    flusher = make_flusher(store, rec, metrics)
    for t in tasks:
        flusher.add(done(t))
    await store.close()
    with pytest.raises(StoreUnavailable):
        await flusher.run_once()
    assert flusher.backlog == 3
    assert flusher.rejected == 0
    await store.open()
    await flusher.run_once()
    assert flusher.backlog == 0
    assert await states(store, tasks) == [S.SUCCEEDED] * 3
    assert rejected_total(metrics) == 0.0


# ---- through the API -----------------------------------------------------------------------


async def test_api_refused_submission_is_a_422_with_its_request_id_others_succeed(
    tmp_path: Path,
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from tierq.api.app import create_app
    from tierq.config import from_mapping

    db = tmp_path / "api.db"
    settings = from_mapping(
        {
            "database_url": "sqlite:///" + str(db),
            "workers": 1,
            "commit_window_ms": 5,
            "shutdown_grace_s": 0,
            "node_id": "test-node",
        }
    )
    client = TestClient(TestServer(create_app(settings)))  # type: ignore[var-annotated]
    await client.start_server()
    try:
        conn = sqlite3.connect(db)
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON tasks WHEN NEW.name = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
        )
        conn.commit()
        conn.close()
        bodies = [{"type": "noop", "name": n} for n in ("a", "poison", "b")]
        responses = await asyncio.gather(
            *(
                client.post("/api/v1/tasks", json=body, headers={"X-Request-ID": f"req-{i}"})
                for i, body in enumerate(bodies)
            )
        )
        texts = [await r.text() for r in responses]
        # Each answer, the refused one included, carries its own request's id (the server
        # logs the database's words under it).
        assert [r.headers["X-Request-ID"] for r in responses] == ["req-0", "req-1", "req-2"]
        good = [r.status for i, r in enumerate(responses) if i != 1]
        assert all(200 <= s < 300 for s in good), texts
        # The client's own data was refused: a 4xx naming it, without the database's words.
        assert responses[1].status == 422, texts[1]
        assert "Traceback" not in texts[1] and "poisoned" not in texts[1]
        error = orjson.loads(texts[1])["error"]
        assert error["code"] == "unstorable"
    finally:
        await client.close()


async def test_flusher_outage_during_isolation_keeps_only_the_unwritten_rest(
    sqlite_store: tuple[RecordStore, Poison],
) -> None:
    # Calls: 1 whole batch (refused), 2 first half [t0, t1] (written), 3 second half: the
    # store is closed just before it, so [t2, bad, t3] must be kept whole for the retry.
    store, poison = sqlite_store
    tasks = [make_task() for _ in range(5)]
    await store.task_insert_many(tasks)
    bad = tasks[3]
    poison(bad.id)
    calls = 0

    async def transition_many(batch: Sequence[Transition]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 3:
            await store.close()
        return await store.task_transition_many(batch)

    rec, rejected = Recorder(), []
    flusher = Flusher(
        rec.ack_many, transition_many, rec.on_flushed, 0.001, on_rejected=rejected.append
    )
    for t in tasks:
        flusher.add(done(t))
    with pytest.raises(StoreUnavailable):
        await flusher.run_once()
    assert [t.task_id for t in rec.flushed] == [tasks[0].id, tasks[1].id]
    assert flusher.backlog == 3
    await store.open()
    await flusher.run_once()
    assert flusher.backlog == 0
    assert rec.refused == []  # nothing written twice (a repeat would be refused as stale)
    assert [t.task_id for t in rec.flushed] == [t.id for t in tasks if t is not bad]
    assert await states(store, tasks) == [S.SUCCEEDED] * 3 + [S.QUEUED, S.SUCCEEDED]
    assert flusher.rejected == 1
    assert rejected == [bad.id]
