"""API keys and the audit log in PostgreSQL, on the record store's pool. Replicas appending
to the audit chain at once still form one chain (PostgresAuditStore says how)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from tierq.model import ApiKey, AuditEntry, AuditFilter, AuditRecord
from tierq.storage.audit import GENESIS, AuditStore, chain, resource_parts
from tierq.storage.base import StoreUnavailable
from tierq.storage.keys import KeyStore
from tierq.storage.postgres.queries import sql
from tierq.storage.postgres.store import Conn, PostgresRecordStore

# Appends that lost the race to another replica before one gives up (the writer retries).
APPEND_ATTEMPTS = 20
_KEY_INSERT = sql("access_key_insert")
_KEY_FIND = sql("access_key_find")
_KEY_GET = sql("access_key_get")
_KEY_LIST = sql("access_key_list")
_KEY_REVOKE = sql("access_key_revoke")
_KEY_ROTATE = sql("access_key_rotate")
_KEY_TOUCH = sql("access_key_touch")
_KEY_COUNT_LIVE = sql("access_key_count_live")
_AUDIT_LAST = sql("access_audit_last")
_AUDIT_INSERT = sql("access_audit_insert")
_AUDIT_LIST = sql("access_audit_list")
_AUDIT_AFTER = sql("access_audit_after")
_AUDIT_TRIM = sql("access_audit_trim")


def _key(r: Any) -> ApiKey:
    limits = None if r[12] is None else r[12].encode()
    return ApiKey(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], limits)


def _row(r: AuditRecord) -> dict[str, Any]:
    e = r.entry
    return {
        "seq": r.seq,
        "at": e.at,
        "actor": e.actor,
        "tenant": e.tenant,
        "role": e.role,
        "action": e.action,
        "resource_type": e.resource_type,
        "resource_id": e.resource_id,
        "request_id": e.request_id,
        "source": e.source,
        "status": e.status,
        "changes": None if e.changes is None else e.changes.decode(),
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    }


def _record(r: Any) -> AuditRecord:
    changes = None if r[11] is None else r[11].encode()
    entry = AuditEntry(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], changes)
    return AuditRecord(r[0], entry, r[12], r[13])


class PostgresKeyStore(KeyStore):
    def __init__(self, record: PostgresRecordStore) -> None:
        self._record = record

    async def _run(self, method: str, query: str, *args: Any) -> Any:
        async def call(conn: Conn) -> Any:
            return await getattr(conn, method)(query, *args)

        return await self._record._run(call)

    async def _one(self, query: str, *args: Any) -> ApiKey | None:
        row = await self._run("fetchrow", query, *args)
        return None if row is None else _key(row)

    async def _create(self, key: ApiKey) -> None:
        await self._run(
            "execute",
            _KEY_INSERT,
            key.id,
            key.name,
            key.role,
            key.tenant,
            key.secret_hash,
            key.prefix,
            key.created_at,
            key.expires_at,
            key.last_used_at,
            key.revoked_at,
            key.previous_hash,
            key.previous_until,
            None if key.rate_limits is None else key.rate_limits.decode(),
        )

    async def _find(self, secret_hash: str) -> ApiKey | None:
        return await self._one(_KEY_FIND, secret_hash)

    async def _get(self, key_id: str, tenant: str | None) -> ApiKey | None:
        return await self._one(_KEY_GET, key_id, tenant)

    async def _list_keys(self, tenant: str | None) -> list[ApiKey]:
        return [_key(r) for r in await self._run("fetch", _KEY_LIST, tenant)]

    async def _revoke(self, key_id: str, tenant: str | None, now: float) -> ApiKey | None:
        return await self._one(_KEY_REVOKE, key_id, tenant, now)

    async def _rotate(
        self, key_id: str, tenant: str | None, secret_hash: str, prefix: str, until: float
    ) -> ApiKey | None:
        return await self._one(_KEY_ROTATE, key_id, tenant, secret_hash, prefix, until)

    async def _touch_many(self, used: Sequence[tuple[str, float]]) -> None:
        await self._run("execute", _KEY_TOUCH, [u[0] for u in used], [u[1] for u in used])

    async def _count_live(self, now: float) -> int:
        return int(await self._run("fetchval", _KEY_COUNT_LIVE, now))


class PostgresAuditStore(AuditStore):
    """Appends are optimistic: the chain's last link is remembered from the previous append,
    and the batch is inserted after it in one statement. seq is the primary key and dense, so
    if another replica appended meanwhile the first row collides, nothing is inserted, and
    the append reads the last link and tries again: one round trip in the common case, and
    never two rows with one place in the chain."""

    def __init__(self, record: PostgresRecordStore) -> None:
        self._record = record
        self._last: tuple[int, str] | None = None

    async def _append_many(self, entries: Sequence[AuditEntry]) -> None:
        for _ in range(APPEND_ATTEMPTS):
            if self._last is None:
                row = await self._record._run(lambda c: c.fetchrow(_AUDIT_LAST))
                self._last = (row[0], row[1]) if row else (0, GENESIS)
            records = chain(*self._last, entries)
            document = orjson.dumps([_row(r) for r in records]).decode()

            async def run(conn: Conn, document: str = document) -> bool:
                try:
                    await conn.execute(_AUDIT_INSERT, document)
                except asyncpg.UniqueViolationError:
                    return False  # another replica took this place in the chain
                return True

            if await self._record._run(run):
                self._last = (records[-1].seq, records[-1].hash)
                return
            self._last = None
        raise StoreUnavailable("audit log: too many concurrent appends; retrying later")

    async def _list(self, flt: AuditFilter) -> list[AuditRecord]:
        kind, ident = resource_parts(flt.resource)

        async def run(conn: Conn) -> Any:
            return await conn.fetch(
                _AUDIT_LIST,
                flt.tenant,
                flt.actor,
                flt.action,
                kind,
                ident,
                flt.since,
                flt.until,
                flt.before_seq,
                flt.size + 1,
            )

        return [_record(r) for r in await self._record._run(run)]

    async def _after(self, seq: int, limit: int) -> list[AuditRecord]:
        async def run(conn: Conn) -> Any:
            return await conn.fetch(_AUDIT_AFTER, seq, limit)

        return [_record(r) for r in await self._record._run(run)]

    async def _trim(self, before: float) -> int:
        async def run(conn: Conn) -> Any:
            return await conn.execute(_AUDIT_TRIM, before)

        status: str = await self._record._run(run)
        return int(status.split()[-1])
