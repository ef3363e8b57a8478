"""Multi-row statements of the SQLite store (tierq/storage/sqlite/batches.py)."""

from __future__ import annotations

import sqlite3

import pytest

from tierq.storage.sqlite.batches import CHUNK, _statement, chunk_sizes, execute_rows


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
