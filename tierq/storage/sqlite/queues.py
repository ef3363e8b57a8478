"""Queue controls, queue depths and bulk-operation answers in the embedded SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from tierq.storage.queues import QueueControl, QueueDepth, QueueStore, depths_from_rows
from tierq.storage.sqlite.sqlfiles import load_sections
from tierq.storage.sqlite.store import SQLiteRecordStore

_SQL = load_sections("queues")


def _control(r: Any) -> QueueControl:
    return QueueControl(r[0], bool(r[1]), r[2], r[3], r[4], r[5])


class SQLiteQueueStore(QueueStore):
    def __init__(self, record: SQLiteRecordStore) -> None:
        self._record = record

    async def _controls(self) -> Sequence[QueueControl]:
        rows = await self._record._read(lambda c: c.execute(_SQL["controls"]).fetchall())
        return [_control(r) for r in rows]

    async def _save_control(self, control: QueueControl) -> None:
        c = control
        args = (c.queue, int(c.paused), c.max_running, c.rate_limit, c.rate_per_s, c.updated_at)
        await self._record._write(
            lambda conn: conn.execute(_SQL["control_save"], args), urgent=True
        )

    async def _depths(self, tenant: str | None) -> Sequence[QueueDepth]:
        rows = await self._record._read(lambda c: c.execute(_SQL["depths"], (tenant,)).fetchall())
        return depths_from_rows(rows)

    async def _begin_operation(self, tenant: str, key: str, now: float) -> bytes | None:
        def job(conn: sqlite3.Connection) -> bytes | None:
            if conn.execute(_SQL["operation_begin"], (tenant, key, now)).rowcount == 1:
                return None
            return bytes(conn.execute(_SQL["operation"], (tenant, key)).fetchone()[0])

        return await self._record._write(job, urgent=True)

    async def _finish_operation(self, tenant: str, key: str, answer: bytes) -> None:
        await self._record._write(
            lambda conn: conn.execute(_SQL["operation_finish"], (tenant, key, answer)),
            urgent=True,
        )

    async def _abandon_operation(self, tenant: str, key: str) -> None:
        await self._record._write(
            lambda conn: conn.execute(_SQL["operation_abandon"], (tenant, key)), urgent=True
        )

    async def _forget_operations(self, before: float, running_before: float) -> int:
        args = (before, running_before)
        return await self._record._write(
            lambda conn: conn.execute(_SQL["operations_forget"], args).rowcount
        )
