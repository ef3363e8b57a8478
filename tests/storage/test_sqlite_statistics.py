"""The embedded store keeps no planner statistics: with them, SQLite plans the transition
UPDATE with a Bloom filter built by scanning every task, for every batch (five times slower
end to end after each restart; sql/statistics_forget.sql). A database that has them (from
ANALYZE, or from an earlier version that ran PRAGMA optimize at close) loses them at open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.storage.test_record_conformance import make_task
from tierq.model import TaskState, Transition
from tierq.storage.sqlite.batches import _statement
from tierq.storage.sqlite.sqlfiles import load
from tierq.storage.sqlite.store import SQLiteRecordStore

NOW = 1_700_000_000.0


def transition_plan(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        sql = _statement(load("task_transition"), 10, 256)
        params = [None] * (10 * 256)
        return " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    finally:
        conn.close()


async def test_statistics_are_dropped_at_open_and_never_written(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteRecordStore(str(path))
    await store.open()
    tasks = [make_task(created_at=NOW + i * 1e-3) for i in range(3000)]
    await store.task_insert_many(tasks)
    await store.task_transition_many(
        [Transition(t.id, 1, TaskState.SUCCEEDED, NOW + 5, finished_at=NOW + 5) for t in tasks]
    )
    await store.close()
    conn = sqlite3.connect(path)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "sqlite_stat1" not in names  # closing wrote none
    conn.execute("ANALYZE")  # as an earlier version's PRAGMA optimize did
    assert conn.execute("SELECT count(*) FROM sqlite_stat1").fetchone()[0] > 0
    conn.close()
    assert "BLOOM FILTER" in transition_plan(path)  # the plan the statistics lead to
    store = SQLiteRecordStore(str(path))
    await store.open()
    try:
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT count(*) FROM sqlite_stat1").fetchone()[0] == 0
        conn.close()
        assert "BLOOM FILTER" not in transition_plan(path)
        assert "SEARCH tasks USING PRIMARY KEY" in transition_plan(path)
    finally:
        await store.close()
