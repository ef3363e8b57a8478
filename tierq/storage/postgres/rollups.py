"""Per-minute task rollups in PostgreSQL (storage/rollups.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tierq.storage.postgres.queries import sql
from tierq.storage.postgres.store import Conn, PostgresRecordStore
from tierq.storage.rollups import Rollup, RollupStore

_ADD = sql("rollups_add")
_READ = sql("rollups_read")
_FORGET = sql("rollups_forget")


class PostgresRollupStore(RollupStore):
    def __init__(self, record: PostgresRecordStore) -> None:
        self._record = record

    async def _call(self, method: str, query: str, *args: Any) -> Any:
        async def call(conn: Conn) -> Any:
            return await getattr(conn, method)(query, *args)

        return await self._record._run(call)

    async def _add(self, rows: Sequence[Rollup]) -> None:
        await self._call(
            "execute",
            _ADD,
            [r.minute for r in rows],
            [r.node for r in rows],
            [r.tenant for r in rows],
            [r.body.decode() for r in rows],
        )

    async def _read(self, since: float, until: float, tenant: str | None) -> Sequence[Rollup]:
        rows = await self._call("fetch", _READ, int(since), int(until), tenant)
        return [Rollup(int(r[0]), r[1], r[2], str(r[3]).encode()) for r in rows]

    async def _forget(self, before: float) -> int:
        status = await self._call("execute", _FORGET, int(before))
        return int(str(status).rsplit(" ", 1)[-1])
