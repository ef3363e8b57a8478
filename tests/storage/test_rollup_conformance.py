"""One suite for every rollup store (SQLite, PostgreSQL): rows appended in one call are read
back by minute range and tenant, oldest first, and forgotten by age."""

from __future__ import annotations

from tierq.storage.base import RecordStore
from tierq.storage.factory import make_rollup_store
from tierq.storage.rollups import Rollup


async def test_rows_are_read_by_range_and_tenant_and_forgotten(record_store: RecordStore) -> None:
    store = make_rollup_store(record_store)
    rows = [
        Rollup(120, "a", "default", b'{"succeeded":1}'),
        Rollup(60, "b", "default", b'{"failed":2}'),
        Rollup(60, "a", "acme", b'{"submitted":3}'),
        Rollup(180, "a", "default", b'{"started":4}'),
    ]
    await store.add(rows)
    await store.add([])  # nothing to write: no statement
    assert await store.read(60, 180, None) == [rows[1], rows[2], rows[0]] or await store.read(
        60, 180, None
    ) == [rows[2], rows[1], rows[0]]
    assert await store.read(0, 1000, "acme") == [rows[2]]
    assert [r.minute for r in await store.read(120, 181, "default")] == [120, 180]
    assert await store.forget(120) == 2
    assert [r.minute for r in await store.read(0, 1000, None)] == [120, 180]
