"""The audit log in the record store's database: append-only rows, each linked to the one
before it by a hash chain, so an edited or deleted row in the middle is found by ``verify``.

``append_many`` writes a batch: the backend finds the last row's (seq, hash) and inserts every
row of the batch after it with one statement, one writer at a time (SQLite's writer thread) or
optimistically (PostgreSQL: seq is the primary key, a lost race is retried); the links are
computed here, once for every backend (``chain``). Retention deletes the oldest rows only; the
oldest row kept is the chain's anchor (its ``prev_hash`` is trusted).
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Sequence

import orjson

from tierq.model import AuditEntry, AuditFilter, AuditRecord

GENESIS = "0" * 64
VERIFY_PAGE = 1000


def entry_hash(prev_hash: str, seq: int, entry: AuditEntry) -> str:
    """SHA-256 of the previous hash and the row's canonical JSON (fixed field order)."""
    doc = orjson.dumps(
        [
            seq,
            entry.at,
            entry.actor,
            entry.tenant,
            entry.role,
            entry.action,
            entry.resource_type,
            entry.resource_id,
            entry.request_id,
            entry.source,
            entry.status,
            None if entry.changes is None else entry.changes.decode("utf-8", "replace"),
        ]
    )
    return hashlib.sha256(prev_hash.encode() + doc).hexdigest()


def chain(last_seq: int, last_hash: str, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
    """The records of ``entries`` appended after (last_seq, last_hash)."""
    out: list[AuditRecord] = []
    prev = last_hash
    for offset, entry in enumerate(entries, 1):
        seq = last_seq + offset
        digest = entry_hash(prev, seq, entry)
        out.append(AuditRecord(seq, entry, prev, digest))
        prev = digest
    return out


def resource_parts(resource: str | None) -> tuple[str | None, str | None]:
    """The (type, id) an audit filter's ``resource`` names: ``type`` or ``type:id``."""
    if not resource:
        return None, None
    kind, _, ident = resource.partition(":")
    return kind, ident or None


class AuditStore(abc.ABC):
    async def append_many(self, entries: Sequence[AuditEntry]) -> None:
        if entries:
            await self._append_many(entries)

    async def page(self, flt: AuditFilter) -> tuple[list[AuditRecord], bool]:
        """Newest first; and whether older rows follow."""
        if flt.size <= 0:
            raise ValueError("size must be positive")
        rows = await self._list(flt)
        return rows[: flt.size], len(rows) > flt.size

    async def verify(self) -> tuple[int, int | None]:
        """Walk the whole chain oldest first: (rows checked, seq of the first broken link or
        None when every link holds)."""
        checked, after, prev = 0, 0, None
        while True:
            rows = await self._after(after, VERIFY_PAGE)
            for row in rows:
                if prev is not None and row.prev_hash != prev:
                    return checked, row.seq
                if entry_hash(row.prev_hash, row.seq, row.entry) != row.hash:
                    return checked, row.seq
                prev, after = row.hash, row.seq
                checked += 1
            if len(rows) < VERIFY_PAGE:
                return checked, None

    async def trim(self, before: float) -> int:
        """Delete rows older than ``before``; how many went."""
        return await self._trim(before)

    # ---- primitives ------------------------------------------------------------------------

    @abc.abstractmethod
    async def _append_many(self, entries: Sequence[AuditEntry]) -> None:
        """Read the last (seq, hash) (0, GENESIS for an empty log), ``chain`` the entries
        after it and insert the records, so that no two rows take one place in the chain
        (one writer at a time, or a primary key on seq and a retry)."""

    @abc.abstractmethod
    async def _list(self, flt: AuditFilter) -> list[AuditRecord]:
        """Up to ``flt.size + 1`` rows matching, newest first."""

    @abc.abstractmethod
    async def _after(self, seq: int, limit: int) -> list[AuditRecord]:
        """Up to ``limit`` rows with a larger seq, oldest first."""

    @abc.abstractmethod
    async def _trim(self, before: float) -> int: ...
