"""The leader lease in PostgreSQL, for replicas that share the database without Redis: a
session-level advisory lock on a dedicated connection. The lock lives exactly as long as
that connection: a leader that dies (or whose connection breaks) loses it at once, and the
next replica to ask takes it with a new fencing token from a sequence."""

from __future__ import annotations

import logging
import zlib
from typing import Any

import asyncpg

from tierq.storage.leader import Leader
from tierq.storage.postgres.queries import sql

log = logging.getLogger("tierq.storage")

_TRY_LOCK = sql("leader_try_lock")
_FENCE = sql("leader_fence")
_UNLOCK = sql("leader_unlock")
_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


class PostgresLeader(Leader):
    def __init__(
        self, dsn: str, *, schema: str = "public", name: str = "scheduler", ttl_s: float = 5.0
    ) -> None:
        self._dsn = dsn
        self._schema = schema
        self.ttl_s = ttl_s
        # One lock per (schema, duty): two deployments in one database never share a leader.
        self._key = zlib.crc32(f"tierq:{schema}:{name}".encode()) - 2**31
        self._conn: Any = None
        self._token: int | None = None

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            self._token = None  # a new session holds no lock
            quoted = '"' + self._schema.replace('"', '""') + '"'
            self._conn = await asyncpg.connect(
                self._dsn,
                timeout=self.ttl_s,
                server_settings={"search_path": quoted, "application_name": "tierq-leader"},
            )
        return self._conn

    async def acquire(self, owner: str) -> int | None:
        try:
            conn = await self._connection()
            if self._token is not None:
                await conn.fetchval("SELECT 1", timeout=self.ttl_s)  # still our session
                return self._token
            if not await conn.fetchval(_TRY_LOCK, self._key, timeout=self.ttl_s):
                return None
            self._token = int(await conn.fetchval(_FENCE, timeout=self.ttl_s))
            return self._token
        except _ERRORS as exc:
            log.warning("leader lease: postgresql unreachable (%s)", exc)
            await self.close()
            return None

    async def resign(self, owner: str) -> None:
        if self._conn is not None and self._token is not None:
            try:
                await self._conn.fetchval(_UNLOCK, self._key, timeout=self.ttl_s)
            except _ERRORS as exc:
                log.warning("leader lease: could not resign (%s); closing the session", exc)
                await self.close()
        self._token = None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        self._token = None
        if conn is not None:
            try:
                await conn.close(timeout=2)
            except _ERRORS:
                conn.terminate()
