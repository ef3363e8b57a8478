"""The event log in PostgreSQL, for a record store on PostgreSQL without Redis.

The tables are created by the record store's migrations (``002_events.sql``). A published
batch is one row, numbered in the same statement that inserts it (``sql/events_append.sql``:
the sequence row's lock orders commits by cursor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tierq.model import Event
from tierq.storage.base import StoreUnavailable
from tierq.storage.eventlog import EventLog, Row, encode_batch, rows_after
from tierq.storage.postgres.queries import sql

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ModuleNotFoundError(
        "PostgreSQL needs asyncpg: pip install 'tierq[distributed]'", name=exc.name
    ) from exc

_APPEND = sql("events_append")
_RANGE_AFTER = sql("events_range_after")
_NEWEST = sql("events_newest")
_OLDEST = sql("events_oldest")
_TRIMMED = sql("events_trimmed_through")
_TRIM = sql("events_trim")
_UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


class PostgresEventLog(EventLog):
    def __init__(self, dsn: str, *, schema: str = "public") -> None:
        super().__init__()
        self._dsn = dsn
        self._schema = schema
        self._pool: Any = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        quoted = '"' + self._schema.replace('"', '""') + '"'
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=3,
                server_settings={"search_path": quoted, "application_name": "tierq-events"},
            )
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _call(self, method: str, sql: str, *args: Any) -> Any:
        if self._pool is None:
            raise StoreUnavailable("event log is not open")
        try:
            return await getattr(self._pool, method)(sql, *args)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"postgres event log: {exc}") from exc

    async def _append(self, events: Sequence[Event]) -> None:
        await self._call("execute", _APPEND, len(events), events[-1].at, encode_batch(events))

    async def _range_after(self, after: int, limit: int) -> list[Event]:
        async def fetch(start: int, count: int) -> list[Row]:
            rows = await self._call("fetch", _RANGE_AFTER, start, count)
            return [(r[0], r[1], r[2]) for r in rows]

        return await rows_after(fetch, after, limit)

    async def _scalar(self, sql: str) -> int | None:
        value = await self._call("fetchval", sql)
        return None if value is None else int(value)

    async def _newest(self) -> int | None:
        return await self._scalar(_NEWEST)

    async def _oldest(self) -> int | None:
        return await self._scalar(_OLDEST)

    async def _trimmed_through(self) -> int | None:
        return await self._scalar(_TRIMMED)

    async def _trim(self, older_than: float, max_count: int) -> None:
        await self._call("execute", _TRIM, older_than, max_count)
