"""Notification records in the embedded SQLite file, written on the record store's own writer
thread (one writer per file: a second connection would wait on its lock)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from tierq.model import Delivery, WebhookSubscription
from tierq.storage.notifications import NotificationStore
from tierq.storage.sqlite.sqlfiles import load_sections
from tierq.storage.sqlite.store import SQLiteRecordStore

_SQL = load_sections("notifications")


def _subscription(row: Any) -> WebhookSubscription:
    return WebhookSubscription(
        row[0],
        row[1],
        row[2],
        tuple(orjson.loads(row[3])),
        row[4],
        row[5],
        bool(row[6]),
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
    )


class SQLiteNotificationStore(NotificationStore):
    def __init__(self, record: SQLiteRecordStore) -> None:
        self._record = record

    async def _webhook_insert(self, sub: WebhookSubscription) -> None:
        values = (
            sub.id,
            sub.url,
            sub.secret,
            orjson.dumps(list(sub.events)).decode(),
            sub.queue,
            sub.type,
            int(sub.enabled),
            sub.created_at,
            sub.updated_at,
            sub.description,
            sub.disabled_reason,
            sub.tenant,
        )
        await self._record._write(lambda c: c.execute(_SQL["webhook_insert"], values), urgent=True)

    async def _webhook_list(self, tenant: str | None) -> list[WebhookSubscription]:
        rows = await self._record._read(
            lambda c: c.execute(_SQL["webhook_list"], (tenant,)).fetchall()
        )
        return [_subscription(r) for r in rows]

    async def _webhook_get(self, sub_id: str, tenant: str | None) -> WebhookSubscription | None:
        row = await self._record._read(
            lambda c: c.execute(_SQL["webhook_get"], (sub_id, tenant)).fetchone()
        )
        return None if row is None else _subscription(row)

    async def _webhook_set_enabled(
        self, sub_id: str, enabled: bool, reason: str | None, now: float
    ) -> WebhookSubscription | None:
        def job(conn: sqlite3.Connection) -> Any:
            conn.execute(_SQL["webhook_set_enabled"], (int(enabled), reason, now, sub_id))
            return conn.execute(_SQL["webhook_get"], (sub_id, None)).fetchone()

        row = await self._record._write(job, urgent=True)
        return None if row is None else _subscription(row)

    async def _webhook_delete(self, sub_id: str) -> bool:
        count: int = await self._record._write(
            lambda c: c.execute(_SQL["webhook_delete"], (sub_id,)).rowcount, urgent=True
        )
        return count > 0

    async def _deliveries_add_many(self, deliveries: Sequence[Delivery]) -> None:
        rows = [
            (
                d.delivery_id,
                d.task_id,
                d.channel,
                d.target,
                d.event,
                d.created_at,
                d.subscription_id,
            )
            for d in deliveries
        ]
        await self._record._write(
            lambda c: c.executemany(_SQL["deliveries_add"], rows), size=len(rows)
        )

    async def _deliveries_forget(self, task_ids: Sequence[str]) -> None:
        doc = orjson.dumps(list(task_ids)).decode()
        await self._record._write(lambda c: c.execute(_SQL["deliveries_forget"], (doc,)))

    async def _deliveries_of(self, task_id: str) -> list[Delivery]:
        rows = await self._record._read(
            lambda c: c.execute(_SQL["deliveries_of"], (task_id,)).fetchall()
        )
        return [Delivery(*r) for r in rows]
