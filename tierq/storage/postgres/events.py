"""The event log in PostgreSQL, for a record store on PostgreSQL without Redis.

The tables are created by the record store's migrations (``002_events.sql``). A published
batch is one row, numbered in the same statement that inserts it (``sql/events_append.sql``:
the sequence row's lock orders commits by cursor).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

from tierq.model import Event
from tierq.storage.base import StoreUnavailable
from tierq.storage.eventlog import ENTRIES_PER_READ, EventLog, encode_batch, entry_events

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ModuleNotFoundError(
        "PostgreSQL needs asyncpg: pip install 'tierq[distributed]'", name=exc.name
    ) from exc

_PKG = resources.files(__package__ or "tierq.storage.postgres")


def _sql(name: str) -> str:
    return (_PKG / "sql" / f"events_{name}.sql").read_text(encoding="utf-8")


_APPEND = _sql("append")
_RANGE_AFTER = _sql("range_after")
_NEWEST = _sql("newest")
_OLDEST = _sql("oldest")
_TRIMMED = _sql("trimmed_through")
_TRIM = _sql("trim")
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
        events: list[Event] = []
        position = after
        while len(events) < limit:
            rows = await self._call("fetch", _RANGE_AFTER, position, ENTRIES_PER_READ)
            for last, n, body in rows:
                events += entry_events(last - n + 1, bytes(body), after)
            if len(rows) < ENTRIES_PER_READ:
                break
            position = rows[-1][0]
        return events

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
