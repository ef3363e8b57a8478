"""API keys and the audit log in the embedded SQLite file, written on the record store's
writer thread (the one writer of the file serialises the audit chain's appends)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from tierq.model import ApiKey, AuditEntry, AuditFilter, AuditRecord
from tierq.storage.audit import GENESIS, AuditStore, chain, resource_parts
from tierq.storage.keys import KeyStore
from tierq.storage.sqlite.sqlfiles import load_sections
from tierq.storage.sqlite.store import SQLiteRecordStore

_SQL = load_sections("access")


def _key(r: Any) -> ApiKey:
    limits = None if r[12] is None else bytes(r[12])
    return ApiKey(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], limits)


def _record(r: Any) -> AuditRecord:
    changes = None if r[11] is None else bytes(r[11])
    entry = AuditEntry(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], changes)
    return AuditRecord(r[0], entry, r[12], r[13])


class SQLiteKeyStore(KeyStore):
    def __init__(self, record: SQLiteRecordStore) -> None:
        self._record = record

    async def _one(self, sql: str, args: tuple[Any, ...]) -> ApiKey | None:
        row = await self._record._read(lambda c: c.execute(sql, args).fetchone())
        return None if row is None else _key(row)

    async def _create(self, key: ApiKey) -> None:
        values = (
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
            key.rate_limits,
        )
        await self._record._write(lambda c: c.execute(_SQL["key_insert"], values), urgent=True)

    async def _find(self, secret_hash: str) -> ApiKey | None:
        return await self._one(_SQL["key_find"], (secret_hash,))

    async def _get(self, key_id: str, tenant: str | None) -> ApiKey | None:
        return await self._one(_SQL["key_get"], (key_id, tenant))

    async def _list_keys(self, tenant: str | None) -> list[ApiKey]:
        rows = await self._record._read(lambda c: c.execute(_SQL["key_list"], (tenant,)).fetchall())
        return [_key(r) for r in rows]

    async def _change(self, sql: str, args: tuple[Any, ...]) -> ApiKey | None:
        def job(conn: sqlite3.Connection) -> Any:
            if conn.execute(sql, args).rowcount == 0:
                return None
            return conn.execute(_SQL["key_get"], (args[0], args[1])).fetchone()

        row = await self._record._write(job, urgent=True)
        return None if row is None else _key(row)

    async def _revoke(self, key_id: str, tenant: str | None, now: float) -> ApiKey | None:
        return await self._change(_SQL["key_revoke"], (key_id, tenant, now))

    async def _rotate(
        self, key_id: str, tenant: str | None, secret_hash: str, prefix: str, until: float
    ) -> ApiKey | None:
        return await self._change(_SQL["key_rotate"], (key_id, tenant, secret_hash, prefix, until))

    async def _touch_many(self, used: Sequence[tuple[str, float]]) -> None:
        rows = list(used)
        await self._record._write(lambda c: c.executemany(_SQL["key_touch"], rows), size=len(rows))

    async def _count_live(self, now: float) -> int:
        row = await self._record._read(
            lambda c: c.execute(_SQL["key_count_live"], (now,)).fetchone()
        )
        return int(row[0])


class SQLiteAuditStore(AuditStore):
    def __init__(self, record: SQLiteRecordStore) -> None:
        self._record = record

    async def _append_many(self, entries: Sequence[AuditEntry]) -> None:
        def job(conn: sqlite3.Connection) -> None:
            last = conn.execute(_SQL["audit_last"]).fetchone()
            records = chain(last[0], last[1], entries) if last else chain(0, GENESIS, entries)
            conn.executemany(
                _SQL["audit_insert"],
                [
                    (
                        r.seq,
                        r.entry.at,
                        r.entry.actor,
                        r.entry.tenant,
                        r.entry.role,
                        r.entry.action,
                        r.entry.resource_type,
                        r.entry.resource_id,
                        r.entry.request_id,
                        r.entry.source,
                        r.entry.status,
                        r.entry.changes,
                        r.prev_hash,
                        r.hash,
                    )
                    for r in records
                ],
            )

        # Urgent: the rows join the group of submissions being committed (one fsync for both)
        # instead of a background group and an fsync of their own.
        await self._record._write(job, urgent=True, size=len(entries))

    async def _list(self, flt: AuditFilter) -> list[AuditRecord]:
        kind, ident = resource_parts(flt.resource)
        args = (
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
        rows = await self._record._read(lambda c: c.execute(_SQL["audit_list"], args).fetchall())
        return [_record(r) for r in rows]

    async def _after(self, seq: int, limit: int) -> list[AuditRecord]:
        rows = await self._record._read(
            lambda c: c.execute(_SQL["audit_after"], (seq, limit)).fetchall()
        )
        return [_record(r) for r in rows]

    async def _trim(self, before: float) -> int:
        count: int = await self._record._write(
            lambda c: c.execute(_SQL["audit_trim"], (before,)).rowcount
        )
        return count
