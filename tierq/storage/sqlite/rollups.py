"""Per-minute task rollups in the embedded SQLite file (storage/rollups.py)."""

from __future__ import annotations

from collections.abc import Sequence

from tierq.storage.rollups import Rollup, RollupStore
from tierq.storage.sqlite.sqlfiles import load_sections
from tierq.storage.sqlite.store import SQLiteRecordStore

_SQL = load_sections("rollups")


class SQLiteRollupStore(RollupStore):
    def __init__(self, record: SQLiteRecordStore) -> None:
        self._record = record

    async def _add(self, rows: Sequence[Rollup]) -> None:
        args = [(r.minute, r.node, r.tenant, r.body.decode()) for r in rows]
        await self._record._write(lambda conn: conn.executemany(_SQL["add"], args))

    async def _read(self, since: float, until: float, tenant: str | None) -> Sequence[Rollup]:
        args = (int(since), int(until), tenant)
        rows = await self._record._read(lambda c: c.execute(_SQL["read"], args).fetchall())
        return [Rollup(int(m), str(n), str(t), str(b).encode()) for m, n, t, b in rows]

    async def _forget(self, before: float) -> int:
        return await self._record._write(
            lambda conn: conn.execute(_SQL["forget"], (int(before),)).rowcount
        )
