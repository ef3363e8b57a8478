"""Batch statements of the SQLite store: multi-row writes (batches.py) and claimed rows
read back in one step (task_rows_json.sql)."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import record_task
from tierq.ids import new_id
from tierq.model import Task, TaskState
from tierq.storage.sqlite.batches import CHUNK, _statement, chunk_sizes, execute_rows
from tierq.storage.sqlite.rows import prints_floats_exactly
from tierq.storage.sqlite.store import SQLiteRecordStore


@pytest.mark.parametrize("n", [0, 1, 2, 3, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 77, 10_000])
def test_chunk_sizes_cover_n_in_few_shapes(n: int) -> None:
    sizes = chunk_sizes(n)
    assert sum(sizes) == n
    assert all(0 < s <= CHUNK and s & (s - 1) == 0 for s in sizes)  # powers of two
    assert len(sizes) - sizes.count(CHUNK) == len(set(sizes) - {CHUNK})  # each rest size once


def test_rows_are_applied_in_order_across_chunks() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT, n INTEGER)")
    template = (
        "-- {rows} in a comment is not the marker\n"
        "INSERT INTO t (k, v, n) VALUES {rows} "
        "ON CONFLICT (k) DO UPDATE SET v = excluded.v, n = t.n + 1"
    )
    # Key 7 appears in the first chunk and again in the last: the later row must win.
    rows = [(i, f"v{i}", 0) for i in range(CHUNK + 40)] + [(7, "last", 0)]
    changed = execute_rows(conn, template, 3, rows)
    assert changed == len(rows)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (CHUNK + 40,)
    assert conn.execute("SELECT v, n FROM t WHERE k = 7").fetchone() == ("last", 1)


def test_a_template_needs_exactly_one_marker() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        _statement("SELECT 1", 1, 1)
    with pytest.raises(ValueError, match="exactly one"):
        _statement("VALUES {rows}, {rows}", 1, 1)


# ---- claimed rows read back in one step (task_rows_json.sql) ------------------------------


def _awkward_task(k: int) -> Task:
    # Every column set, with doubles that 15 digits would not give back and text that
    # JSON must escape (NUL, quotes, non-ASCII), and bytes that are not UTF-8.
    now = 1_764_000_000.123_456_7 + k / 7919
    return record_task(
        now=now,
        id=new_id(now),
        state=TaskState.SCHEDULED if k % 2 else TaskState.QUEUED,
        run_at=now - 1 / 3,
        timeout_s=1 / 7,
        payload=b'{"q": "\\"x\\u0000\\u00e9\\""}',
        name=f"n\x00{k}\u00e9",
        description='d "quoted"',
        idempotency_key=f"key-{k}",
        depends_on=(new_id(now - 5),),
        notify=b'{"url": "https://example.com/hook"}',
        result=b"\xff\x00raw",
        last_error="e\x00rr",
        started_at=now + 2 / 3,
        finished_at=None,
        attempt=2,
        attempt_base=1,
    )


@pytest.mark.parametrize("rows_as_json", [True, False])
async def test_claimed_rows_come_back_exactly(tmp_path: Path, rows_as_json: bool) -> None:
    store = SQLiteRecordStore(str(tmp_path / "claim.db"))
    await store.open()
    try:
        assert store._rows_as_json  # this platform prints doubles exactly
        store._rows_as_json = rows_as_json  # False: the row-by-row fallback
        tasks = [_awkward_task(k) for k in range(300)]
        await store.task_insert_many(tasks)
        now = max(t.run_at for t in tasks) + 1
        claimed = await store.task_claim("owner-1", 1000, now)
        expected = sorted(
            (
                dataclasses.replace(
                    t,
                    lease_owner="owner-1",
                    state=TaskState.QUEUED,
                    updated_at=now if t.state is TaskState.SCHEDULED else t.updated_at,
                )
                for t in tasks
            ),
            key=lambda t: t.sort_key,
        )
        assert claimed == expected
        counts = await store.task_counts()
        assert (counts[TaskState.QUEUED], counts[TaskState.SCHEDULED]) == (300, 0)
    finally:
        await store.close()


def test_float_check_catches_a_lossy_printer() -> None:
    # The check must fail for a printer that gives 15 digits (what SQLite's JSON uses).
    conn = sqlite3.connect(":memory:")
    conn.create_function("printf", 2, lambda fmt, x: f"{x:.15g}", deterministic=True)
    try:
        assert not prints_floats_exactly(conn)
    finally:
        conn.close()
    assert prints_floats_exactly(sqlite3.connect(":memory:"))
